"""Every training method, registered once: its `--method` name, what it is, and where it lives.

A method is a module (or folder) under `sharcs.methods` with a model class (an `AdaptiveModel`) and a
preset: `preset(options, base, num_layers) -> AdaptiveModel` wraps a Hugging Face classifier as
`sharcs train --method NAME` asks. Registering it is one entry in `METHODS` below (or, for a method of
your own, one `register_method` call); the command line's choices, saving and loading and the
parametrized tests are driven from it. The table names the homes
as strings, so reading it (the command line's option checks) imports no torch.

Several methods may share one model class: SHARCS, the cascade and the router-free baselines are all
`SharcsModel`s with different configs, and a saved folder names the model class (`AdaptiveModel.method`,
e.g. "sharcs" or "early_exit"), not the preset that built it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sharcs.errors import SharcsError


@dataclass(frozen=True)
class Method:
    """One `--method`: its name, a one-line summary (for --help and docs), its model class and its preset,
    each as "module:attribute"."""

    name: str
    summary: str
    model: str
    preset: str
    keeps_residual: bool = (
        False  # it can narrow heads and FFN only, keeping the residual stream (--keep-residual)
    )
    narrows: bool = True  # it runs narrow widths, whose leading heads and units --rewire-samples chooses

    def model_class(self) -> type:
        return _attribute(self.model)

    def build(self, options: Any, base: Any, num_layers: int) -> Any:
        """The model `sharcs train` trains: `base` wrapped as `options` ask."""
        return _attribute(self.preset)(options, base, num_layers)


SHARCS_MODEL = "sharcs.methods.sharcs.model:SharcsModel"
_PRESETS = "sharcs.methods.sharcs.presets"

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "sharcs",
            "a router after layer K sends each sample on at the width it needs (the paper's method)",
            SHARCS_MODEL,
            f"{_PRESETS}:sharcs",
            keeps_residual=True,
        ),
        Method(
            "cascade",
            "no router: the narrowest width first, full width again for the samples it is unsure of "
            "(beyond the paper)",
            SHARCS_MODEL,
            f"{_PRESETS}:cascade",
            keeps_residual=True,
        ),
        Method(
            "full",
            "plain fine-tuning of the full model (the reference)",
            SHARCS_MODEL,
            f"{_PRESETS}:full",
            keeps_residual=True,
            narrows=False,
        ),
        Method(
            "fixed",
            "K full layers, then every sample at --fixed-width",
            SHARCS_MODEL,
            f"{_PRESETS}:fixed",
            keeps_residual=True,
        ),
        Method(
            "random",
            "SHARCS's architecture routed at random with --width-shares",
            SHARCS_MODEL,
            f"{_PRESETS}:random",
            keeps_residual=True,
        ),
        Method(
            "dynabert",
            "heads and FFN of every layer narrowed to each of --widths (DynaBERT)",
            "sharcs.methods.dynabert:DynaBertModel",
            "sharcs.methods.dynabert:preset",
        ),
        Method(
            "deebert",
            "an exit after every layer, taken when its entropy is below --entropy-threshold (DeeBERT)",
            "sharcs.methods.early_exit:EarlyExitModel",
            "sharcs.methods.early_exit:deebert",
            narrows=False,
        ),
        Method(
            "pabee",
            "exit once --patience exits in a row agree (PABEE)",
            "sharcs.methods.early_exit:EarlyExitModel",
            "sharcs.methods.early_exit:pabee",
            narrows=False,
        ),
    )
}


def register_method(method: Method) -> None:
    """Add a method (e.g. from your own module, as examples/shallow_method.py does): it becomes a
    `--method` choice of a parser built afterwards, and `sharcs.load_model` loads its folders."""
    if method.name in METHODS:
        raise SharcsError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def methods_help() -> str:
    """The `--method` help: every registered method with its summary."""
    return "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values())


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise SharcsError(f"--method: must be one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def _attribute(home: str) -> Any:
    module, _, name = home.partition(":")
    return getattr(importlib.import_module(module), name)


def model_classes() -> dict[str, Callable[..., Any]]:
    """Every registered model class by the name a saved folder gives it (`AdaptiveModel.method`)."""
    classes = [_attribute(home) for home in dict.fromkeys(m.model for m in METHODS.values())]
    return {cls.method: cls for cls in classes}
