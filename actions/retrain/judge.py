"""The gates, run in a process of their own: ``python -m actions.retrain.judge <job dir>``.

A candidate is whatever the training step wrote: a user's MLflow pyfunc model runs its own code
when it loads, and a model can take more memory than the agent's container has. So the agent
never loads one: it writes what the gates need into the job directory, runs this module with a
timeout, and reads the verdict back.

    <job dir>/judge.json      RetrainSettings (gates, trainer device and threads) as JSON
    <job dir>/baseline/       the serving model to compare against, when there is one
    <job dir>/gates.json      written here: [GateResult.to_json(), ...] and the task judged
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Sequence

from actions.retrain import config, dataset, gates, job, model, trainer

SETTINGS_FILE = "judge.json"
BASELINE_DIR = "baseline"
VERDICT_FILE = "gates.json"
# What a failed judge's message keeps of its error output.
STDERR_TAIL_CHARS = 2000


class JudgeError(RuntimeError):
    """The judging process failed, timed out, or left no verdict."""


def judge_out_of_process(
    spec: job.JobSpec, settings: config.RetrainSettings, baseline: model.TabularModel | None, timeout_s: float
) -> list[gates.GateResult]:
    """Stage what the gates need, run them in a child process, and read their results."""
    (spec.work_dir / SETTINGS_FILE).write_text(settings.model_dump_json(), encoding="utf-8")
    if baseline is not None:
        baseline.save(spec.work_dir / BASELINE_DIR)
    verdict = spec.work_dir / VERDICT_FILE
    verdict.unlink(missing_ok=True)
    try:
        finished = subprocess.run(  # noqa: S603 - fixed argv: this interpreter, this module, a path
            [sys.executable, "-m", "actions.retrain.judge", str(spec.work_dir)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise JudgeError(
            f"the gates did not finish within {timeout_s:.0f} s (retrain.judge_timeout_s)"
        ) from exc
    if finished.returncode != 0 or not verdict.is_file():
        tail = (finished.stderr or "").strip()[-STDERR_TAIL_CHARS:]
        raise JudgeError(f"the judging process exited with {finished.returncode}: {tail or 'no output'}")
    data = json.loads(verdict.read_text(encoding="utf-8"))
    return [gates.GateResult.from_json(item) for item in data["gates"]]


def judge(work_dir: pathlib.Path) -> list[gates.GateResult]:
    """In the child: load the candidate, the data and the baseline, and run every gate."""
    spec = job.JobSpec(work_dir.name, work_dir)
    settings = config.RetrainSettings.model_validate_json(
        (spec.work_dir / SETTINGS_FILE).read_text(encoding="utf-8")
    )
    device = trainer.resolve_device(settings.trainer.device)
    candidate = model.load_predictor(spec.output_dir, device=device)
    train = dataset.TrainingSet.from_parquet(spec.train_path)
    holdout = dataset.TrainingSet.from_parquet(spec.holdout_path)
    task, positive = task_of(candidate, train, settings.trainer)
    baseline_dir = spec.work_dir / BASELINE_DIR
    evaluation = gates.Evaluation(
        candidate=candidate,
        load_candidate=lambda: model.load_predictor(spec.output_dir, device=device),
        train=train,
        holdout=holdout,
        task=task,
        positive_class=positive,
        baseline=model.TabularModel.load(baseline_dir) if model.is_model_dir(baseline_dir) else None,
        device=device,
    )
    with trainer.cpu_threads(settings.trainer.cpu_threads):
        return gates.evaluate(settings.gates, evaluation)


def task_of(
    candidate: model.Predictor, train: dataset.TrainingSet, settings: config.TrainerSettings
) -> tuple[model.Task, str | None]:
    """The task the candidate solves (its own, for a built-in model; inferred from the labels else)."""
    if isinstance(candidate, model.TabularModel):
        return candidate.task, candidate.positive_class
    task = trainer.infer_task(train.labels, settings.task)
    classes = sorted({dataset.label_key(v) for v in train.labels})
    positive = settings.positive_class or ("1" if "1" in classes else classes[-1])
    return task, positive if task is model.Task.BINARY else None


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m actions.retrain.judge <job dir>", file=sys.stderr)
        return 2
    work_dir = pathlib.Path(argv[0])
    results = judge(work_dir)
    verdict = {"gates": [result.to_json() for result in results]}
    (work_dir / VERDICT_FILE).write_text(json.dumps(verdict), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
