"""SharcsConfig: every SHARCS choice in one validated dataclass (docs/method.md §1-§4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sharcs.errors import SharcsError

NORM_INITS = ("copy", "scratch")
ROUTING_RULES = ("argmax", "tau", "fixed", "random", "cascade")
DEFAULT_TAUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # what a trade-off curve sweeps by default


def width_key(width: float) -> str:
    """Module-dict key for a width: 0.25 -> "w0_25" (dots are not allowed in module names)."""
    return "w" + f"{width:g}".replace(".", "_")


def intervals_from_thresholds(thresholds: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    """Thresholds t_1 > ... > t_{m-1} -> one confidence interval per width, narrowest first.

    The narrowest width takes confidences in [t_1, 1], the next [t_2, t_1), ..., the full width [0, t_{m-1}).
    With two widths and threshold t: 0.25 <- every window value >= t, 1.0 <- otherwise.
    """
    bounds = (1.0, *thresholds, 0.0)
    return tuple((bounds[i + 1], bounds[i]) for i in range(len(bounds) - 1))


def validate_widths(widths: tuple[float, ...]) -> None:
    """SharcsError starting "widths:" unless the widths are ascending in (0, 1] and end at 1.0."""
    if not widths:
        raise SharcsError("give at least one width, e.g. (0.25, 1.0)", option="widths")
    if any(not 0.0 < w <= 1.0 for w in widths):
        raise SharcsError(f"every width must lie in (0, 1], got {list(widths)}", option="widths")
    if list(widths) != sorted(set(widths)):
        raise SharcsError(f"must be strictly ascending, got {list(widths)}", option="widths")
    if widths[-1] != 1.0:
        raise SharcsError(f"the last width must be 1.0 (the full model), got {list(widths)}", option="widths")


def check_heads(widths: tuple[float, ...], num_heads: int) -> None:
    """SharcsError starting "widths:" unless every width keeps a whole number of the model's heads."""
    for w in widths:
        heads = w * num_heads
        if abs(heads - round(heads)) > 1e-9:
            raise SharcsError(
                f"width {w} gives {heads:g} of {num_heads} attention heads; "
                f"each width times {num_heads} must be a whole number",
                option="widths",
            )


