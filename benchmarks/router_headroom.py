"""How much better could a SHARCS run's router route between its two trained paths?

    python benchmarks/router_headroom.py sst2 sharcs-k2 sharcs-k1-narrowest

For each finished two-width run of the results study (benchmarks/plans/results.toml;
runs/results/<task>/<run>), every dev sample is run once at each width. Because a sample's prediction
at a width does not depend on the other samples in its batch, any routing of the dev set can then be
scored without running the model again. Three routings are compared at each share of samples sent to
the narrow path:

- router: the run's own router, sending the samples it scores highest (a tau sweep);
- oracle: the samples that gain most from the narrow path (correct there and wrong at full width
  first, then correct at both; for regression, the smallest narrow-minus-full error first), an
  upper bound for any router over these two paths (exact for accuracy, a greedy bound otherwise);
- random: the expected score of a random split (mean of 20).

For comparison it also traces the cascade over the same two paths (`sharcs evaluate --cascade`, no
router): every sample runs the narrow path, and the least confident share of them (lowest top
softmax probability) is re-run at full width from layer K, paying for both paths.

A router far below the oracle at the shares that matter leaves accuracy on the table; an oracle that
is itself below the full-width score there means the narrow path, not the router, is the limit.
Writes docs/results/<task>/headroom.json and headroom.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import numpy as np
import torch

from sharcs.data.metrics import compute_metrics
from sharcs.inference.predict import predict
from sharcs.measure.run_dirs import dev_data
from sharcs.methods.sharcs.model import has_router
from sharcs.modeling.flops import average_flops
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.files import atomic_write_text
from sharcs.storage.saved_run import load_run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARES = [round(0.05 * i, 2) for i in range(21)]


def headroom(run_dir: Path) -> dict:
    """Router, oracle and random routing of one run's dev set at each narrow share in SHARES."""
    run = load_run(run_dir, "cpu")
    model = run.model
    if not has_router(model) or len(model.config.widths) != 2:
        raise SystemExit(f"{run_dir}: needs a SHARCS run with a trained router and two widths")
    data, _, info = dev_data(run, None)
    narrow_width, full_width = model.config.widths
    pad = pad_id(run.tokenizer)
    at_narrow = predict(model, data, 64, width=narrow_width, pad_token_id=pad)  # the router runs too
    narrow, router_score = at_narrow.logits, torch.sigmoid(at_narrow.router_logits[:, 0]).numpy()
    full = predict(model, data, 64, width=full_width, pad_token_id=pad).logits
    gold = np.asarray(data["labels"])
    narrow_confidence = torch.softmax(narrow.float(), -1).amax(-1).numpy()
    if info.is_regression:
        narrow, full = narrow[:, 0].numpy(), full[:, 0].numpy()
        gain = np.abs(full - gold) - np.abs(narrow - gold)
    else:
        narrow, full = narrow.argmax(-1).numpy(), full.argmax(-1).numpy()
        gain = (narrow == gold).astype(float) - (full == gold).astype(float)
    lengths = [len(ids) for ids in data["input_ids"]]
    metric = info.main_metric

    def score(narrow_mask: np.ndarray) -> tuple[float, float]:
        """The metric and FLOPs reduction with the masked samples on the narrow path."""
        predictions = np.where(narrow_mask, narrow, full)
        routes = np.where(narrow_mask, narrow_width, full_width).tolist()
        routed, full_flops = average_flops(model, routes, lengths)
        return compute_metrics([metric], predictions, gold)[metric], full_flops / routed

    def first(order: np.ndarray, count: int) -> np.ndarray:
        mask = np.zeros(len(gold), dtype=bool)
        mask[order[:count]] = True
        return mask

    by_router = np.argsort(-router_score, kind="stable")
    by_gain = np.argsort(-gain, kind="stable")
    rng = np.random.default_rng(0)
    points = []
    for share in SHARES:
        count = round(share * len(gold))
        router_metric, reduction = score(first(by_router, count))
        oracle_metric, _ = score(first(by_gain, count))
        shuffles = [first(rng.permutation(len(gold)), count) for _ in range(20)]
        random_metric = float(np.mean([score(mask)[0] for mask in shuffles]))
        points.append(
            {
                "narrow_share": share,
                "flops_reduction": reduction,
                "router": router_metric,
                "oracle": oracle_metric,
                "random": random_metric,
            }
        )
    cascade = []
    for share in SHARES:  # re-run the least confident `share` of samples at full width
        rerun = first(np.argsort(narrow_confidence, kind="stable"), round(share * len(gold)))
        routes = np.where(rerun, full_width, narrow_width).tolist()
        cascade_setting = {"cascade": model.config.cascade_confidence}  # its FLOPs count both passes
        routed, full_flops = average_flops(model, routes, lengths, setting=cascade_setting)
        predictions = np.where(rerun, full, narrow)
        cascade.append(
            {
                "escalated_share": share,
                "flops_reduction": full_flops / routed,
                metric: compute_metrics([metric], predictions, gold)[metric],
            }
        )
    return {
        "metric": metric,
        "widths": [narrow_width, full_width],
        "narrow_alone": score(np.ones(len(gold), dtype=bool))[0],
        "full_alone": score(np.zeros(len(gold), dtype=bool))[0],
        "points": points,
        "cascade": cascade,
    }


def plot(found: dict[str, dict], out: Path) -> None:
    """Metric against FLOPs reduction for each run and routing."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, r), color in zip(found.items(), colors, strict=False):
        x = [p["flops_reduction"] for p in r["points"]]
        for kind, style in (("router", "-"), ("oracle", "--"), ("random", ":")):
            label = f"{name} {kind}" if kind != "random" else None
            ax.plot(x, [p[kind] for p in r["points"]], style, color=color, label=label)
        cascade = r["cascade"]
        ax.plot([p["flops_reduction"] for p in cascade], [p[r["metric"]] for p in cascade], "-.", color=color)
        ax.axhline(r["full_alone"], color=color, lw=0.6, alpha=0.6)  # the run at full width alone
    ax.set_xlabel("FLOPs reduction (x)")
    ax.set_ylabel(next(iter(found.values()))["metric"])
    ax.set_title(
        "a run's two paths: router (solid), oracle (dashed), random (dotted), cascade (dash-dot), "
        "full width (thin)"
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "results"))
    parser.add_argument("--at", type=float, default=2.5, help="report each routing near this FLOPs reduction")
    args = parser.parse_args()
    torch.set_num_threads(1)
    found = {name: headroom(Path(args.runs_dir) / args.task / name) for name in args.runs}
    print(f"| run | narrow alone | full alone | at ~{args.at}x: router | oracle | random | cascade |")
    print("|---|---|---|---|---|---|---|")
    for name, r in found.items():
        near = min(r["points"], key=lambda p: abs(p["flops_reduction"] - args.at))
        cascade = min(r["cascade"], key=lambda p: abs(p["flops_reduction"] - args.at))
        print(
            f"| {name} | {r['narrow_alone']:.4f} | {r['full_alone']:.4f} | {near['router']:.4f} "
            f"({near['flops_reduction']:.2f}x) | {near['oracle']:.4f} | {near['random']:.4f} | "
            f"{cascade[r['metric']]:.4f} ({cascade['flops_reduction']:.2f}x) |"
        )
    folder = REPO / "docs" / "results" / args.task
    atomic_write_text(folder / "headroom.json", json.dumps(found, indent=2) + "\n")
    plot(found, folder / "headroom.png")
    print(f"wrote {folder / 'headroom.json'} and headroom.png")


if __name__ == "__main__":
    main()
