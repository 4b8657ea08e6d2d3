"""Defaults on data no study here has used (issue #23, "defaults that save on new data").

    python benchmarks/new_data.py --seeds 42            # trains what is missing (resumable), then reports
    python benchmarks/new_data.py --seeds 42 --report   # report only

QNLI has no training split in ../shared/glue, and no study of this project has used it: its dev split
(5,463 question/sentence pairs) is cut into 4,000 training and 1,463 dev rows and written as a user's own
TSV files. Each seed trains `sharcs train` with every default (`defaults-v3`: the staged recipe, a 2-epoch
fine-tune in defaults-v3-sSEED/finetune/, rewiring, then 1 epoch of the sandwich recipe, --flops-budget
0.5) and `--method full` with the same settings (3 epochs), one process at a time with one thread each,
and prints dev accuracy, the FLOPs reduction and the routed shares side by side, with the staged run's
own 2-epoch fine-tune. Runs: runs/newdata/qnli/. (The runs `defaults` and `defaults-v2` of
docs/notes/recipe-findings.md §5 were the single-stage sandwich recipe, the default before.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "glue" / "QNLI" / "dev.tsv"
TRAIN_ROWS = 4000


def split(folder: Path) -> tuple[Path, Path]:
    """train.tsv (the first 4,000 rows of QNLI's dev split) and dev.tsv (the rest), written once."""
    train, dev = folder / "train.tsv", folder / "dev.tsv"
    if not (train.is_file() and dev.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        with SOURCE.open(newline="") as f:
            header, *rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        for path, part in ((train, rows[:TRAIN_ROWS]), (dev, rows[TRAIN_ROWS:])):
            with path.open("w", newline="") as f:
                writer = csv.writer(f, delimiter="\t", lineterminator="\n")
                writer.writerow(header)
                writer.writerows(part)
    return train, dev


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "newdata")
    parser.add_argument("--report", action="store_true", help="report only; train nothing")
    args = parser.parse_args()
    train, dev = split(args.runs / "data")
    data = ["--train-file", train, "--validation-file", dev, "--text-columns", "question,sentence"]
    data += ["--label-column", "label"]
    runs = {"defaults-v3": [], "full": ["--method", "full"]}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, extra in runs.items():
            out = args.runs / "qnli" / f"{name}-s{seed}"
            if not args.report and not (out / "results.json").is_file():
                command = [sys.executable, "-m", "sharcs", "train", *map(str, data), *extra]
                command += ["--seed", str(seed), "--output-dir", str(out), "--continue"]
                print("[new_data]", " ".join(command), flush=True)
                subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if (out / "results.json").is_file():
                results = json.loads((out / "results.json").read_text())
                rows.append((name, seed, results))
            if (out / "finetune" / "results.json").is_file():  # a staged run's own fine-tune
                results = json.loads((out / "finetune" / "results.json").read_text())
                rows.append((f"{name}/finetune", seed, results))
    print("| run | seed | dev accuracy | FLOPs reduction | width share |")
    print("|---|---|---|---|---|")
    for name, seed, r in rows:
        share = ", ".join(f"{w}: {100 * p:.1f}%" for w, p in r["width_share"].items())
        print(f"| {name} | {seed} | {r['metrics']['accuracy']:.4f} | {r['flops_reduction']:.2f}x | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