@dataclass
class SharcsConfig:
    """How a base encoder is made width-adaptive, trained and routed.

    widths: ascending, ending at 1.0; each w must make w * num_heads a whole number.
    adaptive_layer: K, the number of full-width layers before the router (0 <= K < N). K=0 narrows every
        layer: the router then reads the embeddings, and a cascade's narrow pass is about w^2 of the model.
    threshold: one confidence threshold per width boundary (a float for two widths). Ignored when
        `intervals` is given.
    intervals: one [lo, hi) confidence interval per width (hi == 1.0 is inclusive); together they must
        cover [0, 1].
    window: number of most recent epochs whose confidences must all lie in a width's interval.
    router_loss_weight: lambda in task_loss + lambda * BCE(router_logits, targets).
    norm_init: "copy" initialises the per-width LayerNorms from the pretrained ones, "scratch" uses 1/0.
    routing: "argmax" (the paper), "tau" (smallest width whose sigmoid(logit) >= tau, else the largest),
        or the router-free baselines "fixed" (every sample at `fixed_width`) and "random" (each sample at a
        width drawn with probabilities `width_shares` from a hash of its tokens), or "cascade" (beyond
        the paper; inference only, classification): every sample runs the narrowest width, and those
        whose top class probability is below `cascade_confidence` run again at full width from layer K,
        paying for both passes. The router is not used.
    cascade_confidence: the confidence below which routing "cascade" re-runs a sample at full width.
    fixed_width: the width of routing "fixed".
    width_shares: one probability per width for routing "random" (None: equal shares).
    keep_residual: False (the paper): layers K+1..N narrow the residual stream itself to w*d channels.
        True (beyond the paper): they keep all d channels and narrow only the heads and FFN units
        (DynaBERT-style slicing after the router): a layer then costs about w of full width instead of
        w^2, and usually keeps more of the model's accuracy at the same w.
    """

    widths: tuple[float, ...] = (0.25, 1.0)
    adaptive_layer: int = 3
    router_hidden_size: int = 1024
    threshold: float | tuple[float, ...] = 0.6
    intervals: tuple[tuple[float, float], ...] | None = None
    window: int = 2
    router_loss_weight: float = 1.0
    norm_init: str = "copy"
    routing: str = "argmax"
    tau: float = 0.5
    cascade_confidence: float = 0.9
    fixed_width: float | None = None
    width_shares: tuple[float, ...] | None = None
    keep_residual: bool = False

    def __post_init__(self) -> None:
        self.widths = tuple(float(w) for w in self.widths)
        if self.width_shares is not None:
            self.width_shares = tuple(float(p) for p in self.width_shares)
        if self.fixed_width is not None:
            self.fixed_width = float(self.fixed_width)
        if isinstance(self.threshold, int | float):
            self.threshold = (float(self.threshold),)
        self.threshold = tuple(float(t) for t in self.threshold)
        if self.intervals is not None:
            self.intervals = tuple((float(lo), float(hi)) for lo, hi in self.intervals)
        self._validate()

    def _validate(self) -> None:
        widths = self.widths
        validate_widths(widths)
        if self.adaptive_layer < 0:
            raise SharcsError(f"K must be at least 0, got {self.adaptive_layer}", option="adaptive_layer")
        if self.router_hidden_size < 1:
            raise SharcsError(f"must be positive, got {self.router_hidden_size}", option="router_hidden_size")
        if self.window < 1:
            raise SharcsError(f"must be at least 1 epoch, got {self.window}", option="window")
        if self.router_loss_weight < 0:
            raise SharcsError(f"must be >= 0, got {self.router_loss_weight}", option="router_loss_weight")
        if self.norm_init not in NORM_INITS:
            raise SharcsError(f"must be one of {NORM_INITS}, got {self.norm_init!r}", option="norm_init")
        if not isinstance(self.keep_residual, bool):
            raise SharcsError(f"must be true or false, got {self.keep_residual!r}", option="keep_residual")
        if self.routing not in ROUTING_RULES:
            raise SharcsError(f"must be one of {ROUTING_RULES}, got {self.routing!r}", option="routing")
        if not 0.0 <= self.tau <= 1.0:
            raise SharcsError(f"must lie in [0, 1], got {self.tau}", option="tau")
        if not 0.0 <= self.cascade_confidence <= 1.0:
            raise SharcsError(
                f"must lie in [0, 1], got {self.cascade_confidence}", option="cascade_confidence"
            )
        if self.routing == "cascade" and len(widths) < 2:
            raise SharcsError(f"routing 'cascade' needs two or more widths, got {list(widths)}")
        if self.routing == "fixed" and (self.fixed_width is None or self.fixed_width not in widths):
            raise SharcsError(f"must be one of {list(widths)}, got {self.fixed_width}", option="fixed_width")
        if self.width_shares is not None:
            shares = self.width_shares
            if len(shares) != len(widths) or any(p < 0 for p in shares) or abs(sum(shares) - 1) > 1e-6:
                raise SharcsError(
                    f"need one non-negative share per width ({len(widths)}) summing to 1, got {list(shares)}",
                    option="width_shares",
                )
        if self.intervals is None:
            thresholds = self.threshold
            if len(thresholds) != len(widths) - 1:
                raise SharcsError(
                    f"{len(widths)} widths need {len(widths) - 1} threshold(s), got {list(thresholds)}",
                    option="threshold",
                )
            if any(not 0.0 < t <= 1.0 for t in thresholds) or list(thresholds) != sorted(
                thresholds, reverse=True
            ):
                raise SharcsError(
                    f"thresholds must lie in (0, 1] and descend (narrowest width first), "
                    f"got {list(thresholds)}",
                    option="threshold",
                )
        self._validate_intervals(self.confidence_intervals)

    def _validate_intervals(self, intervals: tuple[tuple[float, float], ...]) -> None:
        if len(intervals) != len(self.widths):
            raise SharcsError(
                f"need one interval per width ({len(self.widths)}), got {len(intervals)}",
                option="intervals",
            )
        for lo, hi in intervals:
            if not 0.0 <= lo < hi <= 1.0:
                raise SharcsError(
                    f"each interval needs 0 <= lo < hi <= 1, got [{lo}, {hi}]", option="intervals"
                )
        covered = 0.0
        for lo, hi in sorted(intervals):
            if lo > covered:
                raise SharcsError(
                    f"confidences in [{covered}, {lo}) are covered by no width", option="intervals"
                )
            covered = max(covered, hi)
        if covered < 1.0:
            raise SharcsError(f"confidences in [{covered}, 1] are covered by no width", option="intervals")

    @property
    def uses_router(self) -> bool:
        """False for the router-free baselines (routing "fixed" and "random") and routing "cascade"."""
        return self.routing in ("argmax", "tau")

    @property
    def shares(self) -> tuple[float, ...]:
        """The random-routing probabilities: width_shares, or equal shares."""
        return self.width_shares or tuple(1.0 / len(self.widths) for _ in self.widths)

    @property
    def confidence_intervals(self) -> tuple[tuple[float, float], ...]:
        """One [lo, hi) interval per width (hi == 1.0 inclusive), from `intervals` or `threshold`."""
        return self.intervals if self.intervals is not None else intervals_from_thresholds(self.threshold)

    def check_against(self, num_layers: int, num_heads: int) -> None:
        """Raise SharcsError if K or the widths do not fit a model with this many layers and heads."""
        if not 0 <= self.adaptive_layer < num_layers:
            raise SharcsError(
                f"K must satisfy 0 <= K < {num_layers} (the model's layer count), got {self.adaptive_layer}",
                option="adaptive_layer",
            )
        check_heads(self.widths, num_heads)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SharcsConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SharcsError(f"sharcs config: unknown field(s) {sorted(unknown)}")
        data = dict(data)
        if data.get("intervals") is not None:
            data["intervals"] = tuple(tuple(pair) for pair in data["intervals"])
        if data.get("width_shares") is not None:
            data["width_shares"] = tuple(data["width_shares"])
        return cls(**data)


def check_max_drop(value: float | None) -> None:
    """A tolerated drop (`--max-drop`) is in the main metric's own units (0.01 = 1 point), in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise SharcsError(
            f"--max-drop: must lie in [0, 1] (in the metric's units: 0.01 is one point), got {value}"
        )


def check_budget(value: float | None) -> None:
    """A FLOPs budget (`--flops-budget`) is a fraction of the full model's FLOPs in (0, 1]."""
    if value is not None and not 0.0 < value <= 1.0:
        raise SharcsError(
            f"--flops-budget: must lie in (0, 1] (a fraction of the full model's FLOPs), got {value}"
        )
