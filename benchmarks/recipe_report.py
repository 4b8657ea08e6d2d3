"""Measure the runs of a study plan on their dev sets and write its report (docs/<study>.{md,json}).

    python benchmarks/recipe_report.py benchmarks/plans/recipe.toml --measure      # cached per run
    python benchmarks/recipe_report.py benchmarks/plans/recipe.toml --speed --threads 2   # idle machine
    python benchmarks/recipe_report.py benchmarks/plans/recipe.toml                # report only

Per run (cached in <run>/study_measure.json): the dev metric at the run's own, held-out-calibrated
operating point, its FLOPs reduction and full-width share; the forced widths; and, for models with a
calibration table, routing rules compared at equal cost on dev (FLOPs budgets of the plan): the fitted
router, random routing, oracle routing (full width exactly where the narrow path is wrong and full
width right) and the cascade. `--speed` adds measured batch-1 latency and batch-64 throughput against
the plain Hugging Face model, side by side in one process (sharcs.measure.bench). The prose of the report is
the template benchmarks/templates/<study>.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import string
import sys
from pathlib import Path
from typing import Any

import numpy as np
from plan import REPO, jobs, load_plan

BATCH = 64
RANDOM_DRAWS = 50
STAGED = "full-then-sandwich-rewired"  # the run that is what `sharcs train` does by default (2 + 1 epochs)
BASELINE = "dynabert"  # the best baseline at equal cost in docs/results.md, trained for the same 3 epochs


def equal_cost(table: dict[str, Any], budget: float, metric: str, seed: int = 0) -> dict[str, Any]:
    """Router, random, oracle and cascade on the same samples at one FLOPs budget (routed costs)."""
    from sharcs.methods.sharcs.operating_points import rule_point
    from sharcs.methods.sharcs.router_fit import narrow_targets

    n = len(table["labels"])
    rng = np.random.default_rng(seed)
    router = rule_point(table, "tau", budget, metric)
    oracle_score = narrow_targets(table) + 1e-3 * rng.random(n)  # the samples that need full width first
    oracle = rule_point(table, "tau", budget, metric, score=oracle_score)
    draws = [rule_point(table, "tau", budget, metric, score=rng.random(n)) for _ in range(RANDOM_DRAWS)]
    out = {
        "budget": budget,
        "router": router.to_dict(),
        "oracle": oracle.to_dict(),
        "random": {
            "metric": statistics.mean(p.metric for p in draws),
            "metric_std": statistics.stdev(p.metric for p in draws),
            "cost": statistics.mean(p.cost for p in draws),
            "full_share": statistics.mean(p.full_share for p in draws),
        },
    }
    if not table["regression"]:
        out["cascade"] = rule_point(table, "cascade", budget, metric).to_dict()
    gap = oracle.metric - out["random"]["metric"]
    out["router_gap_closed"] = (router.metric - out["random"]["metric"]) / gap if gap > 0 else None
    return out


def measure(run_dir: Path, budgets: list[float], speed: bool, threads: int) -> dict[str, Any]:
    from sharcs.measure.bench import benchmark
    from sharcs.measure.evaluation import evaluate_model
    from sharcs.measure.run_dirs import dev_data
    from sharcs.methods.sharcs.calibration import held_out_table, operating_point
    from sharcs.methods.sharcs.model import SharcsModel
    from sharcs.modeling.pretrained import pad_id
    from sharcs.storage.files import atomic_write_text
    from sharcs.storage.saved_run import load_run

    cache = run_dir / "study_measure.json"
    measured = json.loads(cache.read_text()) if cache.is_file() else {}
    if (
        measured.get("budgets") != budgets
        or measured.get("trained") != (run_dir / "results.json").read_text()
    ):
        measured = {}  # measured for other budgets, or before the run was trained again
    if "dev" in measured and (not speed or "speed" in measured):
        return measured
    run = load_run(run_dir, "cpu")
    model, pad = run.model, pad_id(run.tokenizer)
    data, _, info = dev_data(run, None)
    metric = info.main_metric
    setting: dict[str, float] = {}
    if getattr(model, "calibration", None) is not None:
        # what `sharcs evaluate/bench RUN --flops-budget B` give: the operating point the current rule
        # chooses from the run's saved held-out table (the same as the saved one unless the rule changed)
        setting = operating_point(model, budgets[0]).arguments()
    if "dev" not in measured:
        own = evaluate_model(model, data, info.metrics, 64, None, pad, setting)
        measured = {"metric": metric, "dev": own.to_dict(), "samples": len(data), "budgets": budgets}
        measured["trained"] = (run_dir / "results.json").read_text()
        if isinstance(model, SharcsModel):
            config = model.config
            measured["config"] = {
                "routing": model.rule(setting),
                "tau": setting.get("tau", config.tau),
                "cascade_confidence": setting.get("cascade", config.cascade_confidence),
            }
        widths = getattr(model.config, "widths", None)  # SHARCS and DynaBERT-style models
        if widths is not None:
            measured["forced"] = {
                name: evaluate_model(model, data, info.metrics, 64, w, pad).metrics[metric]
                for name, w in (("narrowest", widths[0]), ("full", widths[-1]))
            }
            measured["narrowest_width"] = widths[0]
        if getattr(model, "calibration", None) is not None:
            table = held_out_table(model, data, 64, pad)
            measured["equal_cost"] = [equal_cost(table, b, metric) for b in budgets]
    if speed and "speed" not in measured:
        report = benchmark(model, data, threads, 200, (BATCH,), 3, (None,), pad, setting)
        mode = report["modes"]["routed"]
        measured["speed"] = {
            "latency_speedup_bs1": mode["latency_speedup_bs1"],
            "latency_speedup_bs1_spread": mode["latency_speedup_bs1_spread"],
            "throughput_speedup": mode["throughput"][str(BATCH)]["speedup"],
            "throughput_spread": mode["throughput_spread"][str(BATCH)],
            "predicted_speedup": mode["predicted_speedup"],
            "own_full": mode.get("own_full"),
            "machine": report["machine"],
        }
    atomic_write_text(cache, json.dumps(measured, indent=2) + "\n")
    return measured


def _mean_std(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def _fmt(stat: dict[str, Any] | None, scale: float = 100.0) -> str:
    if stat is None:
        return "not run"
    if stat["n"] == 1:
        return f"{scale * stat['mean']:.2f} (1 seed)"
    mean, std, low = (scale * stat[k] for k in ("mean", "std", "min"))
    return f"{mean:.2f} ± {std:.2f} (min {low:.2f}, n={stat['n']})"


def aggregate(plan: dict, runs: Path, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per task and run: every seed's measurements and their mean, spread and range. A run with no
    folder here keeps the measurements `earlier` (the study's docs JSON) holds for it, so a report
    written on a machine without some run folders (a later session) loses none of them."""
    out: dict[str, Any] = {}
    for job in jobs(plan, runs):
        path = job.out / "study_measure.json"
        if path.is_file():
            m = json.loads(path.read_text())
        elif str(job.seed) in (earlier or {}).get(job.task, {}).get(job.run, {}):
            m = earlier[job.task][job.run][str(job.seed)]  # type: ignore[index]
        else:
            continue
        task = out.setdefault(job.task, {})
        task.setdefault(job.run, {})[str(job.seed)] = m
    summary: dict[str, Any] = {}
    for task, by_run in out.items():
        summary[task] = {}
        for run, seeds in by_run.items():
            rows = list(seeds.values())
            entry: dict[str, Any] = {
                "metric_name": rows[0]["metric"],
                "seeds": sorted(int(s) for s in seeds),
                "metric": _mean_std([r["dev"]["metrics"][r["metric"]] for r in rows]),
                "flops_reduction": _mean_std([r["dev"]["flops_reduction"] for r in rows]),
            }
            if all("forced" in r for r in rows):
                entry["narrowest_width"] = rows[0]["narrowest_width"]
                for name in ("narrowest", "full"):
                    entry[f"forced_{name}"] = _mean_std([r["forced"][name] for r in rows])
            if all("equal_cost" in r for r in rows):
                entry["equal_cost"] = []
                for i, point in enumerate(rows[0]["equal_cost"]):
                    at = {"budget": point["budget"]}
                    for name in ("router", "oracle", "random", "cascade"):
                        if name in point:
                            at[name] = _mean_std([r["equal_cost"][i][name]["metric"] for r in rows])
                    closed = [r["equal_cost"][i]["router_gap_closed"] for r in rows]
                    at["router_gap_closed"] = (
                        _mean_std([c for c in closed if c is not None])
                        if all(c is not None for c in closed)
                        else None
                    )
                    entry["equal_cost"].append(at)
            speeds = [r["speed"] for r in rows if "speed" in r]
            if speeds:
                entry["speed"] = {
                    key: _mean_std([s[key] for s in speeds])
                    for key in ("latency_speedup_bs1", "throughput_speedup", "predicted_speedup")
                }
                entry["speed_by_seed"] = {seed: r["speed"] for seed, r in seeds.items() if "speed" in r}
            summary[task][run] = entry
    return {"runs": out, "summary": summary}


