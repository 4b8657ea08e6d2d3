"""Would a router that reads more than layer K's mean state earn its place? An offline probe.

    python benchmarks/router_features.py runs/results/sst2/sandwich runs/results/mrpc/sandwich

For each finished two-width sandwich run, the held-out training rows are rebuilt exactly as training
split them (`prepare_data` on the run's own options); every held-out and dev row runs once at each
width, and layer K's states are pooled. Scorers are fitted on the router's half of the held-out rows
(the calibration's split; `split_rows`), any choice among their settings is made on the other half, and
each is then scored on dev at equal cost: samples go to full width in ascending order of the score until
the FLOPs budget is spent (`rule_point`, the calibration's own rule). The scorers:

- router: the run's own fitted router (layer K's masked mean, an MLP);
- ridge-mean: a ridge regression on the same mean state, predicting the router's target;
- ridge-rich: the same on the mean, the first token's state, the max over tokens and the log length;
- soft-rich: ridge-rich fitted to a graded target, the narrow path's probability of the label minus the
  full width's (regression: the full width's absolute error minus the narrow path's);
- length: shorter inputs narrow, no fitting.

And learned deferral rules, which read the narrow path's own output and so pay the cascade's costs (both
passes for what they re-run), in place of the cascade's top class probability:

- defer-probs: a ridge regression on the narrow path's sorted class probabilities, its predicted class
  and the log length, predicting the router's target (a recalibrated confidence);
- defer-rich: the same on the narrow path's final first-token state too (regression: the only cascade
  there is, since a regression head has no confidence).

Beside them: random routing (mean of 50 draws), the oracle, and the cascade (the narrowest width's own
confidence). Prints a markdown table and writes docs/notes/router_features.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sharcs.data import tokenize
from sharcs.data.collate import pad_batch
from sharcs.data.prepare import prepare_data
from sharcs.inference.predict import MODEL_INPUTS
from sharcs.measure.run_dirs import dev_data
from sharcs.methods.sharcs.calibration import held_out_table, split_rows
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.methods.sharcs.operating_points import rule_point
from sharcs.methods.sharcs.router import masked_mean
from sharcs.methods.sharcs.router_fit import narrow_targets
from sharcs.modeling.adaptive import trim_padding
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.files import atomic_write_text
from sharcs.storage.saved_run import load_run
from sharcs.training.options import load_train_options

REPO = Path(__file__).resolve().parents[1]
LAMBDAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@torch.inference_mode()
def row_features(
    model: SharcsModel, data, pad: int
) -> tuple[dict[str, np.ndarray], torch.Tensor, torch.Tensor]:
    """Every scorer's features per row, from one pass (layer K once, then each width), and the logits at
    the narrowest and full widths.

    Router features (layer K): "mean" (the masked mean), "rich" (the mean, the first token's state, the
    masked max and the log length), "length" (the log length). Deferral features (the narrow path's own
    output): "probs" (its class probabilities sorted from the top one down, so that a linear fit can
    read the top class probability itself, and its predicted class one-hot; regression: its prediction,
    and the log length), "defer" ("probs" and its final first-token state)."""
    narrowest, full_width = model.config.widths[0], model.config.widths[-1]
    means, firsts, maxes, narrow, full, states = [], [], [], [], [], []
    inputs = data.select_columns([c for c in MODEL_INPUTS if c in data.column_names])
    for start in range(0, len(data), 64):
        batch = pad_batch(inputs[start : start + 64], pad)
        mask = batch["attention_mask"]
        hidden = model.encode_prefix(batch["input_ids"], mask, batch.get("token_type_ids"))
        means.append(masked_mean(hidden, mask).float())
        firsts.append(hidden[:, 0].float())
        maxes.append(hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1).float())
        trimmed = trim_padding(hidden, mask)
        logits, layer_states = model.width_pass(*trimmed, narrowest)
        narrow.append(logits.float())
        states.append(layer_states[-1][:, 0].float())
        full.append(model.run_width(*trimmed, full_width).float())
    narrow_logits, full_logits = torch.cat(narrow), torch.cat(full)
    if narrow_logits.shape[1] == 1:
        outputs = narrow_logits
    else:
        probs = narrow_logits.softmax(-1)
        predicted = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[1]).float()
        outputs = torch.cat([probs.sort(-1, descending=True).values, predicted], 1)
    length = np.log(np.asarray([len(ids) for ids in data["input_ids"]], dtype=np.float64))[:, None]
    mean = torch.cat(means).numpy()
    probs_features = np.concatenate([outputs.numpy(), length], 1)
    features = {
        "mean": mean,
        "rich": np.concatenate([mean, torch.cat(firsts).numpy(), torch.cat(maxes).numpy(), length], 1),
        "length": length[:, 0],
        "probs": probs_features,
        "defer": np.concatenate([probs_features, torch.cat(states).numpy()], 1),
    }
    return features, narrow_logits, full_logits


def graded_target(narrow: torch.Tensor, full: torch.Tensor, labels: list, regression: bool) -> np.ndarray:
    """Higher where the narrow path (its `narrow` logits) does relatively better than full width (`full`)
    on the row's label."""
    labels = torch.tensor(labels)
    if regression:
        return ((full[:, 0] - labels).abs() - (narrow[:, 0] - labels).abs()).numpy()
    pick = labels.long().unsqueeze(1)
    return (narrow.softmax(-1).gather(1, pick) - full.softmax(-1).gather(1, pick))[:, 0].numpy()


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardized ridge regression: (mean, std, weights with the intercept last)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], 1)
    penalty = lam * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0
    return mean, std, np.linalg.solve(z.T @ z + penalty, z.T @ y)


