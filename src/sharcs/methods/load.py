"""Load a saved model folder of any registered method (`sharcs.load_model`)."""

from __future__ import annotations

from pathlib import Path

from sharcs.errors import SharcsError
from sharcs.methods.registry import model_classes
from sharcs.modeling.adaptive import CONFIG_NAME, AdaptiveModel, load_folder


def load_model(directory: str | Path, expected: type[AdaptiveModel] | None = None) -> AdaptiveModel:
    """The model saved in `directory` by `save_pretrained`, of whichever method saved it (in eval mode);
    `expected`: refuse a folder of another model class."""

    def resolve(method: str) -> type[AdaptiveModel]:
        classes = model_classes()
        if method not in classes:
            raise SharcsError(
                f"{Path(directory) / CONFIG_NAME}: unknown method {method!r} (known: {sorted(classes)})"
            )
        if expected is not None and classes[method] is not expected:
            raise SharcsError(f"{directory} holds a {method} model, not a {expected.method} model")
        return classes[method]

    return load_folder(directory, resolve)
