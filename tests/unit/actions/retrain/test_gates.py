"""Each gate rejects its own failure kind and passes a good candidate, with measured vs bound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from actions.retrain import benchmark, config, dataset, gates, model, trainer
from tests.support.retrain import samples

ONLY_QUALITY = config.GateSettings(
    latency=config.LatencyGateSettings(enabled=False),
    memory=config.MemoryGateSettings(enabled=False),
    slices=config.SliceGateSettings(enabled=False),
)


@pytest.fixture(scope="module")
def good() -> model.TabularModel:
    return trainer.train(samples.binary(400, seed=1), samples.FAST_TRAINER).model


def evaluation(
    candidate: model.TabularModel,
    *,
    holdout: dataset.TrainingSet | None = None,
    train: dataset.TrainingSet | None = None,
) -> gates.Evaluation:
    return gates.Evaluation(
        candidate=candidate,
        load_candidate=lambda: candidate,
        train=train if train is not None else samples.binary(400, seed=1),
        holdout=holdout if holdout is not None else samples.binary(200, seed=2, id_prefix="h"),
        task=candidate.task,
        positive_class=candidate.positive_class,
    )


def by_name(results: list[gates.GateResult]) -> dict[str, gates.GateResult]:
    return {result.name: result for result in results}


def test_a_good_candidate_passes_every_default_gate(good: model.TabularModel) -> None:
    settings = config.GateSettings(slices=config.SliceGateSettings(segments=["region"]))
    results = gates.evaluate(settings, evaluation(good))
    assert gates.failures(results) == []
    names = [r.name for r in results]
    assert names[:3] == ["leakage:request_ids", "leakage:label_copy", "performance:auc"]
    assert {"slice:region=eu", "slice:region=us", "latency", "memory"} <= set(names)
    performance = by_name(results)["performance:auc"]
    assert performance.measured is not None and performance.bound is not None
    assert performance.measured >= performance.bound
    assert "logged predictions" in performance.detail


def test_performance_rejects_a_candidate_worse_than_the_serving_model() -> None:
    noise = samples.binary(400, seed=1)
    shuffled_labels = dataclasses.replace(noise, labels=np.random.default_rng(0).permutation(noise.labels))
    bad = trainer.train(shuffled_labels, samples.FAST_TRAINER).model
    result = by_name(gates.evaluate(ONLY_QUALITY, evaluation(bad)))["performance:auc"]
    assert not result.passed
    assert result.measured is not None and result.bound is not None and result.measured < result.bound
    assert "vs baseline" in result.detail and "needs >=" in result.detail


def test_performance_without_a_baseline_fails_unless_allowed(good: model.TabularModel) -> None:
    unserved = dataclasses.replace(
        samples.binary(200, seed=2, id_prefix="h"), served_predictions=None, served_scores=None
    )
    strict = by_name(gates.evaluate(ONLY_QUALITY, evaluation(good, holdout=unserved)))
    assert not strict["performance:auc"].passed
    assert "require_baseline=false" in strict["performance:auc"].detail
    lenient = ONLY_QUALITY.model_copy(
        update={"performance": config.PerformanceGateSettings(require_baseline=False)}
    )
    assert by_name(gates.evaluate(lenient, evaluation(good, holdout=unserved)))["performance:auc"].passed


def test_performance_refuses_to_judge_a_tiny_holdout(good: model.TabularModel) -> None:
    result = by_name(
        gates.evaluate(ONLY_QUALITY, evaluation(good, holdout=samples.binary(10, seed=2, id_prefix="h")))
    )
    assert not result["performance:auc"].passed
    assert result["performance:auc"].measured == 10.0 and result["performance:auc"].bound == 30.0


def test_explicit_metric_f1_is_used(good: model.TabularModel) -> None:
    settings = ONLY_QUALITY.model_copy(update={"performance": config.PerformanceGateSettings(metric="f1")})
    assert "performance:f1" in by_name(gates.evaluate(settings, evaluation(good)))


def test_slice_gate_rejects_the_segment_where_the_candidate_fails(good: model.TabularModel) -> None:
    holdout = samples.binary(400, seed=2, id_prefix="h")
    eu = holdout.segments["region"] == "eu"
    # In the EU the relation flipped: the candidate is wrong there, fine elsewhere.
    flipped = dataclasses.replace(holdout, labels=np.where(eu, 1.0 - holdout.labels, holdout.labels))
    settings = config.GateSettings(
        slices=config.SliceGateSettings(segments=["region"], max_gap_to_overall=0.1),
        latency=config.LatencyGateSettings(enabled=False),
        memory=config.MemoryGateSettings(enabled=False),
        performance=config.PerformanceGateSettings(enabled=False),
    )
    results = by_name(gates.evaluate(settings, evaluation(good, holdout=flipped)))
    assert not results["slice:region=eu"].passed and results["slice:region=us"].passed
    eu_result = results["slice:region=eu"]
    assert (
        eu_result.measured is not None
        and eu_result.bound is not None
        and eu_result.measured < eu_result.bound
    )
    assert "overall" in eu_result.detail and "baseline on this slice" in eu_result.detail


def test_slice_gate_names_an_unknown_segment(good: model.TabularModel) -> None:
    settings = ONLY_QUALITY.model_copy(update={"slices": config.SliceGateSettings(segments=["country"])})
    result = by_name(gates.evaluate(settings, evaluation(good)))["slice:country"]
    assert not result.passed and "present: ['region']" in result.detail


def test_latency_gate_rejects_a_candidate_over_the_bound(good: model.TabularModel) -> None:
    over = gates.latency_gate(config.LatencyGateSettings(max_p95_ms=1e-6, repeats=5), evaluation(good))
    assert not over.passed and over.measured is not None and over.measured > 1e-6
    assert "wall_time on cpu" in over.detail
    under = gates.latency_gate(config.LatencyGateSettings(max_p95_ms=60_000, repeats=5), evaluation(good))
    assert under.passed and under.bound == 60_000


def test_memory_gate_rejects_a_model_over_the_bound(good: model.TabularModel) -> None:
    def load_big() -> model.Predictor:
        # ~4.2M parameters (about 16 MiB of float32) allocated fresh on every load.
        network = model.build_network(good.preprocessor.width, (2048, 2048), 2)
        return dataclasses.replace(good, network=network, hidden_sizes=(2048, 2048))

    big = dataclasses.replace(evaluation(good), load_candidate=load_big)
    over = gates.memory_gate(config.MemoryGateSettings(max_peak_mb=4.0), 256, big)
    assert not over.passed and over.measured is not None and over.measured > 4.0
    assert over.bound == 4.0 and "MiB" in over.detail
    assert gates.memory_gate(config.MemoryGateSettings(), 256, evaluation(good)).passed


def test_leakage_gate_catches_held_out_requests_in_training(good: model.TabularModel) -> None:
    holdout = samples.binary(100, seed=2, id_prefix="h")
    train = dataset.concat([samples.binary(300, seed=1), holdout.take(np.arange(5))])
    result = by_name(gates.leakage_gates(config.LeakageGateSettings(), train, holdout))["leakage:request_ids"]
    assert not result.passed and result.measured == 5.0 and result.bound == 0.0
    assert "h2-0" in result.detail


def test_leakage_gate_catches_a_feature_that_copies_the_label() -> None:
    base = samples.binary(200)
    exact = dict(base.features, label_copy=base.labels.copy())
    leaky = dataclasses.replace(base, features=exact)
    copies = gates.label_copies(leaky, 0.999)
    assert copies == [("label_copy", 1.0)]
    text_copy = dataclasses.replace(
        base,
        features=dict(
            base.features, outcome=np.array(["yes" if y else "no" for y in base.labels], dtype=object)
        ),
        labels=np.array(["yes" if y else "no" for y in base.labels], dtype=object),
    )
    assert gates.label_copies(text_copy, 0.999) == [("outcome", 1.0)]


def test_leakage_gate_catches_a_near_copy_by_correlation() -> None:
    data = samples.regression(300)
    noise = np.random.default_rng(1).normal(scale=1e-3, size=300)
    near = dataclasses.replace(data, features=dict(data.features, shadow=data.labels + noise))
    found = dict(gates.label_copies(near, 0.999))
    assert set(found) == {"shadow"} and found["shadow"] > 0.999
    result = by_name(gates.leakage_gates(config.LeakageGateSettings(), near, samples.regression(50, seed=4)))
    assert not result["leakage:label_copy"].passed and "shadow" in result["leakage:label_copy"].detail
    assert gates.label_copies(data, 0.999) == []


def test_memory_gate_counts_the_models_tensors_when_rss_does_not_grow(
    good: model.TabularModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-running process reuses memory it freed earlier: RSS may not move while a model loads
    (this failed a full test run once). The model's own tensors are a floor the gate still sees."""
    monkeypatch.setattr(benchmark, "_status_kib", lambda field: 100_000.0)  # RSS flat: no growth seen

    def load_big() -> model.Predictor:
        network = model.build_network(good.preprocessor.width, (2048, 2048), 2)
        return dataclasses.replace(good, network=network, hidden_sizes=(2048, 2048))

    big = dataclasses.replace(evaluation(good), load_candidate=load_big)
    over = gates.memory_gate(config.MemoryGateSettings(max_peak_mb=4.0), 256, big)
    assert not over.passed and over.measured is not None and over.measured > 15.0
    assert "model_tensors" in over.detail
