"""What each calibration knob gives on dev: --flops-budget B against --max-drop D, over seeds (issue #23).

    python benchmarks/operating_points.py runs/recipe/sst2/sandwich-s4{2,3,4} --reference sst2/full
    python benchmarks/operating_points.py runs/newdata/qnli/defaults-s42 \
        --reference-run runs/newdata/qnli/full-s42

For every run (a sandwich-recipe SHARCS run), the dev set is passed once at each width (the per-sample
table `sharcs.methods.sharcs.calibration.held_out_table` builds), and each knob's operating point is taken
from the run's saved held-out calibration exactly as `sharcs evaluate RUN --flops-budget B` or
`--max-drop D` would take it; its rule and threshold are then applied to the dev table, which gives the
same metric and FLOPs as evaluating the routed model (tests/test_recipe.py checks that equality on
calibration rows). The reference is the equal-budget full fine-tune: the recipe study's record of it in
docs/recipe.json (--reference TASK/RUN) or run folders (--reference-run). Prints a Markdown table and
writes the figures to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGETS = (0.5, 0.6, 0.7, 0.8)
DROPS = (0.005, 0.01, 0.02)


def knob_points(run_dir: Path, budgets: tuple[float, ...], drops: tuple[float, ...]) -> dict[str, Any]:
    """Dev metric, FLOPs reduction and full-width share at each knob, and the forced widths' metrics."""
    from sharcs.measure.run_dirs import dev_data
    from sharcs.methods.sharcs.calibration import held_out_table, operating_point
    from sharcs.methods.sharcs.operating_points import threshold_point
    from sharcs.modeling.pretrained import pad_id
    from sharcs.storage.saved_run import load_run

    run = load_run(run_dir, "cpu")
    data, _, info = dev_data(run, None)
    metric = info.main_metric
    table = held_out_table(run.model, data, 64, pad_id(run.tokenizer))

    def on_dev(rule: str, threshold: float) -> dict[str, float]:
        point = threshold_point(table, rule, threshold, metric)
        return {"metric": point.metric, "reduction": 1.0 / point.cost, "full_share": point.full_share}

    knobs: dict[str, Any] = {}
    for budget in budgets:
        point = operating_point(run.model, budget)
        knobs[f"budget {budget:g}"] = {"rule": point.rule, **on_dev(point.rule, point.threshold)}
    for drop in drops:
        point = operating_point(run.model, None, max_drop=drop)
        knobs[f"max-drop {drop:g}"] = {"rule": point.rule, **on_dev(point.rule, point.threshold)}
    # the router's scores lie in [0, 1]: threshold 0 sends no sample to full width, above 1 every one
    forced = {"narrowest": on_dev("tau", 0.0)["metric"], "full": on_dev("tau", 1.1)["metric"]}
    return {"metric": metric, "samples": len(data), "knobs": knobs, "forced": forced}


def reference_metrics(args: argparse.Namespace) -> list[float]:
    """The full fine-tune's dev metric per seed: from docs/recipe.json or from run folders."""
    if args.reference_run:
        return [json.loads((Path(r) / "results.json").read_text())["metrics"] for r in args.reference_run]
    task, name = args.reference.split("/")
    record = json.loads((REPO / "docs" / "recipe.json").read_text())["runs"][task][name]
    return [seed["dev"]["metrics"] for seed in record.values()]


def _stat(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f} (1 seed)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="sandwich-recipe SHARCS run folders (one per seed)"
    )
    parser.add_argument("--reference", help="TASK/RUN of docs/recipe.json (e.g. sst2/full)")
    parser.add_argument("--reference-run", nargs="+", help="full fine-tune run folders instead")
    parser.add_argument(
        "--budgets",
        type=lambda text: tuple(float(b) for b in text.split(",")),
        default=BUDGETS,
        help=f"comma-separated --flops-budget values (default: {','.join(map(str, BUDGETS))})",
    )
    parser.add_argument("--out", type=Path, help="write the figures here (JSON)")
    args = parser.parse_args()
    if not (args.reference or args.reference_run):
        parser.error("give --reference TASK/RUN or --reference-run DIR...")
    measured = {str(run): knob_points(run, args.budgets, DROPS) for run in args.runs}
    metric = next(iter(measured.values()))["metric"]
    full = [m[metric] for m in reference_metrics(args)]
    print(f"{len(args.runs)} run(s); the full fine-tune: {_stat(full)} dev {metric}\n")
    print("| knob | dev metric | below the full fine-tune | FLOPs reduction | full-width share | rules |")
    print("|---|---|---|---|---|---|")
    knobs = list(next(iter(measured.values()))["knobs"])
    rows = {}
    for knob in knobs:
        points = [m["knobs"][knob] for m in measured.values()]
        values = [p["metric"] for p in points]
        below = 100 * (statistics.mean(full) - statistics.mean(values))
        reduction = statistics.mean(p["reduction"] for p in points)
        share = 100 * statistics.mean(p["full_share"] for p in points)
        rules = ", ".join(sorted({p["rule"] for p in points}))
        print(f"| {knob} | {_stat(values)} | {below:.2f} | {reduction:.2f}x | {share:.0f}% | {rules} |")
        rows[knob] = {"metric": values, "reduction": [p["reduction"] for p in points]}
    for width in ("narrowest", "full"):
        values = [m["forced"][width] for m in measured.values()]
        below = 100 * (statistics.mean(full) - statistics.mean(values))
        print(f"| forced {width} width | {_stat(values)} | {below:.2f} | | | |")
    if args.out:
        args.out.write_text(json.dumps({"reference": full, "runs": measured}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
