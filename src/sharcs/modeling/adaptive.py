"""What every sharcs model provides, whatever its method: SHARCS, DynaBERT-style width or early exit.

A model wraps a Hugging Face `*ForSequenceClassification` model (`base`) and returns, with its logits,
the *route* each sample took: the width it ran at, or the number of layers it ran before exiting.
Evaluation, FLOPs, training, saving and curves only use this interface:

    out = model(**batch)                        # RoutedOutput(loss, logits, routes)
    model.sample_flops(route, length)           # analytic FLOPs of one sample on that route
    model.curve_settings()                      # the inference settings a trade-off curve sweeps
    model.save_pretrained(folder); sharcs.load_model(folder)  # sharcs.methods.load

A model folder holds config.json (the base model's), sharcs_config.json (the method's config with a
"method" key) and model.safetensors.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel
from transformers.utils import ModelOutput

from sharcs.errors import SharcsError, first_line
from sharcs.modeling.architectures import AttentionInputs, Layout, find_layout, get_module
from sharcs.modeling.flops import head_flops, layer_flops
from sharcs.modeling.layers import Dims, LayerParts, SlicedWeights, layer_forward
from sharcs.storage.files import atomic_directory
from sharcs.training.hooks import TrainingHooks

if TYPE_CHECKING:
    from sharcs.training.arguments import TrainingArguments

CONFIG_NAME = "sharcs_config.json"
WEIGHTS_NAME = "model.safetensors"
CALIBRATION_NAME = (
    "calibration.json"  # optional: the held-out table of `sharcs.methods.sharcs.calibration` (plain JSON)
)
HEAD_ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu}


@dataclass
class RoutedOutput(ModelOutput):
    """loss (when labels are given), logits and each sample's route, shape (batch,)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    routes: torch.Tensor | None = None


@dataclass(frozen=True)
class Setting:
    """One inference setting of a trade-off curve: a name and the keyword arguments the forward takes
    (e.g. {"tau": 0.3}, {"cascade": 0.9}, {"width": 0.25}); the model's config is never changed."""

    name: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class HeadParts:
    """The task head's modules in the wrapped model (a plain dataclass, so they are not registered twice):
    the final norm of a pre-LN encoder, then dense, activation, a norm (ModernBERT), classifier."""

    final_norm: nn.Module  # nn.Identity for a post-LN encoder
    input_dropout: nn.Module  # before the dense layer (nn.Identity for BERT-style heads)
    dense: nn.Linear
    activation: Callable[[torch.Tensor], torch.Tensor]
    norm: nn.Module
    dropout: nn.Module
    classifier: nn.Linear

    @classmethod
    def find(cls, base: PreTrainedModel, layout: Layout) -> HeadParts:
        def module(path: str | None, root: nn.Module = base) -> nn.Module:
            return get_module(root, path) if path else nn.Identity()

        act = layout.head_act
        activation = act(base) if callable(act) else HEAD_ACTIVATIONS.get(act) or get_module(base, act)
        dropout = module(layout.head_dropout)
        before = nn.Identity()
        if layout.dropout_before_dense:
            before = module(layout.head_input_dropout) if layout.head_input_dropout else dropout
        return cls(
            final_norm=module(layout.final_norm, base.base_model),
            input_dropout=before,
            dense=get_module(base, layout.head_dense),
            activation=activation,
            norm=module(layout.head_norm),
            dropout=dropout,
            classifier=get_module(base, layout.classifier),
        )

    def features(
        self,
        first_token: torch.Tensor,
        dense_weight: torch.Tensor | None = None,
        final_norm: nn.Module | None = None,
    ) -> torch.Tensor:
        """What the classifier reads (before the head's dropout), from the first token's last hidden state;
        `dense_weight`: the dense layer reading only the first w*d channels, `final_norm`: the final norm
        of that width (SHARCS's narrow widths)."""
        x = self.input_dropout((self.final_norm if final_norm is None else final_norm)(first_token))
        x = F.linear(x, self.dense.weight if dense_weight is None else dense_weight, self.dense.bias)
        return self.norm(self.activation(x))

    def __call__(
        self,
        first_token: torch.Tensor,
        dense_weight: torch.Tensor | None = None,
        final_norm: nn.Module | None = None,
    ) -> torch.Tensor:
        """The logits (see `features` for the arguments)."""
        return self.classifier(self.dropout(self.features(first_token, dense_weight, final_norm)))


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build the dataclass `cls` from a dict, rejecting unknown fields with a one-line SharcsError."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise SharcsError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    return cls(**data)


