"""Gates a retrained candidate must pass before anyone may deploy it.

Each gate returns ``GateResult(name, passed, measured, bound, detail)``; any failure rejects the
candidate and the serving model stays. All gates compare on the SAME held-out window, which the
candidate never trained on. The baseline is the serving model: its logged predictions for the
held-out requests (what it actually answered), or a loaded baseline model when one is given.

- performance: candidate metric no worse than baseline's by more than ``max_relative_drop``.
- slices: every value of every configured segment attribute is within ``max_gap_to_overall`` of
  the candidate's overall metric and within ``max_relative_drop`` of the baseline's slice metric.
- latency: p95 of batch inference under ``max_p95_ms``.
- memory: peak memory of loading and predicting under ``max_peak_mb``.
- leakage: no held-out request id in the training rows; no feature that copies the label.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from actions.retrain import benchmark, config, dataset, metrics, model


@dataclasses.dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    measured: float | None
    bound: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateResult:
        measured, bound = data.get("measured"), data.get("bound")
        return cls(
            name=str(data["name"]),
            passed=bool(data["passed"]),
            measured=None if measured is None else float(measured),
            bound=None if bound is None else float(bound),
            detail=str(data.get("detail", "")),
        )

    def reason(self) -> str:
        return f"{self.name}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What the gates judge: a candidate, the data it trained on, and the held-out window."""

    candidate: model.Predictor
    load_candidate: Callable[[], model.Predictor]  # a fresh copy, for the memory measurement
    train: dataset.TrainingSet
    holdout: dataset.TrainingSet
    task: model.Task
    positive_class: str | None
    baseline: model.Predictor | None = None
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))


def evaluate(settings: config.GateSettings, evaluation: Evaluation) -> list[GateResult]:
    """Every enabled gate, in a fixed order; the candidate passes if every result passed."""
    results: list[GateResult] = []
    if settings.leakage.enabled:
        results += leakage_gates(settings.leakage, evaluation.train, evaluation.holdout)
    if settings.performance.enabled or settings.slices.enabled:
        metric = settings.performance.metric
        scored = _Scored.of(evaluation, None if metric is None else metrics.Metric(metric))
        if settings.performance.enabled:
            results.append(performance_gate(settings.performance, scored))
        if settings.slices.enabled:
            results += slice_gates(settings.slices, scored, evaluation.holdout)
    if settings.latency.enabled:
        results.append(latency_gate(settings.latency, evaluation))
    if settings.memory.enabled:
        results.append(memory_gate(settings.memory, settings.latency.batch_size, evaluation))
    return results


def failures(results: list[GateResult]) -> list[GateResult]:
    return [result for result in results if not result.passed]


# -- performance and slices -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Scored:
    """Candidate and baseline answers on the held-out window, computed once for every gate."""

    metric: metrics.Metric
    positive: str | None
    labels: dataset.Column
    candidate: dataset.Column
    candidate_scores: np.ndarray | None
    baseline: dataset.Column | None
    baseline_scores: np.ndarray | None
    baseline_source: str

    @classmethod
    def of(cls, evaluation: Evaluation, configured: metrics.Metric | None) -> _Scored:
        holdout = evaluation.holdout
        candidate_scores = evaluation.candidate.scores(holdout.features)
        baseline: dataset.Column | None
        if evaluation.baseline is not None:
            baseline = evaluation.baseline.predict(holdout.features)
            baseline_scores = evaluation.baseline.scores(holdout.features)
            source = "baseline model"
        else:
            baseline, baseline_scores, source = _logged_baseline(holdout)
        metric = configured or _default_metric(evaluation.task, candidate_scores, baseline_scores, baseline)
        return cls(
            metric=metric,
            positive=evaluation.positive_class if evaluation.task is model.Task.BINARY else None,
            labels=holdout.labels,
            candidate=evaluation.candidate.predict(holdout.features),
            candidate_scores=candidate_scores,
            baseline=baseline,
            baseline_scores=baseline_scores,
            baseline_source=source,
        )

    def value(self, rows: np.ndarray | None = None, *, baseline: bool = False) -> float:
        predictions = self.baseline if baseline else self.candidate
        scores = self.baseline_scores if baseline else self.candidate_scores
        if predictions is None:
            return math.nan
        if rows is None:
            return metrics.compute(self.metric, self.labels, predictions, scores, positive=self.positive)
        return metrics.compute(
            self.metric,
            self.labels[rows],
            predictions[rows],
            None if scores is None else scores[rows],
            positive=self.positive,
        )

    def bound_from(self, baseline_value: float, relative_drop: float) -> float:
        if self.metric.higher_is_better:
            return baseline_value * (1.0 - relative_drop)
        return baseline_value * (1.0 + relative_drop)

    def within(self, measured: float, bound: float) -> bool:
        if math.isnan(measured):
            return False
        return measured >= bound if self.metric.higher_is_better else measured <= bound


