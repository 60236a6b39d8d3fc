"""TrainingSet: rows to columns, Parquet round trip, fingerprints, clear errors on bad data."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from actions.retrain import dataset
from tests.support.retrain import samples


def test_rows_become_typed_columns() -> None:
    rows = [
        dataset.TrainingRow(
            "a", 10.0, {"x": 1.5, "city": "paris", "flag": True}, 1.0, {"region": "eu"}, 0.0, 0.2
        ),
        dataset.TrainingRow("b", 11.0, {"x": None, "city": None}, 0.0, None, 1.0, None),
    ]
    built = dataset.from_rows(rows)
    assert built.size == 2
    assert built.features["x"].dtype == np.float64 and math.isnan(built.features["x"][1])
    assert list(built.features["city"]) == ["paris", None]
    assert list(built.features["flag"][:1]) == [1.0] and math.isnan(built.features["flag"][1])
    assert list(built.segments["region"]) == ["eu", ""]
    assert built.served_scores is not None and math.isnan(built.served_scores[1])


def test_parquet_round_trip_keeps_every_value(tmp_path: pathlib.Path) -> None:
    original = samples.binary(50)
    original.to_parquet(tmp_path / "data.parquet")
    restored = dataset.TrainingSet.from_parquet(tmp_path / "data.parquet")
    assert restored.fingerprint() == original.fingerprint()
    assert restored.served_predictions is not None and original.served_predictions is not None
    np.testing.assert_array_equal(restored.served_predictions, original.served_predictions)
    assert list(restored.segments["region"]) == list(original.segments["region"])


def test_fingerprint_moves_with_any_id_or_value() -> None:
    base = samples.binary(40)
    changed_value = dict(base.features)
    changed_value["x1"] = base.features["x1"].copy()
    changed_value["x1"][7] += 1e-9
    changed_id = base.request_ids.copy()
    changed_id[3] = "other"
    assert base.fingerprint() == samples.binary(40).fingerprint()
    assert (
        base.fingerprint()
        != dataset.TrainingSet(
            changed_value, base.labels, base.request_ids, base.timestamps, base.segments
        ).fingerprint()
    )
    assert (
        base.fingerprint()
        != dataset.TrainingSet(
            base.features, base.labels, changed_id, base.timestamps, base.segments
        ).fingerprint()
    )


def test_misaligned_columns_name_the_field() -> None:
    with pytest.raises(dataset.DatasetError, match=r"features\['x'\] has 2 rows but labels has 3"):
        dataset.TrainingSet(
            features={"x": np.zeros(2)},
            labels=np.zeros(3),
            request_ids=np.array(["a", "b", "c"], dtype=object),
            timestamps=np.zeros(3),
        )


def test_unlabelled_rows_are_refused_with_the_reason() -> None:
    with pytest.raises(dataset.DatasetError, match="label is missing in 1 row"):
        dataset.from_columns({"request_id": ["a", "b"], "label": [1.0, None], "feature.x": [1.0, 2.0]})


def test_file_without_features_says_how_to_name_them() -> None:
    with pytest.raises(dataset.DatasetError, match=r"name them feature\.<feature name>"):
        dataset.from_columns({"request_id": ["a"], "label": [1.0], "x": [1.0]})


def test_concat_fills_columns_a_part_lacks() -> None:
    first = samples.binary(10)
    second = dataset.TrainingSet(
        features={"x1": np.ones(3)},
        labels=np.ones(3),
        request_ids=np.array(["p", "q", "s"], dtype=object),
        timestamps=np.zeros(3),
    )
    joined = dataset.concat([first, second])
    assert joined.size == 13
    assert list(joined.features["colour"][10:]) == [None, None, None]
    assert np.isnan(joined.features["x2"][10:]).all()
    assert (
        joined.served_predictions is not None and np.isnan(joined.served_predictions[10:].astype(float)).all()
    )
