"""The data-quality checks on windows built from records, as the agent builds them.

Each injected break is found by its own check and by no other; a clean stream fails none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from agent.ingest import records
from agent.pipeline import reference
from detectors import base, quality, registry, suite
from detectors import window as window_mod

Features = dict[str, records.FeatureValue]
COLOURS = ("red", "green", "blue", "black", "white")


def clean_features(rng: np.random.Generator) -> Features:
    return {
        "amount": round(float(rng.normal(50.0, 10.0)), 3),
        "age": int(rng.integers(18, 90)),
        "colour": COLOURS[int(rng.integers(0, len(COLOURS)))] if rng.random() > 0.02 else None,
    }


def make_records(
    n: int, seed: int, start: int = 0, breaks: Callable[[int, Features], Features] | None = None
) -> list[records.PredictionRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        features = clean_features(rng)
        if breaks is not None:
            features = breaks(i, features)
        out.append(
            records.PredictionRecord(
                request_id=f"req-{i}",
                timestamp=1_700_000_000.0 + i,
                model_name="churn",
                model_version="1",
                features=features,
                prediction=0.5,
            )
        )
    return out


REFERENCE = make_records(3000, seed=1)
SCHEMA = reference.FeatureSchema.infer(REFERENCE)


def failed_checks(window_records: list[records.PredictionRecord]) -> set[tuple[str, str | None, str]]:
    """(detector, feature, statistic) of every failed quality check on one window."""
    window = reference.to_window(window_records, SCHEMA)
    reference_window = reference.to_window(REFERENCE, SCHEMA)
    detectors = registry.default_registry()
    failed = set()
    for name in quality.NAMES:
        detector = detectors.create(name, {})
        assert isinstance(detector, base.NeedsReference)
        detector.set_reference(reference_window)
        result = detector.update(window)
        assert result.family is base.DetectorFamily.QUALITY
        failed |= {(d.detector, d.feature, d.statistic) for d in result.details if d.drifted}
    return failed


def test_a_clean_stream_fails_no_check() -> None:
    for seed in range(2, 12):
        assert failed_checks(make_records(1000, seed=seed, start=10_000 * seed)) == set()


def null_spike(i: int, features: Features) -> Features:
    return {**features, "amount": None} if i % 4 == 0 else features


def renamed(i: int, features: Features) -> Features:
    out = dict(features)
    out["amount_usd"] = out.pop("amount")
    return out


def new_field(i: int, features: Features) -> Features:
    return {**features, "channel": "web"}


def unseen(i: int, features: Features) -> Features:
    return {**features, "colour": "purple"} if i % 5 == 0 else features


def unit_change(i: int, features: Features) -> Features:
    amount = features["amount"]
    assert isinstance(amount, float)
    return {**features, "amount": amount * 1000}


def out_of_range_burst(i: int, features: Features) -> Features:
    return {**features, "age": -1} if i % 10 == 0 else features


def mistyped(i: int, features: Features) -> Features:
    return {**features, "age": "n/a"} if i % 10 == 0 else features


def frozen(i: int, features: Features) -> Features:
    return {**features, "amount": 50.0}  # a default filled in, inside the range


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (null_spike, {("missing_values", "amount", "null_share")}),
        (
            renamed,
            {("schema", "amount", "absent_share"), ("schema", None, "new_field_share")},
        ),
        (new_field, {("schema", None, "new_field_share")}),
        (unseen, {("unseen_categories", "colour", "unseen_share")}),
        (unit_change, {("out_of_range", "amount", "out_of_range_share")}),
        (out_of_range_burst, {("out_of_range", "age", "out_of_range_share")}),
        (mistyped, {("type_mismatch", "age", "mistyped_share")}),
        (frozen, {("frozen_features", "amount", "frozen")}),
    ],
    ids=["null_spike", "renamed", "new_field", "unseen", "unit_change", "out_of_range", "mistyped", "frozen"],
)
def test_each_break_is_found_by_its_check_alone(
    breaks: Callable[[int, Features], Features], expected: set[tuple[str, str | None, str]]
) -> None:
    assert failed_checks(make_records(1000, seed=7, start=50_000, breaks=breaks)) == expected


def test_duplicated_request_ids() -> None:
    window_records = make_records(1000, seed=8, start=60_000)
    duplicated = window_records[:900] + window_records[:100]
    assert failed_checks(duplicated) == {("duplicate_ids", None, "duplicate_share")}


def test_effect_sizes_say_how_much_of_the_window_is_broken() -> None:
    window = reference.to_window(make_records(1000, seed=9, start=70_000, breaks=null_spike), SCHEMA)
    detector = registry.default_registry().create("missing_values", {})
    assert isinstance(detector, base.NeedsReference)
    detector.set_reference(reference.to_window(REFERENCE, SCHEMA))
    by_feature = {d.feature: d for d in detector.update(window).details}
    amount = by_feature["amount"]
    assert amount.score == pytest.approx(0.25)
    assert amount.effect_size == pytest.approx(0.25)
    assert amount.p_value is not None and amount.p_value < 1e-12
    assert amount.extras["affected"] == 250
    assert by_feature["colour"].drifted is False


def old_age(i: int, features: Features) -> Features:
    return {**features, "age": 150} if i % 10 == 0 else features


@pytest.mark.parametrize(("config", "fails"), [({}, True), ({"bounds": {"age": [0, 200]}}, False)])
def test_configured_bounds_replace_the_reference_range(config: dict[str, Any], fails: bool) -> None:
    detector = registry.default_registry().create("out_of_range", config)
    assert isinstance(detector, base.NeedsReference)
    detector.set_reference(reference.to_window(REFERENCE, SCHEMA))
    window = reference.to_window(make_records(1000, seed=10, start=80_000, breaks=old_age), SCHEMA)
    age = next(d for d in detector.update(window).details if d.feature == "age")
    assert age.drifted is fails
    assert age.extras["high"] == (200 if config else pytest.approx(89 + 0.1 * 71))


def test_bounds_out_of_order_are_refused_with_the_fix() -> None:
    with pytest.raises(registry.DetectorConfigError, match=r"bounds.age: high \(1.0\) is below low"):
        registry.default_registry().create("out_of_range", {"bounds": {"age": [5, 1]}})


def test_too_few_records_is_no_verdict() -> None:
    detector = registry.default_registry().create("missing_values", {"min_samples": 50})
    assert isinstance(detector, base.NeedsReference)
    detector.set_reference(reference.to_window(REFERENCE, SCHEMA))
    with pytest.raises(base.CannotRun, match="fewer than min_samples=50"):
        detector.update(reference.to_window(make_records(10, seed=3), SCHEMA))


def test_to_window_counts_what_the_columns_cannot_show() -> None:
    rows: list[Any] = [
        {"amount": 1.0, "age": 30, "colour": "red"},
        {"amount": None, "age": "n/a", "colour": "red", "extra": 1},
        {"age": 31, "colour": None, "extra": 2},
    ]
    window_records = [
        records.PredictionRecord(
            request_id=f"r{i}", timestamp=0.0, model_name="m", model_version="1", features=f, prediction=1.0
        )
        for i, f in enumerate(rows)
    ]
    window = reference.to_window(window_records, SCHEMA)
    assert window.fields == window_mod.FieldCounts(
        absent={"amount": 1}, mistyped={"age": 1}, unknown={"extra": 2}
    )
    assert window.request_ids is not None and window.request_ids.tolist() == ["r0", "r1", "r2"]


def test_every_quality_check_is_on_by_default() -> None:
    assert suite.QUALITY_CHECKS == quality.NAMES
    assert set(quality.NAMES) <= set(suite.SuiteConfig().detectors)