def _logged_baseline(holdout: dataset.TrainingSet) -> tuple[dataset.Column | None, np.ndarray | None, str]:
    served = holdout.served_predictions
    if served is None or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in served):
        return None, None, "none"
    scores = holdout.served_scores
    if scores is not None and not np.all(np.isfinite(scores)):
        scores = None
    return served, scores, "logged predictions"


def _default_metric(
    task: model.Task,
    candidate_scores: np.ndarray | None,
    baseline_scores: np.ndarray | None,
    baseline: dataset.Column | None,
) -> metrics.Metric:
    if task is model.Task.REGRESSION:
        return metrics.Metric.RMSE
    if task is model.Task.MULTICLASS:
        return metrics.Metric.F1
    # AUC only when both sides have scores; otherwise compare like with like.
    both_scored = candidate_scores is not None and (baseline is None or baseline_scores is not None)
    return metrics.Metric.AUC if both_scored else metrics.Metric.F1


def performance_gate(settings: config.PerformanceGateSettings, scored: _Scored) -> GateResult:
    name = f"performance:{scored.metric.value}"
    rows = len(scored.labels)
    candidate = scored.value()
    if rows < settings.min_holdout_rows:
        return GateResult(
            name,
            False,
            float(rows),
            float(settings.min_holdout_rows),
            f"held-out window has {rows} rows, fewer than min_holdout_rows={settings.min_holdout_rows}: "
            "not enough to judge; wait for more labels or lower the bound",
        )
    if scored.baseline is None:
        if settings.require_baseline:
            return GateResult(
                name,
                False,
                candidate,
                None,
                "no baseline: the held-out rows carry no served predictions and no baseline model was "
                "loaded; set retrain.gates.performance.require_baseline=false to judge the candidate alone",
            )
        return GateResult(
            name, not math.isnan(candidate), candidate, None, f"candidate {candidate:.4f}, no baseline"
        )
    baseline = scored.value(baseline=True)
    if math.isnan(baseline):
        return GateResult(
            name, False, candidate, None, f"baseline {scored.metric.value} is undefined on this window"
        )
    bound = scored.bound_from(baseline, settings.max_relative_drop)
    passed = scored.within(candidate, bound)
    relation = ">=" if scored.metric.higher_is_better else "<="
    return GateResult(
        name,
        passed,
        candidate,
        bound,
        f"candidate {candidate:.4f} vs baseline {baseline:.4f} ({scored.baseline_source}) on {rows} held-out "
        f"rows; needs {relation} {bound:.4f}",
    )


def slice_gates(
    settings: config.SliceGateSettings, scored: _Scored, holdout: dataset.TrainingSet
) -> list[GateResult]:
    results: list[GateResult] = []
    overall = scored.value()
    for attribute in settings.segments:
        values = holdout.segments.get(attribute)
        if values is None:
            results.append(
                GateResult(
                    f"slice:{attribute}",
                    False,
                    None,
                    None,
                    f"segment attribute {attribute!r} is absent from the held-out rows "
                    f"(present: {sorted(holdout.segments)}); fix retrain.gates.slices.segments",
                )
            )
            continue
        for value in sorted({str(v) for v in values}):
            rows = np.flatnonzero(values == value)
            if len(rows) < settings.min_rows:
                continue
            results.append(_slice_result(settings, scored, f"slice:{attribute}={value}", rows, overall))
    return results


def _slice_result(
    settings: config.SliceGateSettings, scored: _Scored, name: str, rows: np.ndarray, overall: float
) -> GateResult:
    measured = scored.value(rows)
    gap = settings.max_gap_to_overall
    overall_bound = overall - gap if scored.metric.higher_is_better else overall + gap
    bounds = [overall_bound]
    detail = f"{scored.metric.value} {measured:.4f} on {len(rows)} rows; overall {overall:.4f}"
    if scored.baseline is not None:
        baseline = scored.value(rows, baseline=True)
        if not math.isnan(baseline):
            bounds.append(scored.bound_from(baseline, settings.max_relative_drop))
            detail += f", baseline on this slice {baseline:.4f}"
    # The binding bound is the stricter of the two.
    bound = max(bounds) if scored.metric.higher_is_better else min(bounds)
    passed = scored.within(measured, bound)
    relation = ">=" if scored.metric.higher_is_better else "<="
    return GateResult(name, passed, measured, bound, f"{detail}; needs {relation} {bound:.4f}")


