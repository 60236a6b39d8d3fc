"""The built-in trainer: deterministic, learns each task, and its model directory is self-contained."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from actions.retrain import config, dataset, metrics, model, trainer
from tests.support.retrain import samples


def weights(fitted: model.TabularModel) -> list[torch.Tensor]:
    return [tensor.detach().cpu().clone() for tensor in fitted.network.state_dict().values()]


def test_same_seed_gives_identical_weights_and_another_seed_does_not() -> None:
    data = samples.binary(200)
    first = trainer.train(data, samples.FAST_TRAINER)
    second = trainer.train(data, samples.FAST_TRAINER)
    other = trainer.train(data, samples.FAST_TRAINER.model_copy(update={"seed": 8}))
    assert all(torch.equal(a, b) for a, b in zip(weights(first.model), weights(second.model), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights(first.model), weights(other.model), strict=True))


def test_training_leaves_the_callers_rng_and_threads_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    trainer.train(samples.binary(100), samples.FAST_TRAINER.model_copy(update={"cpu_threads": 1}))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_binary_candidate_beats_the_weaker_serving_model() -> None:
    train, held = samples.binary(400, seed=1), samples.binary(200, seed=2)
    fitted = trainer.train(train, samples.FAST_TRAINER).model
    assert fitted.task is model.Task.BINARY and fitted.classes == ("0", "1") and fitted.positive_class == "1"
    labels = metrics.keys(held.labels)
    candidate_f1 = metrics.f1_binary(labels, metrics.keys(fitted.predict(held.features)), "1")
    assert held.served_predictions is not None
    served_f1 = metrics.f1_binary(labels, metrics.keys(held.served_predictions), "1")
    assert candidate_f1 > served_f1 + 0.05


def test_regression_beats_predicting_the_mean() -> None:
    train, held = samples.regression(300, seed=1), samples.regression(100, seed=2)
    fitted = trainer.train(train, samples.FAST_TRAINER.model_copy(update={"epochs": 40})).model
    assert fitted.task is model.Task.REGRESSION
    error = metrics.rmse(held.labels, fitted.predict(held.features))
    assert error < 0.5 * float(np.std(held.labels))


def test_string_labels_train_a_multiclass_model() -> None:
    train, held = samples.multiclass(300, seed=1), samples.multiclass(100, seed=2)
    fitted = trainer.train(train, samples.FAST_TRAINER.model_copy(update={"epochs": 40})).model
    assert fitted.task is model.Task.MULTICLASS and fitted.classes == ("high", "low", "mid")
    assert metrics.accuracy(metrics.keys(held.labels), metrics.keys(fitted.predict(held.features))) > 0.8


def test_saved_directory_reproduces_predictions_with_its_preprocessing(tmp_path: pathlib.Path) -> None:
    data = samples.binary(200)
    fitted = trainer.train(data, samples.FAST_TRAINER).model
    fitted.save(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / model.METADATA_FILE).read_text())
    assert [f["name"] for f in stored["preprocessing"]["numeric"]] == ["x1", "x2"]
    assert sorted(stored["preprocessing"]["categorical"][0]["categories"]) == ["a", "b", "c"]
    loaded = model.TabularModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(data.features), fitted.predict(data.features))
    scores, loaded_scores = fitted.scores(data.features), loaded.scores(data.features)
    assert scores is not None and loaded_scores is not None
    np.testing.assert_allclose(loaded_scores, scores, rtol=1e-6)


def test_unseen_categories_and_missing_values_do_not_crash() -> None:
    fitted = trainer.train(samples.binary(100), samples.FAST_TRAINER).model
    odd = {
        "x1": np.array([np.nan, 0.5]),
        "x2": np.array([0.1, np.nan]),
        "colour": np.array(["never-seen", None], dtype=object),
    }
    assert list(fitted.predict(odd)) in (["0", "0"], ["0", "1"], ["1", "0"], ["1", "1"])


def test_missing_feature_is_named() -> None:
    fitted = trainer.train(samples.binary(100), samples.FAST_TRAINER).model
    with pytest.raises(model.ModelError, match=r"features \['colour'\] are missing"):
        fitted.predict({"x1": np.zeros(2), "x2": np.zeros(2)})


def test_warm_start_continues_from_the_serving_weights() -> None:
    serving = trainer.train(samples.binary(300, seed=1), samples.FAST_TRAINER).model
    new_data = samples.binary(100, seed=5)
    tiny_steps = samples.FAST_TRAINER.model_copy(update={"learning_rate": 1e-6, "incremental_epochs": 1})
    warm = trainer.train(new_data, tiny_steps, warm_start=serving)
    cold = trainer.train(new_data, tiny_steps)
    assert warm.warm_started and warm.epochs == 1
    assert warm.model.preprocessor == serving.preprocessor
    warm_gap = sum(
        float((a - b).abs().max()) for a, b in zip(weights(warm.model), weights(serving), strict=True)
    )
    cold_gap = sum(
        float((a - b).abs().max()) for a, b in zip(weights(cold.model), weights(serving), strict=True)
    )
    assert 0.0 < warm_gap < 1e-3 < cold_gap
    # The serving model itself is untouched.
    assert torch.equal(
        weights(serving)[0],
        weights(trainer.train(samples.binary(300, seed=1), samples.FAST_TRAINER).model)[0],
    )


def test_warm_start_refuses_labels_the_serving_model_does_not_know() -> None:
    serving = trainer.train(samples.binary(100), samples.FAST_TRAINER).model
    relabelled = dataset.TrainingSet(
        features=samples.binary(100).features,
        labels=np.full(100, 2.0),
        request_ids=samples.binary(100).request_ids,
        timestamps=samples.binary(100).timestamps,
    )
    with pytest.raises(trainer.TrainingError, match="cannot add classes"):
        trainer.train(relabelled, samples.FAST_TRAINER, warm_start=serving)


def test_single_class_is_refused() -> None:
    data = samples.binary(50)
    one_class = dataset.TrainingSet(data.features, np.ones(50), data.request_ids, data.timestamps)
    with pytest.raises(trainer.TrainingError, match="at least two classes"):
        trainer.train(one_class, samples.FAST_TRAINER.model_copy(update={"task": "binary"}))


def test_command_trains_from_parquet_into_an_output_dir(tmp_path: pathlib.Path) -> None:
    data = samples.binary(120)
    data.to_parquet(tmp_path / "train.parquet")
    (tmp_path / "trainer.json").write_text(samples.FAST_TRAINER.model_dump_json())
    code = trainer.main(
        ["--train", str(tmp_path / "train.parquet"), "--output", str(tmp_path / "out"),
         "--settings", str(tmp_path / "trainer.json")]
    )  # fmt: skip
    assert code == 0 and model.is_model_dir(tmp_path / "out")
    expected = trainer.train(data, samples.FAST_TRAINER).model
    np.testing.assert_array_equal(
        model.TabularModel.load(tmp_path / "out").predict(data.features), expected.predict(data.features)
    )


def test_command_reports_bad_settings(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples.binary(20).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "bad.json").write_text(json.dumps({"epochs": 0}))
    code = trainer.main(
        [
            "--train",
            str(tmp_path / "train.parquet"),
            "--output",
            str(tmp_path / "o"),
            "--settings",
            str(tmp_path / "bad.json"),
        ]
    )
    assert code == 2 and "epochs" in capsys.readouterr().err


def test_cuda_choice_without_a_device_is_explained() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the no-device message cannot be produced here")
    with pytest.raises(trainer.TrainingError, match="torch sees no CUDA device"):
        trainer.train(samples.binary(20), config.TrainerSettings(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training_is_deterministic_and_saves_cpu_weights(tmp_path: pathlib.Path) -> None:
    settings = samples.FAST_TRAINER.model_copy(update={"device": "cuda"})
    first = trainer.train(samples.binary(200), settings)
    second = trainer.train(samples.binary(200), settings)
    assert first.device.startswith("cuda")
    assert all(torch.equal(a, b) for a, b in zip(weights(first.model), weights(second.model), strict=True))
    first.model.save(tmp_path / "m")
    assert model.TabularModel.load(tmp_path / "m").device().type == "cpu"
