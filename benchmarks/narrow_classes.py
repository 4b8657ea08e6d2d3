"""Does a SHARCS run's narrow path still classify, or has the router become the classifier?

    python benchmarks/narrow_classes.py sst2 sharcs-k2 sharcs-k2-window2 sharcs-k1-t0.6

For each finished run of the results study (benchmarks/plans/results.toml; runs/results/<task>/<run>):
the class counts the narrowest width predicts when every dev sample is forced through it, and, per gold
label, the share of dev samples the router sends to that width. A narrow path that predicts one class
for every sample, fed by a router that sends mostly that class to it, is the degenerate loop described
in docs/notes/sst2-findings.md. Writes docs/results/<task>/narrow_classes.json.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from sharcs.inference.predict import predict
from sharcs.measure.run_dirs import dev_data
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.files import atomic_write_text
from sharcs.storage.saved_run import load_run

REPO = Path(__file__).resolve().parents[1]


def narrow_classes(run_dir: Path) -> dict:
    """Forced-narrowest predicted class counts and routed narrowest share per gold label."""
    run = load_run(run_dir, "cpu")
    data, _, _ = dev_data(run, None)
    pad = pad_id(run.tokenizer)
    narrowest = min(run.model.config.widths)
    gold = torch.tensor(data["labels"])
    forced = predict(run.model, data, 64, width=narrowest, pad_token_id=pad).logits.argmax(-1)
    narrow = predict(run.model, data, 64, pad_token_id=pad).routes == narrowest
    return {
        "narrowest_width": narrowest,
        "forced_predicted_classes": dict(sorted(Counter(forced.tolist()).items())),
        "routed_narrow_share_by_gold_label": {
            int(c): float(narrow[gold == c].float().mean()) for c in gold.unique()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    found = {name: narrow_classes(Path(args.runs_dir) / args.task / name) for name in args.runs}
    print("| run | forced narrowest: predicted classes | routed narrow share by gold label |")
    print("|---|---|---|")
    for name, r in found.items():
        shares = ", ".join(f"{c}: {s:.2f}" for c, s in r["routed_narrow_share_by_gold_label"].items())
        print(f"| {name} | {r['forced_predicted_classes']} | {shares} |")
    out = REPO / "docs" / "results" / args.task / "narrow_classes.json"
    atomic_write_text(out, json.dumps(found, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
