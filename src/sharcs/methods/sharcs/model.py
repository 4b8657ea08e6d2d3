"""SharcsModel: a Hugging Face sequence classifier made width-adaptive (docs/method.md §1 and §4).

    model = get_sharcs_model(AutoModelForSequenceClassification.from_pretrained(path), SharcsConfig())
    out = model(**batch)               # routed: each sample at the width the router picks
    out = model(**batch, width=0.25)   # every sample forced to one width

Layers 1..K run at full width on the wrapped model's weights and norms; the router reads layer K's
output; layers K+1..N run width-sliced from the same weights with per-width norms; the head's first
dense layer reads the first w*d channels. With `keep_residual` the residual stream stays d wide after
the router (only heads and FFN units narrow), so there is no down- or up-projection.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import torch
from torch import nn
from transformers import PreTrainedModel

from sharcs.errors import SharcsError
from sharcs.methods.sharcs.config import DEFAULT_TAUS, SharcsConfig, width_key
from sharcs.methods.sharcs.flops import sharcs_flops
from sharcs.methods.sharcs.recipes import SharcsTraining
from sharcs.methods.sharcs.router import Router, choose_widths
from sharcs.modeling.adaptive import (
    AdaptiveModel,
    HeadParts,
    RoutedOutput,
    Setting,
    attention_inputs,
    embed,
    run_layers,
    trim_padding,
)
from sharcs.modeling.architectures import get_module
from sharcs.modeling.layers import (
    AdaptiveLayer,
    LayerParts,
    SliceCache,
    SlicedWeights,
    make_norm,
)
from sharcs.modeling.losses import task_loss

if TYPE_CHECKING:
    from sharcs.training.arguments import TrainingArguments


@dataclass
class SharcsOutput(RoutedOutput):
    """loss: task loss + lambda * router loss (when labels / router_targets are given).
    routes (also `widths`): the width each sample ran at, shape (batch,)."""

    router_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # each adaptive layer's output (forced width)

    @property
    def widths(self) -> torch.Tensor | None:
        return self.routes


INFERENCE_FIELDS = ("routing", "tau", "cascade_confidence")  # what calibration may change


@dataclass
class WidthWeights:
    layers: list[SlicedWeights]
    head: torch.Tensor  # the head's dense weight, first w*d input columns

    def contiguous(self) -> WidthWeights:
        return WidthWeights([w.contiguous() for w in self.layers], self.head.detach().contiguous())


class SharcsModel(AdaptiveModel):
    """A width-adaptive wrapper of a `*ForSequenceClassification` model; build it with `get_sharcs_model`."""

    method = "sharcs"
    config_class = SharcsConfig

    def __init__(self, base: PreTrainedModel, config: SharcsConfig):
        super().__init__(base, config)
        config.check_against(self.dims.layers, self.dims.heads)
        lay = self.layout
        k = config.adaptive_layer
        layers = get_module(base.base_model, lay.layers)
        self.router = Router(self.dims.hidden, config.router_hidden_size, len(config.widths))
        narrow = [w for w in config.widths if w < 1.0 and not config.keep_residual]
        self.entry_norms = nn.ModuleDict()  # post-LN: a sliced stream is normalized again at its width
        if not lay.pre_norm:  # pre-LN layers normalize their own inputs
            # the norm that produced layer K's output (K=0: the embeddings'), copied into each entry norm
            last_full_norm = (
                get_module(layers[k - 1], lay.ffn_norm)
                if k
                else get_module(base.base_model, lay.embedding_norm)
            )
            for w in narrow:
                self.entry_norms[width_key(w)] = make_norm(
                    last_full_norm, self.dims.at(w)[0], config.norm_init
                )
        self.adaptive_layers = nn.ModuleList(
            AdaptiveLayer(layers[i], lay, self.dims, config.widths, config.norm_init, config.keep_residual)
            for i in range(k, self.dims.layers)
        )
        self.final_norms = nn.ModuleDict()  # pre-LN: the norm after the last layer, one per width
        if lay.final_norm is not None:
            final = get_module(base.base_model, lay.final_norm)
            for w in config.widths:
                size = self.dims.hidden if config.keep_residual else self.dims.at(w)[0]
                self.final_norms[width_key(w)] = make_norm(final, size, config.norm_init)
        self.router.to(device=base.device, dtype=base.dtype)
        self.full_parts = [LayerParts.find(layers[i], lay) for i in range(k)]  # layers 1..K
        self.head_parts = HeadParts.find(base, lay)
        self._sliced = SliceCache(
            [
                *(t for parts in self.full_parts for t in parts.sources),
                *(t for layer in self.adaptive_layers for t in layer.parts.sources),
                self.head_parts.dense.weight,
            ]
        )

    # ----------------------------------------------------------------- pieces of the forward pass
    @property
    def full_layers(self) -> nn.ModuleList:
        """The Hugging Face modules of layers 1..K (they hold the weights the prefix runs with)."""
        return get_module(self.base.base_model, self.layout.layers)[: self.config.adaptive_layer]

    def encode_prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        weights: list[SlicedWeights] | None = None,
    ) -> torch.Tensor:
        """The wrapped model's embeddings, then layers 1..K at full width with their pretrained norms.

        The layers run through the same fused-QKV code as the adaptive layers (`layer_forward`); at full
        width it computes exactly what the Hugging Face layer computes, with less overhead. `weights`:
        layers 1..K's fused matrices (`prefix_weights`), when the caller holds a copy.
        """
        hidden = embed(self, input_ids, token_type_ids)
        weights = self.prefix_weights() if weights is None else weights
        return run_layers(self, hidden, attention_mask, self.full_parts, weights)

    def prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        needs_router: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer K's output and, when `needs_router`, the router's logits. With `run_width`, the only
        computation `forward` does: a runtime other than PyTorch (sharcs.export) replaces these two."""
        hidden = self.encode_prefix(input_ids, attention_mask, token_type_ids)
        return hidden, self.router(hidden, attention_mask) if needs_router else None

    def prefix_weights(self) -> list[SlicedWeights]:
        """Layers 1..K's matrices, Q, K and V fused."""
        return self._sliced(None, lambda: [parts.slice(self.dims, 1.0) for parts in self.full_parts])

    def width_weights(self, width: float) -> WidthWeights:
        """Layers K+1..N and the head's dense weight sliced to `width`."""
        keep = self.config.keep_residual
        size = self.dims.hidden if keep else self.dims.at(width)[0]
        return self._sliced(
            width,
            lambda: WidthWeights(
                [layer.parts.slice(self.dims, width, keep) for layer in self.adaptive_layers],
                self.head_parts.dense.weight[:, :size],
            ),
        )

    def width_pass(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        width: float,
        weights: WidthWeights | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Layers K+1..N and the head at one width, for a group of samples: the logits and the output
        of each of those layers. `weights`: `width_weights(width)`, when the caller holds a copy."""
        if width < 1.0 and not self.config.keep_residual:  # down-projection: slice (post-LN: and renormalize)
            hidden = hidden[..., : self.dims.at(width)[0]]
            if self.entry_norms:
                hidden = self.entry_norms[width_key(width)](hidden)
        inputs = attention_inputs(self, hidden, attention_mask)[self.config.adaptive_layer :]
        weights = self.width_weights(width) if weights is None else weights
        states = []
        for layer, layer_weights, attention in zip(self.adaptive_layers, weights.layers, inputs, strict=True):
            hidden = layer(hidden, attention, width, layer_weights)
            states.append(hidden)
        final_norm = self.final_norms[width_key(width)] if self.final_norms else None
        # the up-projection reads w*d channels
        return self.head_parts(hidden[:, 0], weights.head, final_norm), states

    def run_width(self, hidden: torch.Tensor, attention_mask: torch.Tensor, width: float) -> torch.Tensor:
        """Layers K+1..N and the head at one width, for a group of samples; returns logits."""
        return self.width_pass(hidden, attention_mask, width)[0]

    def full_width_base(self) -> PreTrainedModel:
        """A copy of the wrapped model with the full-width norms of layers K+1..N (trained in place of
        the pretrained ones) copied in, so that it computes this model's full width on its own."""
        base = super().full_width_base()
        layers = get_module(base.base_model, self.layout.layers)[self.config.adaptive_layer :]
        key = width_key(1.0)
        for layer, adaptive in zip(layers, self.adaptive_layers, strict=True):
            parts = LayerParts.find(layer, self.layout)
            parts.attn_norm.load_state_dict(adaptive.attn_norms[key].state_dict())
            parts.ffn_norm.load_state_dict(adaptive.ffn_norms[key].state_dict())
        if self.final_norms:
            get_module(base.base_model, self.layout.final_norm).load_state_dict(
                self.final_norms[key].state_dict()
            )
        return base

    # ------------------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        width: float | None = None,
        router_targets: torch.Tensor | None = None,
        tau: float | None = None,
        output_hidden_states: bool = False,
        cascade: float | None = None,
    ) -> SharcsOutput:
        """Route each sample by the config's rule, by rule tau at `tau`, or as a cascade at confidence
        `cascade` (see `run_cascade`), or force all to `width`; run each width group and scatter the
        logits back into input order. `tau`, `cascade` and `width` are this call's inference setting;
        the config is never changed.

        `output_hidden_states` (needs `width`): also return each of layers K+1..N's outputs, with the
        positions that are padding in every row dropped (as `trim_padding` drops them)."""
        if output_hidden_states and width is None:
            raise SharcsError("output_hidden_states needs a forced width: pass width=...")
        if sum(x is not None for x in (width, tau, cascade)) > 1:
            raise SharcsError("give at most one of width, tau and cascade")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        config = self.config
        needs_router = config.uses_router or tau is not None or router_targets is not None
        hidden, router_logits = self.prefix(input_ids, attention_mask, token_type_ids, needs_router)
        if width is None and tau is None and config.routing == "fixed":
            width = config.fixed_width
        states = None
        if cascade is not None or (width is None and tau is None and config.routing == "cascade"):
            confidence = config.cascade_confidence if cascade is None else cascade
            logits, widths = self.run_cascade(hidden, attention_mask, confidence)
        else:
            if width is not None:
                choice = torch.full((len(input_ids),), self.width_index(width), device=input_ids.device)
            elif tau is not None:
                choice = choose_widths(router_logits.detach(), "tau", tau)
            elif config.routing == "random":
                choice = random_widths(input_ids, attention_mask, config.shares)
            else:
                choice = choose_widths(router_logits.detach(), config.routing, config.tau)
            if output_hidden_states:  # one forced width: a single group
                forced = config.widths[int(choice[0])]
                logits, layer_outputs = self.width_pass(*trim_padding(hidden, attention_mask), forced)
                states = tuple(layer_outputs)
            else:
                logits = self.run_routed(hidden, attention_mask, choice)
            widths = torch.tensor(config.widths, device=choice.device)[choice]
        return SharcsOutput(
            loss=self.loss(logits, router_logits, labels, router_targets),
            logits=logits,
            router_logits=router_logits,
            routes=widths,
            hidden_states=states,
        )

    # ------------------------------------------------------------------ the AdaptiveModel interface
    @property
    def route_values(self) -> tuple[float, ...]:
        return self.config.widths

    def rule(self, setting: dict[str, Any] | None = None) -> str:
        """The routing rule a forward with `setting` (its tau, cascade or width keywords) applies."""
        setting = setting or {}
        if setting.get("cascade") is not None:
            return "cascade"
        if setting.get("tau") is not None:
            return "tau"
        return self.config.routing

    def sample_flops(self, route: float, length: int, forced: bool = False, **setting: Any) -> int:
        return sharcs_flops(self, route, length, forced, self.rule(setting))

    def training_hooks(self, args: TrainingArguments, num_samples: int) -> SharcsTraining:
        """SHARCS's recipes: width buckets, narrower widths distilled, hardness labels (recipes.py)."""
        return SharcsTraining(self, args, num_samples)

    def same_structure(self, config: Any) -> bool:
        """Equal but for the inference rule, which the sandwich recipe calibrates after each epoch."""
        if not isinstance(config, SharcsConfig):
            return False
        keep = {name: getattr(self.config, name) for name in INFERENCE_FIELDS}
        return dataclasses.replace(config, **keep) == self.config

    def curve_settings(self, taus: tuple[float, ...] = DEFAULT_TAUS) -> list[Setting]:
        """A routed model: its own rule, each tau and each forced width; a cascade: its rule and each
        forced width; fixed and random: their one rule."""
        config = self.config
        if config.routing == "fixed":
            return [Setting(f"width={config.fixed_width:g}", {})]
        if config.routing == "random":
            return [Setting("random", {})]
        widths = [Setting(f"width={w:g}", {"width": w}) for w in config.widths]
        if config.routing == "cascade":
            own = Setting(f"cascade={config.cascade_confidence:g}", {})
            if self.calibration is None:
                return [own, *widths]
            # the sandwich recipe calibrated to the cascade still has a fitted router to sweep
            return [own, *(Setting(f"tau={t:g}", {"tau": t}) for t in taus), *widths]
        settings = [Setting(config.routing if config.routing == "argmax" else f"tau={config.tau:g}", {})]
        settings += [Setting(f"tau={t:g}", {"tau": t}) for t in taus]
        return settings + widths

    def run_routed(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, choice: torch.Tensor
    ) -> torch.Tensor:
        """Run each width group through the adaptive layers and put the logits back in input order."""
        groups = choice.unique().tolist()
        if len(groups) == 1:
            return self.run_width(*trim_padding(hidden, attention_mask), self.config.widths[groups[0]])
        logits = hidden.new_empty(len(hidden), self.num_labels)
        for index in groups:
            rows = (choice == index).nonzero().squeeze(1)
            group_hidden, group_mask = trim_padding(hidden[rows], attention_mask[rows])
            logits[rows] = self.run_width(group_hidden, group_mask, self.config.widths[index])
        return logits

    def run_cascade(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, confidence: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sample at the narrowest width; those whose top class probability is below `confidence`
        again at full width from the same layer-K states. Returns the logits and the width each sample
        was answered at."""
        if self.num_labels < 2:
            raise SharcsError("routing 'cascade' needs class probabilities; a regression head has none")
        narrowest, full = self.config.widths[0], self.config.widths[-1]
        logits = self.run_width(*trim_padding(hidden, attention_mask), narrowest)
        top = torch.softmax(logits.float(), -1).amax(-1)
        rerun = (top < confidence).nonzero().squeeze(1)
        widths = torch.full((len(hidden),), narrowest, device=hidden.device)
        if len(rerun):
            logits = logits.clone()  # autograd-safe in-place update
            logits[rerun] = self.run_width(*trim_padding(hidden[rerun], attention_mask[rerun]), full)
            widths[rerun] = full
        return logits, widths

    def loss(
        self,
        logits: torch.Tensor,
        router_logits: torch.Tensor | None,
        labels: torch.Tensor | None,
        router_targets: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """Task loss (cross-entropy, MSE for one label) + lambda * BCE(router logits, multi-hot targets)."""
        total = None if labels is None else task_loss(logits, labels)
        if router_targets is not None and router_logits is not None:
            router_loss = torch.nn.functional.binary_cross_entropy_with_logits(
                router_logits, router_targets.to(router_logits.dtype)
            )
            router_loss = self.config.router_loss_weight * router_loss
            total = router_loss if total is None else total + router_loss
        return total


def random_widths(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, shares: tuple[float, ...]
) -> torch.Tensor:
    """A width index per sample, drawn with probabilities `shares` from a hash of its tokens.

    The draw depends only on the sample's real tokens, so batched and per-sample routing agree and a
    sample always takes the same width.
    """
    positions = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
    key = (input_ids * positions * attention_mask).sum(1) % 2**31
    uniform = ((key * 2654435761 + 12345) % 2**32).double() / 2**32
    bounds = torch.tensor(shares, dtype=torch.float64, device=input_ids.device).cumsum(0)
    return torch.searchsorted(bounds[:-1].contiguous(), uniform, right=True)


def has_router(model: object) -> TypeGuard[SharcsModel]:
    """Whether `model` is a SHARCS model that routes with its trained router (not fixed or random)."""
    return isinstance(model, SharcsModel) and model.config.uses_router


def has_trained_router(model: object) -> TypeGuard[SharcsModel]:
    """Whether `model` has a trained router, whatever its routing rule now: routed SHARCS (the paper
    recipe), or the sandwich recipe, whose router is fitted on held-out data (`model.calibration`)."""
    return has_router(model) or (isinstance(model, SharcsModel) and isinstance(model.calibration, dict))


def is_cascade(model: object) -> TypeGuard[SharcsModel]:
    """Whether `model` is a SHARCS model with routing "cascade" (trained or switched to it)."""
    return isinstance(model, SharcsModel) and model.config.routing == "cascade"


def cascade_problem(model: object) -> str | None:
    """Why `model` cannot run as a cascade, or None when it can: a SHARCS classifier whose narrowest
    and full widths were both trained (routed, random or cascade-trained; not a fixed-width model)."""
    if not isinstance(model, SharcsModel) or len(model.config.widths) < 2:
        return "only a SHARCS model with two or more widths can cascade"
    if model.config.routing == "fixed":
        return "a fixed-width model trained only one width past layer K, so it cannot cascade"
    if model.num_labels < 2:
        return "needs class probabilities, which a regression model has not"
    return None


def get_sharcs_model(base: PreTrainedModel, config: SharcsConfig | None = None) -> SharcsModel:
    """Wrap a Hugging Face `*ForSequenceClassification` model (bert, roberta, distilbert, ...) with SHARCS."""
    return SharcsModel(base, config or SharcsConfig())
