"""SharcsModel: a Hugging Face sequence classifier made width-adaptive (method.md §1 and §4).

    model = get_sharcs_model(AutoModelForSequenceClassification.from_pretrained(path), SharcsConfig())
    out = model(**batch)               # routed: each sample at the width the router picks
    out = model(**batch, width=0.25)   # every sample forced to one width

Layers 1..K run at full width on the wrapped model's weights and norms; the router reads layer K's
output; layers K+1..N run width-sliced from the same weights with per-width norms; the head's first
dense layer reads the first w*d channels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel
from transformers.utils import ModelOutput

from sharcs.architectures import find_layout, get_module
from sharcs.config import SharcsConfig, width_key
from sharcs.errors import SharcsError
from sharcs.files import atomic_directory
from sharcs.layers import AdaptiveLayer, Dims, LayerParts, SlicedWeights, layer_forward, make_norm
from sharcs.router import Router, choose_widths

CONFIG_NAME = "sharcs_config.json"
WEIGHTS_NAME = "model.safetensors"
HEAD_ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu}


@dataclass
class SharcsOutput(ModelOutput):
    """loss: task loss + lambda * router loss (when labels / router_targets are given).
    widths: the width each sample ran at, shape (batch,)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    router_logits: torch.Tensor | None = None
    widths: torch.Tensor | None = None


@dataclass(frozen=True)
class _HeadParts:
    """The task head's modules in the wrapped model (a plain dataclass, so they are not registered twice)."""

    dense: nn.Linear
    dropout: nn.Module
    classifier: nn.Linear


@dataclass
class _WidthWeights:
    layers: list[SlicedWeights]
    head: torch.Tensor  # the head's dense weight, first w*d input columns


