"""Early-exit baselines: DeeBERT (exit on low entropy) and PABEE (exit when predictions stop changing).

    model = EarlyExitModel(base, EarlyExitConfig(rule="patience", patience=2))
    out = model(**batch)               # in eval mode: each sample stops at its own exit
    out = model(**batch, patience=4)   # another setting for this call only

A classifier reads the first token after every layer 1..N; the last one is the wrapped model's own head,
so a sample that never exits early gets exactly the wrapped model's logits. A route is the number of
layers a sample ran.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from sharcs.errors import SharcsError
from sharcs.modeling.adaptive import (
    AdaptiveModel,
    HeadParts,
    RoutedOutput,
    Setting,
    attention_inputs,
    config_from_dict,
    embed,
    run_layers,
    trim_padding,
)
from sharcs.modeling.architectures import AttentionInputs, get_module
from sharcs.modeling.flops import head_flops, layer_flops
from sharcs.modeling.layers import LayerParts, SliceCache, SlicedWeights
from sharcs.modeling.losses import task_loss

if TYPE_CHECKING:
    from sharcs.training.options import TrainOptions

EXIT_RULES = ("entropy", "patience")
ENTROPY_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # of ln(num_labels), for curves


@dataclass
class EarlyExitConfig:
    """When a sample leaves the encoder early.

    rule: "entropy" (DeeBERT: exit once the exit's softmax entropy is below `entropy_threshold`) or
        "patience" (PABEE: exit once `patience` consecutive exits agree with the exit before them).
    regression_tolerance: PABEE on a one-output head: two predictions agree when closer than this.
    """

    rule: str = "patience"
    entropy_threshold: float = 0.3
    patience: int = 2
    regression_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.rule not in EXIT_RULES:
            raise SharcsError(f"rule: must be one of {EXIT_RULES}, got {self.rule!r}")
        if not self.entropy_threshold >= 0.0:
            raise SharcsError(f"entropy_threshold: must be >= 0, got {self.entropy_threshold}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise SharcsError(f"patience: must be a whole number >= 1, got {self.patience!r}")
        if not self.regression_tolerance > 0.0:
            raise SharcsError(f"regression_tolerance: must be > 0, got {self.regression_tolerance}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EarlyExitConfig:
        return config_from_dict(cls, data)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row's softmax."""
    log_probs = logits.log_softmax(-1)
    return -(log_probs.exp() * log_probs).sum(-1)


class EarlyExitModel(AdaptiveModel):
    """A `*ForSequenceClassification` model with a classifier after every layer and per-sample exits.

    DeeBERT exits 1..N-1 each own a pooler (a copy of the head's dense layer) and a classifier; PABEE exits
    share the head's dense layer and own a classifier. Both apply the head's dropout and activation.
    """

    method = "early_exit"
    config_class = EarlyExitConfig
    route_name = "layers"

    def __init__(self, base: PreTrainedModel, config: EarlyExitConfig):
        super().__init__(base, config)
        num_layers = self.dims.layers
        if num_layers < 2:
            raise SharcsError(f"early exit needs a model with at least 2 layers, this one has {num_layers}")
        if config.rule == "entropy" and self.num_labels == 1:
            raise SharcsError(
                "rule: DeeBERT's entropy rule needs class probabilities, but this model has one output "
                "(regression); use rule 'patience'"
            )
        head = HeadParts.find(base, self.layout)
        std = getattr(base.config, "initializer_range", 0.02)
        self.exit_classifiers = nn.ModuleList(
            new_linear(self.dims.hidden, self.num_labels, std, head.dense.weight)
            for _ in range(num_layers - 1)
        )
        self.exit_poolers = nn.ModuleList(
            copy.deepcopy(head.dense) for _ in range(num_layers - 1 if config.rule == "entropy" else 0)
        )
        poolers = list(self.exit_poolers) or [head.dense] * (num_layers - 1)
        self.exits = [
            dataclasses.replace(head, dense=pooler, classifier=classifier)
            for pooler, classifier in zip(poolers, self.exit_classifiers, strict=True)
        ] + [head]
        layers = get_module(base.base_model, self.layout.layers)
        self.layer_parts = [LayerParts.find(layer, self.layout) for layer in layers]
        self._sliced = SliceCache([t for parts in self.layer_parts for t in parts.sources])
        self.backbone_frozen = False  # DeeBERT's second training stage: only exits 1..N-1 learn

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        entropy_threshold: float | None = None,
        patience: int | None = None,
    ) -> RoutedOutput:
        """Training (labels given, or train mode): every layer and exit. Inference: per-sample early exit,
        by the config's rule or by this call's `entropy_threshold` / `patience`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = embed(self, input_ids, token_type_ids)
        if labels is not None or self.training:
            loss, logits = self.run_all_exits(hidden, attention_mask, labels)
            routes = torch.full((len(input_ids),), float(self.dims.layers), device=input_ids.device)
            return RoutedOutput(loss=loss, logits=logits, routes=routes)
        config = self.call_config(entropy_threshold, patience)
        logits, routes = self.exit_early(hidden, attention_mask, config)
        return RoutedOutput(logits=logits, routes=routes)

    def call_config(self, entropy_threshold: float | None, patience: int | None) -> EarlyExitConfig:
        """The config with this call's overrides, validated; an override of the other rule is an error."""
        overrides = {"entropy_threshold": entropy_threshold, "patience": patience}
        overrides = {name: value for name, value in overrides.items() if value is not None}
        own = "entropy_threshold" if self.config.rule == "entropy" else "patience"
        unused = sorted(overrides.keys() - {own})
        if unused:
            raise SharcsError(f"{unused[0]}: a model with exit rule {self.config.rule!r} does not use it")
        return dataclasses.replace(self.config, **overrides)

    def layer_weights(self) -> list[SlicedWeights]:
        """Every layer's full-width weights (contiguous cached copies at inference)."""
        return self._sliced(1.0, lambda: [parts.slice(self.dims, 1.0) for parts in self.layer_parts])

    def run_layer(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        index: int,
        weights: SlicedWeights,
        inputs: list[AttentionInputs] | None = None,
    ) -> torch.Tensor:
        """Layer `index`; its attention inputs are built at `hidden`'s length (exits trim the padding as
        they go) unless the caller holds every layer's (`inputs`) for that length."""
        parts = [self.layer_parts[index]]
        return run_layers(self, hidden, attention_mask, parts, [weights], first=index, inputs=inputs)

    def run_all_exits(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """All N layers; returns (training loss or None, the final exit's logits).

        PABEE: sum_j j * L_j / sum_j j over exits j = 1..N. DeeBERT: the final exit's loss (stage 1), or the
        sum of exits 1..N-1's losses (stage 2, backbone frozen).
        """
        first_tokens = []
        inputs = attention_inputs(self, hidden, attention_mask)  # the length is the same for every layer
        for index, weights in enumerate(self.layer_weights()):
            hidden = self.run_layer(hidden, attention_mask, index, weights, inputs)
            first_tokens.append(hidden[:, 0])
        if self.config.rule == "patience" and labels is not None:
            exit_logits = [head(x) for head, x in zip(self.exits, first_tokens, strict=True)]
            weighted = sum(j * task_loss(logits, labels) for j, logits in enumerate(exit_logits, start=1))
            return weighted / sum(range(1, len(exit_logits) + 1)), exit_logits[-1]
        final = self.exits[-1](first_tokens[-1])
        if labels is None:
            return None, final
        if self.backbone_frozen:
            early = zip(self.exits[:-1], first_tokens[:-1], strict=True)
            return sum(task_loss(head(x), labels) for head, x in early), final
        return task_loss(final, labels), final

    def exit_early(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, config: EarlyExitConfig
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run layer by layer on the samples still in; each leaves with its exit's logits.

        Returns (logits, routes) in input order; routes[i] is the number of layers sample i ran.
        """
        batch = len(hidden)
        logits = hidden.new_zeros(batch, self.num_labels)
        routes = torch.zeros(batch, device=hidden.device)
        rows = torch.arange(batch, device=hidden.device)  # the input rows of the samples still in
        streak = torch.zeros(batch, dtype=torch.long, device=hidden.device)
        previous: torch.Tensor | None = None
        hidden, attention_mask = trim_padding(hidden, attention_mask)
        for index, weights in enumerate(self.layer_weights()):
            hidden = self.run_layer(hidden, attention_mask, index, weights)
            current = self.exits[index](hidden[:, 0])
            if index == self.dims.layers - 1:
                done = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
            elif config.rule == "entropy":
                done = entropy(current) < config.entropy_threshold
            else:
                if previous is not None:
                    streak = torch.where(self.agree(previous, current, config), streak + 1, 0)
                done = streak >= config.patience
            logits[rows[done]] = current[done]
            routes[rows[done]] = float(index + 1)
            stay = ~done
            if not bool(stay.any()):
                break
            rows, streak, previous = rows[stay], streak[stay], current[stay]
            hidden, attention_mask = trim_padding(hidden[stay], attention_mask[stay])
        return logits, routes

    def agree(self, previous: torch.Tensor, current: torch.Tensor, config: EarlyExitConfig) -> torch.Tensor:
        """PABEE's test: the same class, or regression outputs closer than the tolerance."""
        if self.num_labels == 1:
            return (previous - current).abs().squeeze(-1) < config.regression_tolerance
        return previous.argmax(-1) == current.argmax(-1)

    # ------------------------------------------------------------------- the AdaptiveModel interface
    @property
    def route_values(self) -> tuple[float, ...]:
        return tuple(float(layers) for layers in range(1, self.dims.layers + 1))

    def route_label(self, route: float) -> str:
        return f"exit {int(route)}"

    def sample_flops(self, route: float, length: int, forced: bool = False, **setting: Any) -> int:
        """`route` layers, each followed by one exit (a pooler and a classifier on the first token)."""
        layers = int(route)
        dims = self.dims
        return layers * (layer_flops(dims, 1.0, length) + head_flops(dims, 1.0, self.num_labels))

    def curve_settings(self) -> list[Setting]:
        if self.config.rule == "entropy":
            thresholds = [f * math.log(self.num_labels) for f in ENTROPY_FRACTIONS]
            return [Setting(f"entropy<{t:.3g}", {"entropy_threshold": t}) for t in thresholds]
        return [Setting(f"patience={p}", {"patience": p}) for p in range(1, self.dims.layers)]

    def second_stage_start(self, epochs: int) -> int:
        """DeeBERT's first epoch of stage 2 (exits only): ceil(epochs / 2)."""
        if epochs < 2:
            raise SharcsError(
                f"epochs: DeeBERT's two-stage training needs at least 2 epochs (one per stage), got {epochs}"
            )
        return math.ceil(epochs / 2)

    def schedule_starts(self, epochs: int) -> tuple[int, ...]:
        if self.config.rule == "entropy":
            return (0, self.second_stage_start(epochs))
        return (0,)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """DeeBERT: stage 1 trains everything, stage 2 freezes all but exits 1..N-1."""
        if self.config.rule != "entropy":
            return
        frozen = epoch >= self.second_stage_start(epochs)
        exit_params = {
            id(p) for module in (self.exit_poolers, self.exit_classifiers) for p in module.parameters()
        }
        for param in self.parameters():
            param.requires_grad = not frozen or id(param) in exit_params
        self.backbone_frozen = frozen


def new_linear(inputs: int, outputs: int, std: float, like: torch.Tensor) -> nn.Linear:
    """A Linear layer initialised as Hugging Face heads are (normal(0, std) weights, zero bias)."""
    linear = nn.Linear(inputs, outputs, device=like.device, dtype=like.dtype)
    nn.init.normal_(linear.weight, std=std)
    nn.init.zeros_(linear.bias)
    return linear


def deebert(options: TrainOptions, base: PreTrainedModel, num_layers: int) -> EarlyExitModel:
    """`--method deebert`: exit where the entropy falls below `--entropy-threshold` (x ln(labels))."""
    return EarlyExitModel(base, EarlyExitConfig("entropy", options.entropy_threshold, options.patience))


def pabee(options: TrainOptions, base: PreTrainedModel, num_layers: int) -> EarlyExitModel:
    """`--method pabee`: exit once `--patience` layers in a row agree."""
    return EarlyExitModel(base, EarlyExitConfig("patience", options.entropy_threshold, options.patience))
