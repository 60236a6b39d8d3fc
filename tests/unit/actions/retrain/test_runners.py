"""In-process and subprocess runners on staged job directories (real training, real child process)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np

from actions.retrain import config, job, model, runners, trainer
from tests.support.retrain import samples


def staged(
    tmp_path: pathlib.Path, rows: int = 150, settings: config.TrainerSettings = samples.FAST_TRAINER
) -> job.JobSpec:
    spec = job.JobSpec(job.job_name("incident-42/retrain"), tmp_path / "job")
    job.stage(
        spec,
        samples.binary(rows),
        samples.binary(60, seed=2, id_prefix="h"),
        settings.model_dump_json(),
        None,
    )
    return spec


def test_job_names_are_dns_safe_and_distinct() -> None:
    first, second = job.job_name("Incident 42/retrain:A"), job.job_name("incident 42/retrain:a")
    assert first != second
    for name in (first, second, job.job_name("x" * 300), job.job_name("///")):
        assert len(name) <= 63 and name.startswith("retrain-")
        assert all((ch.isalnum() and ch.islower()) or ch.isdigit() or ch == "-" for ch in name)


def test_in_process_runner_trains_the_staged_job(tmp_path: pathlib.Path) -> None:
    spec = staged(tmp_path)
    runner = runners.InProcessRunner()
    assert runner.poll(spec).phase is runners.RunPhase.PENDING
    runner.submit(spec)
    assert runner.poll(spec).phase is runners.RunPhase.SUCCEEDED
    expected = trainer.train(samples.binary(150), samples.FAST_TRAINER).model
    features = samples.binary(20, seed=3).features
    np.testing.assert_array_equal(
        model.TabularModel.load(spec.output_dir).predict(features), expected.predict(features)
    )


def test_in_process_runner_records_why_training_failed(tmp_path: pathlib.Path) -> None:
    spec = staged(
        tmp_path,
        settings=samples.FAST_TRAINER.model_copy(update={"task": "multiclass", "positive_class": "zz"}),
    )
    spec.settings_path.write_text('{"epochs": "many"}')
    runner = runners.InProcessRunner()
    runner.submit(spec)
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED and "epochs" in status.message


def test_subprocess_runner_runs_the_built_in_trainer_command(tmp_path: pathlib.Path) -> None:
    spec = staged(tmp_path)
    runner = runners.SubprocessRunner(timeout_s=300)
    assert runner.argv(spec)[-2:] == ["--job-dir", str(spec.work_dir)]
    runner.submit(spec)
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.SUCCEEDED, status.message
    in_process = trainer.train(samples.binary(150), samples.FAST_TRAINER).model
    features = samples.binary(20, seed=3).features
    np.testing.assert_array_equal(
        model.TabularModel.load(spec.output_dir).predict(features), in_process.predict(features)
    )


# A user's entrypoint: gets the paths through placeholders and the environment, writes a model.
USER_SCRIPT = """
import os, pathlib, shutil, sys
train, output = sys.argv[1], sys.argv[2]
assert train == os.environ["DRIFT_AGENT_RETRAIN_TRAIN"] and pathlib.Path(train).is_file()
assert os.environ["DRIFT_AGENT_RETRAIN_WARM_START"] == ""
shutil.copytree(sys.argv[3], output)
"""


def test_subprocess_runner_substitutes_paths_for_a_user_command(tmp_path: pathlib.Path) -> None:
    prepared = tmp_path / "prepared"
    trainer.train(samples.binary(80), samples.FAST_TRAINER).model.save(prepared)
    spec = staged(tmp_path)
    runner = runners.SubprocessRunner(
        [sys.executable, "-c", USER_SCRIPT, "{train}", "{output}", str(prepared)]
    )
    runner.submit(spec)
    assert runner.poll(spec).phase is runners.RunPhase.SUCCEEDED
    assert (spec.output_dir / model.WEIGHTS_FILE).read_bytes() == (prepared / model.WEIGHTS_FILE).read_bytes()


def test_subprocess_runner_reports_exit_status_and_stderr(tmp_path: pathlib.Path) -> None:
    spec = staged(tmp_path)
    runner = runners.SubprocessRunner([sys.executable, "-c", "import sys; sys.exit('no GPU quota left')"])
    runner.submit(spec)
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED
    assert "exited with 1" in status.message and "no GPU quota left" in status.message


def test_subprocess_runner_fails_a_command_that_writes_no_model(tmp_path: pathlib.Path) -> None:
    spec = staged(tmp_path)
    runner = runners.SubprocessRunner([sys.executable, "-c", "pass"])
    runner.submit(spec)
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED and "wrote no model" in status.message


def test_subprocess_runner_times_out(tmp_path: pathlib.Path) -> None:
    spec = staged(tmp_path)
    # The child blocks reading a pipe of its own that nobody writes; the runner's timeout ends it.
    blocked = "import os; r, w = os.pipe(); os.read(r, 1)"
    runner = runners.SubprocessRunner([sys.executable, "-c", blocked], timeout_s=0.5)
    runner.submit(spec)
    status = runner.poll(spec)
    assert status.phase is runners.RunPhase.FAILED and "timed out after" in status.message


def test_missing_command_is_refused() -> None:
    try:
        runners.SubprocessRunner([])
    except ValueError as exc:
        assert "non-empty argv" in str(exc)
    else:
        raise AssertionError("an empty command was accepted")