class SharcsModel(nn.Module):
    """A width-adaptive wrapper of a `*ForSequenceClassification` model; build it with `get_sharcs_model`."""

    def __init__(self, base: PreTrainedModel, config: SharcsConfig):
        super().__init__()
        self.layout = find_layout(base)
        cfg, lay = base.config, self.layout
        self.dims = Dims(
            hidden=getattr(cfg, lay.hidden_size),
            heads=getattr(cfg, lay.num_heads),
            ffn=getattr(cfg, lay.ffn_size),
            layers=getattr(cfg, lay.num_layers),
        )
        config.check_against(self.dims.layers, self.dims.heads)
        self.base = base
        self.config = config
        k = config.adaptive_layer
        layers = get_module(base.base_model, lay.layers)
        self.router = Router(self.dims.hidden, config.router_hidden_size, len(config.widths))
        last_full_norm = get_module(layers[k - 1], lay.ffn_norm)
        self.entry_norms = nn.ModuleDict(
            {
                width_key(w): make_norm(last_full_norm, self.dims.at(w)[0], config.norm_init)
                for w in config.widths
                if w < 1.0
            }
        )
        self.adaptive_layers = nn.ModuleList(
            AdaptiveLayer(layers[i], lay, self.dims, config.widths, config.norm_init)
            for i in range(k, self.dims.layers)
        )
        self.router.to(device=last_full_norm.weight.device, dtype=last_full_norm.weight.dtype)
        self.full_parts = [LayerParts.find(layers[i], lay) for i in range(k)]  # layers 1..K
        self.head_parts = _HeadParts(
            *(get_module(base, p) for p in (lay.head_dense, lay.head_dropout, lay.classifier))
        )
        self._sources = [  # every tensor the sliced-weight cache copies from
            *(t for parts in self.full_parts for t in parts.sources),
            *(t for layer in self.adaptive_layers for t in layer.parts.sources),
            self.head_parts.dense.weight,
        ]
        self._cache: dict[float | None, tuple[tuple, object]] = {}

    # ----------------------------------------------------------------- pieces of the forward pass
    @property
    def full_layers(self) -> nn.ModuleList:
        """The Hugging Face modules of layers 1..K (they hold the weights the prefix runs with)."""
        return get_module(self.base.base_model, self.layout.layers)[: self.config.adaptive_layer]

    @property
    def num_labels(self) -> int:
        return self.base.config.num_labels

    def encode_prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The wrapped model's embeddings, then layers 1..K at full width with their pretrained norms.

        The layers run through the same fused-QKV code as the adaptive layers (`layer_forward`); at full
        width it computes exactly what the Hugging Face layer computes, with less overhead.
        """
        backbone = self.base.base_model
        if self.layout.uses_token_types:
            hidden = backbone.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        else:
            hidden = backbone.embeddings(input_ids)
        attn_mask = _sdpa_mask(attention_mask)
        weights = self._sliced(None, lambda: [parts.slice(self.dims, 1.0) for parts in self.full_parts])
        for parts, layer_weights in zip(self.full_parts, weights, strict=True):
            hidden = layer_forward(
                hidden, attn_mask, parts, layer_weights, parts.attn_norm, parts.ffn_norm, self.dims.head_size
            )
        return hidden

    def width_weights(self, width: float) -> _WidthWeights:
        """Layers K+1..N and the head's dense weight sliced to `width`."""
        size = self.dims.at(width)[0]
        return self._sliced(
            width,
            lambda: _WidthWeights(
                [layer.parts.slice(self.dims, width) for layer in self.adaptive_layers],
                self.head_parts.dense.weight[:, :size],
            ),
        )

    def _sliced(self, key: float | None, build):
        """`build()` as live views while gradients are on; otherwise cached contiguous copies.

        The cache is keyed by each source tensor's storage and version, so an optimizer step, a
        `load_state_dict` or a move to another device makes it rebuild.
        """
        if torch.is_grad_enabled():
            return build()
        stamp = tuple((t.data_ptr(), t._version) for t in self._sources)
        hit = self._cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = self._cache[key] = (stamp, _contiguous(build()))
        return hit[1]

    def run_width(self, hidden: torch.Tensor, attention_mask: torch.Tensor, width: float) -> torch.Tensor:
        """Layers K+1..N and the head at one width, for a group of samples; returns logits."""
        size = self.dims.at(width)[0]
        if width < 1.0:  # down-projection: slice, then the entry norm of this width
            hidden = self.entry_norms[width_key(width)](hidden[..., :size])
        attn_mask = _sdpa_mask(attention_mask)
        weights = self.width_weights(width)
        for layer, layer_weights in zip(self.adaptive_layers, weights.layers, strict=True):
            hidden = layer(hidden, attn_mask, width, layer_weights)
        return self.head(hidden[:, 0], weights.head)

    def head(self, first_token: torch.Tensor, dense_weight: torch.Tensor) -> torch.Tensor:
        """The task head; its first dense layer reads the first w*d channels (the up-projection)."""
        parts, lay = self.head_parts, self.layout
        x = parts.dropout(first_token) if lay.dropout_before_dense else first_token
        x = F.linear(x, dense_weight, parts.dense.bias)
        x = parts.dropout(HEAD_ACTIVATIONS[lay.head_act](x))
        return parts.classifier(x)

    def width_index(self, width: float) -> int:
        for i, w in enumerate(self.config.widths):
            if abs(w - width) < 1e-9:
                return i
        raise SharcsError(f"width {width} is not one of this model's widths {list(self.config.widths)}")

    # ------------------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        width: float | None = None,
        router_targets: torch.Tensor | None = None,
    ) -> SharcsOutput:
        """Route each sample (width=None) or force all to `width`; group by width, run, scatter back."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encode_prefix(input_ids, attention_mask, token_type_ids)
        router_logits = self.router(hidden, attention_mask)
        if width is None:
            choice = choose_widths(router_logits.detach(), self.config.routing, self.config.tau)
        else:
            choice = torch.full((len(input_ids),), self.width_index(width), device=input_ids.device)
        logits = self.run_routed(hidden, attention_mask, choice)
        widths = torch.tensor(self.config.widths, device=choice.device)[choice]
        return SharcsOutput(
            loss=self.loss(logits, router_logits, labels, router_targets),
            logits=logits,
            router_logits=router_logits,
            widths=widths,
        )

    def run_routed(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, choice: torch.Tensor
    ) -> torch.Tensor:
        """Run each width group through the adaptive layers and put the logits back in input order."""
        groups = choice.unique().tolist()
        if len(groups) == 1:
            return self.run_width(*_trim_padding(hidden, attention_mask), self.config.widths[groups[0]])
        logits = hidden.new_empty(len(hidden), self.num_labels)
        for index in groups:
            rows = (choice == index).nonzero().squeeze(1)
            group_hidden, group_mask = _trim_padding(hidden[rows], attention_mask[rows])
            logits[rows] = self.run_width(group_hidden, group_mask, self.config.widths[index])
        return logits

    def loss(
        self,
        logits: torch.Tensor,
        router_logits: torch.Tensor,
        labels: torch.Tensor | None,
        router_targets: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """Task loss (cross-entropy, MSE for one label) + lambda * BCE(router logits, multi-hot targets)."""
        total = None
        if labels is not None:
            if self.num_labels == 1:
                total = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                total = F.cross_entropy(logits, labels)
        if router_targets is not None:
            router_loss = F.binary_cross_entropy_with_logits(
                router_logits, router_targets.to(router_logits.dtype)
            )
            router_loss = self.config.router_loss_weight * router_loss
            total = router_loss if total is None else total + router_loss
        return total

    # ------------------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json (the base model's), sharcs_config.json and model.safetensors, atomically."""
        with atomic_directory(directory) as scratch:
            self.base.config.save_pretrained(scratch)
            self.config.save(scratch / CONFIG_NAME)
            save_model(self, str(scratch / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SharcsModel:
        """Rebuild the structure from the saved configs, then load the saved weights."""
        directory = Path(directory)
        for name in ("config.json", CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise SharcsError(f"{directory} is not a sharcs model folder: {name} is missing")
        try:
            config = SharcsConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text()))
            base_config = AutoConfig.from_pretrained(directory)
        except (json.JSONDecodeError, TypeError, OSError) as error:
            raise SharcsError(f"{directory}: unreadable config ({error})") from None
        model = cls(AutoModelForSequenceClassification.from_config(base_config), config)
        try:
            state = load_file(str(directory / WEIGHTS_NAME))
        except (SafetensorError, OSError) as error:
            raise SharcsError(f"{directory / WEIGHTS_NAME} is corrupt or unreadable ({error})") from None
        load_weights(model, state, str(directory / WEIGHTS_NAME))
        return model.eval()


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a full state dict strictly, turning a mismatch into a one-line SharcsError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise SharcsError(
            f"{source} belongs to another model: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(wrong)} mis-shaped tensors (first: {first})"
        )
    model.load_state_dict(state)


def _sdpa_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Boolean (batch, 1, 1, length) key mask for scaled_dot_product_attention; None without padding."""
    return None if bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]


def _contiguous(weights):
    """Detached contiguous copies of sliced weights (strided views make slow matmuls)."""
    if isinstance(weights, list):
        return [_contiguous(w) for w in weights]
    if isinstance(weights, _WidthWeights):
        return _WidthWeights(_contiguous(weights.layers), weights.head.detach().contiguous())
    return weights.contiguous()


def _trim_padding(hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the positions that are padding in every row of a group: less work, same result."""
    keep = attention_mask.bool().any(0)
    if bool(keep.all()):
        return hidden, attention_mask
    return hidden[:, keep], attention_mask[:, keep]


def get_sharcs_model(base: PreTrainedModel, config: SharcsConfig | None = None) -> SharcsModel:
    """Wrap a Hugging Face `*ForSequenceClassification` model (bert, roberta, distilbert, ...) with SHARCS."""
    return SharcsModel(base, config or SharcsConfig())