# -- latency and memory -----------------------------------------------------------------------------


def latency_gate(settings: config.LatencyGateSettings, evaluation: Evaluation) -> GateResult:
    report = benchmark.measure_latency(
        evaluation.candidate,
        evaluation.holdout.features,
        batch_size=settings.batch_size,
        repeats=settings.repeats,
        warmup=settings.warmup,
        device=evaluation.device,
    )
    return GateResult(
        "latency",
        report.p95_ms < settings.max_p95_ms,
        report.p95_ms,
        settings.max_p95_ms,
        f"p95 {report.p95_ms:.2f} ms (p50 {report.p50_ms:.2f}) per batch of {report.batch_size} rows over "
        f"{report.repeats} runs ({report.method} on {evaluation.device.type}); "
        f"needs < {settings.max_p95_ms} ms",
    )


def memory_gate(settings: config.MemoryGateSettings, batch_size: int, evaluation: Evaluation) -> GateResult:
    report = benchmark.measure_peak_memory(
        evaluation.load_candidate,
        evaluation.holdout.features,
        batch_size=batch_size,
        device=evaluation.device,
    )
    return GateResult(
        "memory",
        report.peak_mb < settings.max_peak_mb,
        report.peak_mb,
        settings.max_peak_mb,
        f"peak {report.peak_mb:.1f} MiB to load and predict {batch_size} rows ({report.method}); "
        f"needs < {settings.max_peak_mb} MiB",
    )


# -- leakage ----------------------------------------------------------------------------------------


def leakage_gates(
    settings: config.LeakageGateSettings, train: dataset.TrainingSet, holdout: dataset.TrainingSet
) -> list[GateResult]:
    overlap = sorted(set(train.request_ids.tolist()) & set(holdout.request_ids.tolist()))
    shown = ", ".join(str(i) for i in overlap[:5]) + (" ..." if len(overlap) > 5 else "")
    results = [
        GateResult(
            "leakage:request_ids",
            not overlap,
            float(len(overlap)),
            0.0,
            f"{len(overlap)} held-out request id(s) also in the training rows ({shown}): the held-out score "
            "would be inflated; check the reference file for recent requests"
            if overlap
            else "no held-out request id is in the training rows",
        )
    ]
    copies = label_copies(train, settings.max_abs_correlation)
    worst = max((strength for _, strength in copies), default=0.0)
    results.append(
        GateResult(
            "leakage:label_copy",
            not copies,
            worst,
            settings.max_abs_correlation,
            "features that copy the label: "
            + ", ".join(f"{name} ({strength:.4f})" for name, strength in copies)
            + "; drop them from the features (they will not exist at prediction time)"
            if copies
            else "no feature equals or nearly equals the label",
        )
    )
    return results


def label_copies(rows: dataset.TrainingSet, max_abs_correlation: float) -> list[tuple[str, float]]:
    """(feature, strength) for each feature equal to the label, or correlated beyond the bound.

    Strength is 1.0 for exact equality, else |Pearson r| with the label (numeric labels, or a
    binary label read as 0/1).
    """
    label_keys = [model.label_key(v) for v in rows.labels]
    numeric_label = _numeric_label(rows.labels, label_keys)
    found: list[tuple[str, float]] = []
    for name in rows.feature_names:
        column = rows.features[name]
        if [model.label_key(v) for v in column] == label_keys:
            found.append((name, 1.0))
            continue
        if column.dtype == object or numeric_label is None:
            continue
        finite = np.isfinite(column) & np.isfinite(numeric_label)
        if finite.sum() < 3 or np.std(column[finite]) == 0 or np.std(numeric_label[finite]) == 0:
            continue
        strength = abs(float(np.corrcoef(column[finite], numeric_label[finite])[0, 1]))
        if strength > max_abs_correlation:
            found.append((name, strength))
    return found


def _numeric_label(labels: dataset.Column, keys: list[str]) -> np.ndarray | None:
    if labels.dtype != object:
        return labels.astype(np.float64)
    classes = sorted(set(keys))
    if len(classes) == 2:
        return np.array([float(k == classes[1]) for k in keys])
    return None