def predict_ridge(fit: tuple, x: np.ndarray) -> np.ndarray:
    mean, std, w = fit
    return np.concatenate([(x - mean) / std, np.ones((len(x), 1))], 1) @ w


def ranked(score: np.ndarray) -> np.ndarray:
    """Scores mapped by rank into (0, 1), the range of `rule_point`'s thresholds; the order is kept."""
    return (np.argsort(np.argsort(score, kind="stable")) + 0.5) / len(score)


def fitted_scores(
    held: dict, dev: dict, target: np.ndarray, fit_rows, check_rows, table, budget, metric, rule: str = "tau"
):
    """Ridge scores on dev, with the penalty that does best on the calibration half at `budget` under
    `rule`'s costs."""
    best = None
    for lam in LAMBDAS:
        fit = ridge(held[fit_rows], target[fit_rows], lam)
        check = rule_point(table, rule, budget, metric, check_rows, ranked(predict_ridge(fit, held))).metric
        if best is None or check > best[0]:
            best = (check, fit)
    return predict_ridge(best[1], dev)


def probe(run_dir: Path, budgets: list[float]) -> dict:
    run = load_run(run_dir, "cpu")
    model = run.model
    if not isinstance(model, SharcsModel) or len(model.config.widths) != 2 or model.calibration is None:
        raise SystemExit(f"{run_dir}: needs a two-width SHARCS run of the sandwich recipe")
    pad = pad_id(run.tokenizer)
    options = load_train_options(run_dir)
    prepared = prepare_data(options)
    held = tokenize(prepared.held_out, run.tokenizer, options.max_seq_length)
    dev, _, info = dev_data(run, None)
    metric, regression = info.main_metric, info.is_regression
    held_table, dev_table = (
        held_out_table(model, held, pad_token_id=pad),
        held_out_table(model, dev, pad_token_id=pad),
    )
    held_x, held_narrow, held_full = row_features(model, held, pad)
    dev_x = row_features(model, dev, pad)[0]
    fit_rows, check_rows = split_rows(len(held), options.seed)
    binary = narrow_targets(held_table)
    graded = graded_target(held_narrow, held_full, held["labels"], regression)
    labels = np.asarray(dev_table["labels"])
    narrow, full = np.asarray(dev_table["prediction_narrow"]), np.asarray(dev_table["prediction_full"])
    if regression:
        oracle = np.abs(full - labels) - np.abs(narrow - labels)
    else:
        oracle = (narrow == labels).astype(float) - (full == labels).astype(float)
    rng = np.random.default_rng(0)
    found = {"run": str(run_dir), "metric": metric, "budgets": {}}
    for budget in budgets:

        def at(score: np.ndarray | None, rule: str = "tau", budget: float = budget) -> dict:
            ranks = None if score is None else ranked(score)
            point = rule_point(dev_table, rule, budget, metric, None, ranks)
            return {"metric": point.metric, "cost": point.cost, "full_share": point.full_share}

        row = {"router": at(None)}
        for name, features, target, rule in (
            ("ridge-mean", "mean", binary, "tau"),
            ("ridge-rich", "rich", binary, "tau"),
            ("soft-rich", "rich", graded, "tau"),
            ("defer-probs", "probs", binary, "cascade"),
            ("defer-rich", "defer", binary, "cascade"),
        ):
            x, dev_features = held_x[features], dev_x[features]
            splits = (fit_rows, check_rows)
            score = fitted_scores(x, dev_features, target, *splits, held_table, budget, metric, rule)
            row[name] = at(score, rule)
        row["length"] = at(-dev_x["length"] + 1e-9 * rng.standard_normal(len(labels)))
        row["random"] = {"metric": float(np.mean([at(rng.random(len(labels)))["metric"] for _ in range(50)]))}
        row["oracle"] = at(oracle + 1e-9 * rng.standard_normal(len(labels)))
        if not regression:
            row["cascade"] = at(None, "cascade")
        found["budgets"][str(budget)] = row
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--budgets", default="0.5,0.4", help="FLOPs budgets, fractions of the full model's")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "notes" / "router_features.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    found = [probe(run, budgets) for run in args.runs]
    fitted = ["router", "ridge-mean", "ridge-rich", "soft-rich"]
    deferral = ["defer-probs", "defer-rich"]
    names = [*fitted, "length", "random", "oracle", "cascade", *deferral]
    print(
        "| run | budget | " + " | ".join(names) + " | best router's share of random→oracle gap |"
        " best deferral's share |"
    )
    print("|---" * (len(names) + 4) + "|")
    for r in found:
        for budget, row in r["budgets"].items():
            cells = [
                f"{100 * row[n]['metric']:.2f}" + (f" ({row[n]['cost']:.2f})" if "cost" in row[n] else "")
                if n in row
                else "n/a"
                for n in names
            ]
            random, oracle = row["random"]["metric"], row["oracle"]["metric"]
            shares = [
                (max(row[n]["metric"] for n in group) - random) / (oracle - random)
                if oracle > random
                else float("nan")
                for group in (fitted, deferral)
            ]
            print(
                f"| {Path(r['run']).parent.name}/{Path(r['run']).name} | {budget} | "
                + " | ".join(cells)
                + "".join(f" | {share:.2f}" for share in shares)
                + " |"
            )
    atomic_write_text(args.out, json.dumps(found, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