class AdaptiveModel(nn.Module):
    """Base of every sharcs model; subclasses set `method`, `config_class` and implement the rest."""

    method: ClassVar[str]
    config_class: ClassVar[type]
    route_name: ClassVar[str] = "width"  # what a route value means, for tables and plots

    def __init__(self, base: PreTrainedModel, config: Any):
        super().__init__()
        self.layout = find_layout(base)
        cfg, lay = base.config, self.layout
        terms, span = lay.relative_terms(base.base_model) if lay.relative_terms else (0, 0)
        self.dims = Dims(
            hidden=getattr(cfg, lay.hidden_size),
            heads=getattr(cfg, lay.num_heads),
            ffn=getattr(cfg, lay.ffn_size),
            layers=getattr(cfg, lay.num_layers),
            gated=lay.gated_ffn,
            position_terms=terms,
            position_span=span,
        )
        self.base = base
        self.config = config
        self.calibration: dict[str, Any] | None = (
            None  # see sharcs.methods.sharcs.calibration; saved as calibration.json
        )

    @property
    def num_labels(self) -> int:
        return self.base.config.num_labels

    @property
    def device(self) -> torch.device:
        """Where this model's inputs go: its weights' device."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------- what subclasses provide
    @property
    def route_values(self) -> tuple[float, ...]:
        """Every route a sample can take (widths, or layer counts for early exit), ascending."""
        raise NotImplementedError

    def route_label(self, route: float) -> str:
        """A route value as a table key: the width "0.25", or "exit 3" for early exit."""
        return str(float(route))

    def sample_flops(self, route: float, length: int, forced: bool = False, **setting: Any) -> int:
        """Analytic FLOPs of one sample of `length` real tokens that took `route` (sharcs.modeling.flops);
        `forced`: the route was forced by the caller rather than chosen by the model; `setting`: the
        inference keywords the forward ran with (a curve setting)."""
        raise NotImplementedError

    def curve_settings(self) -> list[Setting]:
        """The inference settings `sharcs curve` sweeps (each a point of the trade-off curve)."""
        raise NotImplementedError

    def width_index(self, width: float) -> int:
        """Index of `width` among the model's widths; a SharcsError for an unknown width or a model
        whose routes are not widths."""
        if self.route_name != "width":
            raise SharcsError(f"a {self.method} model has no widths to force")
        for i, w in enumerate(self.route_values):
            if abs(w - width) < 1e-9:
                return i
        raise SharcsError(f"width {width} is not one of this model's widths {list(self.route_values)}")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before each epoch (DeeBERT freezes its backbone for its second stage)."""

    def training_hooks(self, args: TrainingArguments, num_samples: int) -> TrainingHooks:
        """What this method adds to the shared training loop (sharcs.training.hooks): by default plain
        shuffled batches on the loss the model returns."""
        return TrainingHooks(self, args, num_samples)

    def same_structure(self, config: Any) -> bool:
        """Whether a saved `config` describes this trainable model (a checkpoint of it can be resumed)."""
        return type(config) is type(self.config) and config == self.config

    def schedule_starts(self, epochs: int) -> tuple[int, ...]:
        """Epochs at which the learning-rate schedule restarts (warm-up and decay); (0,) for one schedule."""
        return (0,)

    # --------------------------------------------------------------------------- shared pieces
    def route_share(self, routes: list[float]) -> dict[str, float]:
        """The fraction of samples on each of the model's routes, keyed by `route_label`."""
        rounded = [round(r, 6) for r in routes]
        return {
            self.route_label(v): sum(1 for r in rounded if r == round(v, 6)) / max(1, len(rounded))
            for v in self.route_values
        }

    def full_flops(self, length: int) -> int:
        """Analytic FLOPs of the plain full-width model on one sample: the reference cost."""
        dims = self.dims
        return dims.layers * layer_flops(dims, 1.0, length) + head_flops(dims, 1.0, self.num_labels)

    def full_width_base(self) -> PreTrainedModel:
        """A copy of the wrapped Hugging Face model that computes this model's full width on its own,
        e.g. to start another method's training from a fine-tuned run (`sharcs train --model RUN`)."""
        return copy.deepcopy(self.base)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json (the base model's), sharcs_config.json and model.safetensors, atomically."""
        with atomic_directory(directory) as scratch:
            self.save_configs(scratch)
            save_model(self, str(scratch / WEIGHTS_NAME))

    def save_configs(self, folder: Path) -> None:
        """config.json (the base model's), sharcs_config.json and calibration.json: all but the weights."""
        self.base.config.save_pretrained(folder)
        config = {"method": self.method, **dataclasses.asdict(self.config)}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        if self.calibration is not None:
            (folder / CALIBRATION_NAME).write_text(json.dumps(self.calibration) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AdaptiveModel:
        """The model of this class saved in `directory`; `sharcs.load_model` loads a folder of any method."""
        if cls is AdaptiveModel:
            raise SharcsError("AdaptiveModel is abstract: use sharcs.load_model(folder) for any method")

        def resolve(method: str) -> type[AdaptiveModel]:
            if method != cls.method:
                raise SharcsError(f"{directory} holds a {method} model, not a {cls.method} model")
            return cls

        return load_folder(directory, resolve)


def load_folder(directory: str | Path, resolve: Callable[[str], type[AdaptiveModel]]) -> AdaptiveModel:
    """Rebuild a saved model from its configs, then load its weights (in eval mode). `resolve` maps the
    folder's method name (sharcs_config.json's "method") to the model class (see sharcs.methods.load)."""
    directory = Path(directory)
    if not (directory / WEIGHTS_NAME).is_file():
        raise SharcsError(f"{directory} is not a sharcs model folder: {WEIGHTS_NAME} is missing")
    cls, base_config, config = read_configs(directory, resolve)
    try:
        base = AutoModelForSequenceClassification.from_config(base_config, trust_remote_code=False)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise SharcsError(
            f"{directory / 'config.json'}: not a classifier config ({first_line(error)})"
        ) from None
    model = cls(base, config)
    try:
        state = load_file(str(directory / WEIGHTS_NAME))
    except (SafetensorError, OSError) as error:
        raise SharcsError(f"{directory / WEIGHTS_NAME} is corrupt or unreadable ({error})") from None
    load_weights(model, state, str(directory / WEIGHTS_NAME))
    model.calibration = read_calibration(directory)
    return model.eval()


def read_configs(
    directory: Path, resolve: Callable[[str], type[AdaptiveModel]]
) -> tuple[type[AdaptiveModel], Any, Any]:
    """(model class, the base model's config, the method's config) of a folder saved by `save_configs`."""
    for name in ("config.json", CONFIG_NAME):
        if not (directory / name).is_file():
            raise SharcsError(f"{directory} is not a sharcs model folder: {name} is missing")
    try:
        data = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SharcsError(f"{directory / CONFIG_NAME} is unreadable ({first_line(error)})") from None
    try:  # never the code a config's "auto_map" names: a model folder must not run anything
        base_config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    except (TypeError, OSError, ValueError, KeyError) as error:
        raise SharcsError(f"{directory / 'config.json'} is unreadable ({first_line(error)})") from None
    if not isinstance(data, dict):
        raise SharcsError(f"{directory / CONFIG_NAME} is not a sharcs config")
    cls = resolve(str(data.pop("method", "sharcs")))  # folders saved before baselines existed hold SHARCS
    try:
        from_dict = getattr(cls.config_class, "from_dict", None)  # else: the dataclass's own fields
        config = from_dict(data) if from_dict is not None else config_from_dict(cls.config_class, data)
    except TypeError as error:
        raise SharcsError(f"{directory / CONFIG_NAME}: bad config ({error})") from None
    return cls, base_config, config


def read_calibration(directory: Path) -> dict[str, Any] | None:
    """The folder's calibration.json (a JSON object), or None when it has none."""
    path = directory / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        calibration = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise SharcsError(f"{path} is unreadable ({error})") from None
    if not isinstance(calibration, dict):
        raise SharcsError(f"{path} is not a calibration table (a JSON object)")
    return calibration


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


def sdpa_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Boolean (batch, 1, 1, length) key mask for scaled_dot_product_attention; None without padding.

    While exporting a graph (sharcs.export) the mask is always kept: the graph must serve every input."""
    if not torch.compiler.is_exporting() and bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def trim_padding(hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the positions that are padding in every row of a group: less work, same result."""
    keep = attention_mask.bool().any(0)
    if bool(keep.all()):
        return hidden, attention_mask
    return hidden[:, keep], attention_mask[:, keep]


def embed(model: AdaptiveModel, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """The wrapped model's embedding layer output (token types only for architectures that use them)."""
    embeddings = model.base.base_model.embeddings
    if model.layout.uses_token_types:
        return embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    return embeddings(input_ids)


def attention_inputs(
    model: AdaptiveModel, hidden: torch.Tensor, attention_mask: torch.Tensor
) -> list[AttentionInputs]:
    """Each of the wrapped model's N layers' attention inputs at `hidden`'s length: the padding mask,
    combined with the layout's position bias, RoPE or sliding window where it has them."""
    padding = sdpa_mask(attention_mask)
    build = model.layout.attention
    if build is None:
        return [AttentionInputs(padding)] * model.dims.layers
    return build(model.base.base_model, hidden, padding)


def run_layers(
    model: AdaptiveModel,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    layer_parts: list[LayerParts],
    weights: list[SlicedWeights],
    first: int = 0,
    inputs: list[AttentionInputs] | None = None,
) -> torch.Tensor:
    """Encoder layers first, first+1, ... in turn, each with its own pretrained norms and the given
    (sliced) weights: the attention inputs are built once for all of them (`inputs`: all N layers'
    `attention_inputs`, when the caller holds them for this length)."""
    inputs = (attention_inputs(model, hidden, attention_mask) if inputs is None else inputs)[first:]
    for parts, layer_weights, attention in zip(layer_parts, weights, inputs[: len(layer_parts)], strict=True):
        hidden = layer_forward(
            hidden, attention, parts, layer_weights, parts.attn_norm, parts.ffn_norm, model.dims.head_size
        )
    return hidden