def _speed_text(entry: dict[str, Any]) -> str:
    speed = entry.get("speed")
    if not speed:
        return "not measured"
    bs1, bs64 = speed["latency_speedup_bs1"]["mean"], speed["throughput_speedup"]["mean"]
    predicted = speed["predicted_speedup"]["mean"]
    return f"{bs1:.2f}x / {bs64:.2f}x ({bs1 / predicted:.2f} / {bs64 / predicted:.2f} of the FLOPs ratio)"


def _by_seed(entry: dict[str, Any], stat: dict[str, Any]) -> dict[int, float]:
    return dict(zip(entry["seeds"], stat["values"], strict=True))


def _delta(entry: dict[str, Any], reference: dict[str, Any] | None) -> str:
    """Points between two runs' mean dev metric over the seeds both ran (marked when fewer than all)."""
    if reference is None:
        return ""
    return _paired(_by_seed(entry, entry["metric"]), _by_seed(reference, reference["metric"]))


def _paired(mine: dict[int, float], theirs: dict[int, float]) -> str:
    """Points between two per-seed figures, averaged over the seeds both have."""
    both = [s for s in mine if s in theirs]
    if not both:
        return "no common seed"
    delta = 100 * sum(mine[s] - theirs[s] for s in both) / len(both)
    if len(both) == max(len(mine), len(theirs)):
        return f"{delta:+.2f}"
    return f"{delta:+.2f} (seed{'s' if len(both) > 1 else ''} {', '.join(map(str, both))})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def tables(summary: dict[str, Any], run_specs: dict[str, Any]) -> dict[str, str]:
    """The markdown tables the template's $placeholders take: the default (staged) recipe against the
    fine-tune it started from and against one more epoch of fine-tuning, the single-stage sandwich runs
    against their full fine-tune, every run's routing rules at equal cost, and the other runs
    (ablations), each against its plan's `reference` (default: the run `full`)."""
    staged = [
        "| task (metric) | 2-epoch fine-tune | 3-epoch fine-tune (2 + 1) | default recipe at its calibrated"
        " budget | FLOPs reduction | Δ to 2-epoch | Δ to 3-epoch | full width forced | narrowest width forced"
        " | measured speed-up bs 1 / bs 64 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    headline = [
        "| task (metric) | full fine-tune | sandwich at its calibrated budget | FLOPs reduction | Δ to full |"
        " full width forced | narrowest width forced | measured speed-up bs 1 / bs 64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    comparison = [
        "| task | run | budget | router | random | oracle | cascade | router's share of random→oracle gap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ablation = [
        "| task | run | dev metric | FLOPs reduction | Δ to its reference | full width forced"
        " | narrowest forced |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, runs in summary.items():
        full = runs.get("full")
        for run, entry in runs.items():
            if run == "full":
                continue
            name = run_specs.get(run, {}).get("reference", "full")
            ref = runs.get(name)
            versus = _delta(entry, ref)
            delta = versus + (f" (vs {name})" if versus and name != "full" else "")
            common = [
                _fmt(entry["metric"]),
                f"{entry['flops_reduction']['mean']:.2f}x",
                delta,
                _fmt(entry.get("forced_full")),
                _fmt(entry.get("forced_narrowest"))
                + (f" (w={entry['narrowest_width']:g})" if "narrowest_width" in entry else ""),
            ]
            if run == STAGED:  # against `full` and against its plan reference, one more epoch of it
                staged.append(
                    _row(
                        [
                            f"{task} ({entry['metric_name']})",
                            _fmt(full["metric"]) if full else "not run",
                            _fmt(ref["metric"]) if ref else "not run",
                            *common[:2],
                            _delta(entry, full),
                            versus,
                            *common[3:],
                            _speed_text(entry),
                        ]
                    )
                )
            elif run == "sandwich":
                reference = _fmt(full["metric"]) if full else "not run"
                headline.append(
                    _row([f"{task} ({entry['metric_name']})", reference, *common, _speed_text(entry)])
                )
            else:
                ablation.append(_row([task, run, *common]))
            for at in entry.get("equal_cost", []):
                closed = at.get("router_gap_closed")
                cascade = _fmt(at["cascade"]) if "cascade" in at else "n/a (regression)"
                gap = "" if closed is None else f"{closed['mean']:.2f}"
                comparison.append(
                    _row(
                        [
                            task,
                            run,
                            f"{at['budget']:g}",
                            *(_fmt(at[k]) for k in ("router", "random", "oracle")),
                            cascade,
                            gap,
                        ]
                    )
                )
    return {
        "baseline": _baseline_table(summary),
        "staged": "\n".join(staged) if len(staged) > 2 else "(not run)",
        "headline": "\n".join(headline),
        "equal_cost": "\n".join(comparison),
        "ablation": "\n".join(ablation) if len(ablation) > 2 else "(none)",
    }


def _baseline_table(summary: dict[str, Any]) -> str:
    """The default recipe against the DynaBERT-style baseline at its narrowest width, both over the same
    seeds: the recipe as saved (its held-out-calibrated budget, so its cost on dev lands near the
    baseline's, not on it) and its cascade at the plan budget equal to the baseline's cost on dev."""
    rows = [
        "| task (metric) | default recipe at its calibrated budget (FLOPs reduction) | default recipe's"
        " cascade at the baseline's cost | DynaBERT-style at its narrowest width (FLOPs reduction) |"
        " Δ cascade to DynaBERT-style | DynaBERT-style full width forced | measured speed-up bs 1 / bs 64:"
        " recipe as saved | DynaBERT-style |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, runs in summary.items():
        staged, baseline = runs.get(STAGED), runs.get(BASELINE)
        if staged is None or baseline is None:
            continue
        cost = 1 / baseline["flops_reduction"]["mean"]  # every sample at one width: the same on any data
        same = [a for a in staged.get("equal_cost", []) if abs(a["budget"] - cost) < 1e-3 and "cascade" in a]
        cascade = same[0]["cascade"] if same else None
        delta = _paired(_by_seed(staged, cascade), _by_seed(baseline, baseline["metric"])) if cascade else ""
        width = f"w={baseline['narrowest_width']:g}, " if "narrowest_width" in baseline else ""
        cells = [
            f"{task} ({staged['metric_name']})",
            f"{_fmt(staged['metric'])} ({staged['flops_reduction']['mean']:.2f}x)",
            f"{_fmt(cascade)} ({1 / cost:.2f}x)" if cascade else f"no plan budget at {cost:.3f}",
            f"{_fmt(baseline['metric'])} ({width}{baseline['flops_reduction']['mean']:.2f}x)",
            delta,
            _fmt(baseline.get("forced_full")),
            _speed_text(staged),
            _speed_text(baseline),
        ]
        rows.append(_row(cells))
    return "\n".join(rows) if len(rows) > 2 else "(not run)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("plan", type=Path)
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    parser.add_argument("--measure", action="store_true", help="measure finished runs not yet measured")
    parser.add_argument("--speed", action="store_true", help="also time each sandwich run (idle machine!)")
    parser.add_argument("--speed-seeds", default="42", help="seeds to time (default: 42)")
    parser.add_argument("--speed-runs", default="sandwich", help="runs to time (default: sandwich)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    plan = load_plan(args.plan)
    budgets = plan["study"].get("budgets", [0.5])
    speed_seeds = {int(s) for s in args.speed_seeds.split(",")}
    if args.measure or args.speed:
        for job in jobs(plan, args.runs):
            if not (job.out / "results.json").is_file():
                continue
            timed = args.speed and job.run in args.speed_runs.split(",") and job.seed in speed_seeds
            print(f"[report] measuring {job.label}{' (speed)' if timed else ''}", flush=True)
            measure(job.out, budgets, timed, args.threads)
    name = plan["study"]["name"]
    page_json = args.out / f"{name}.json"
    earlier = json.loads(page_json.read_text())["runs"] if page_json.is_file() else None
    data = aggregate(plan, args.runs, earlier)
    template = (REPO / "benchmarks" / "templates" / f"{name}.md").read_text()
    text = string.Template(template).substitute(**tables(data["summary"], plan["runs"]))
    from sharcs.storage.files import atomic_write_text

    atomic_write_text(args.out / f"{name}.json", json.dumps({"plan": plan, **data}, indent=1) + "\n")
    atomic_write_text(args.out / f"{name}.md", text)
    print(f"[report] wrote {args.out / name}.md and .json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
