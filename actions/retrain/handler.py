"""RETRAIN: collect labelled traffic, train, track, gate; hand a passing candidate to the canary.

One call never waits for training that runs elsewhere. A first call with a new idempotency key
collects the rows from the ``provider`` (the agent's recent joined records), splits off the
held-out window, stages the job directory, opens an MLflow run tagged with the key, and submits
the job; while the job runs the answer is ``IN_PROGRESS`` and the caller calls again with the
same key. When the model is there, the gates judge it on the held-out window; every gate's
measured value and bound goes into the run and the outcome.

- All gates pass: the model is registered as a new version (no alias moves, nothing deployed),
  ``SUCCEEDED`` with ``candidate_version``: the agent hands that version to the canary.
- Any gate fails: nothing is registered, the serving model stays, ``FAILED`` with reason
  ``gates_failed`` and ``failed_gates`` (``"<gate>: <measured vs bound>"``) for the alert.

Idempotency: the run carries ``drift_agent.idempotency_key``; a finished run carries its outcome
(``drift_agent.outcome``), which a later call with the same key returns as is (``recorded``:
true), without training again. The new version carries the key too, so a crash between
registering and recording cannot register a second version.

Dry-run reads the provider and plans (strategy, rows) but stages, tracks and trains nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from actions import base
from actions.retrain import config, dataset, gates, job, model, runners, strategies, tracking, trainer
from actions.retrain import judge as judge_mod

LOG = logging.getLogger(__name__)

# How often a retrain waiting for labelled rows after the change looks again.
WAIT_POLL_S = 5.0

Provider = Callable[[], "Sequence[dataset.TrainingRow] | dataset.TrainingSet"]
ServingModelLoader = Callable[[], "model.TabularModel | None"]
OUTCOME_GATES_KEPT = 40  # gates recorded in the outcome tag (MLflow tag values are bounded)


class InvalidRequestError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class _Request:
    key: str
    trigger: str


class RetrainHandler(base.ActionHandler):
    """The RETRAIN action for one registered model (rules in the module docstring)."""

    kind = base.ActionKind.RETRAIN

    def __init__(
        self,
        settings: config.RetrainSettings,
        *,
        model_name: str,
        tracker: tracking.Tracker,
        runner: runners.Runner,
        provider: Provider,
        reference: dataset.TrainingSet | None = None,
        serving_model: ServingModelLoader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._model_name = model_name
        self._tracker = tracker
        self._runner = runner
        self._provider = provider
        self._reference = reference
        self._serving_model = serving_model or self._load_serving_model
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: config.RetrainSettings,
        *,
        model_name: str,
        provider: Provider,
        registry_tracking_uri: str | None = None,
        registered_model_name: str | None = None,
        api_client: Any = None,
    ) -> RetrainHandler:
        """The handler the agent builds: tracking from ``retrain`` or else the registry's settings.

        ``api_client`` (a ``kubernetes.client.ApiClient``) is needed for ``runner.kind=kubernetes``.
        """
        tracking_uri = settings.tracking_uri or registry_tracking_uri
        if not tracking_uri:
            raise ValueError(
                "retrain needs an MLflow server: set retrain.tracking_uri or registry.tracking_uri"
            )
        name = settings.registered_model_name or registered_model_name or model_name
        reference = (
            dataset.TrainingSet.from_parquet(settings.reference_path) if settings.reference_path else None
        )
        return cls(
            settings,
            model_name=model_name,
            tracker=tracking.Tracker(tracking_uri, settings.experiment_name, name),
            runner=runners.build_runner(settings.runner, api_client=api_client),
            provider=provider,
            reference=reference,
        )

    def handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        with self._lock:
            try:
                return self._handle(request, dry_run=dry_run)
            except InvalidRequestError as exc:
                return _outcome(base.OutcomeStatus.FAILED, "invalid_request", str(exc))
            except strategies.StrategyError as exc:
                return _outcome(base.OutcomeStatus.FAILED, "not_enough_data", str(exc))
            except (dataset.DatasetError, trainer.TrainingError) as exc:
                return _outcome(base.OutcomeStatus.FAILED, "unusable_data", str(exc))
            except tracking.TrackingError as exc:
                return _outcome(
                    base.OutcomeStatus.FAILED, "tracking_unavailable", str(exc), retryable=exc.retriable
                )
            except runners.RunnerError as exc:
                return _outcome(
                    base.OutcomeStatus.FAILED, "runner_unavailable", str(exc), retryable=exc.retriable
                )

    # -- first call --------------------------------------------------------------------------------

    def _handle(self, request: base.ActionRequest, *, dry_run: bool) -> base.ActionOutcome:
        parsed = self._parse(request)
        if not self._settings.enabled:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "disabled",
                "retrain.enabled is false: set it to true to let the agent retrain",
            )
        found = self._tracker.find_run(parsed.key)
        if found is not None:
            run_id, tags = found
            recorded = tags.get(tracking.TAG_OUTCOME)
            if recorded is not None:
                return _recorded(recorded)
            work_dir = tags.get(tracking.TAG_JOB)
            if work_dir is None:
                raise InvalidRequestError(
                    f"MLflow run {run_id} carries key {parsed.key!r} but no {tracking.TAG_JOB} tag: "
                    "it was not started by this handler; use a new idempotency key"
                )
            spec = job.JobSpec(pathlib.Path(work_dir).name, pathlib.Path(work_dir))
            if dry_run:
                return _outcome(
                    base.OutcomeStatus.SKIPPED,
                    "dry_run",
                    f"would continue retrain run {run_id}",
                    dry_run=True,
                )
            return self._advance(run_id, spec, tags)
        recent = self._collect()
        plan = strategies.plan(self._settings.strategy, recent, self._reference)
        summary = (
            f"strategy {plan.strategy.value}: {plan.train.size} training rows"
            f"{' (since the serving model errors rose)' if plan.changed_at is not None else ''}, "
            f"{plan.holdout.size} held out"
        )
        if dry_run:
            return _outcome(
                base.OutcomeStatus.SKIPPED,
                "dry_run",
                f"would retrain model {self._model_name} ({summary})",
                dry_run=True,
                strategy=plan.strategy.value,
                train_rows=plan.train.size,
                holdout_rows=plan.holdout.size,
            )
        return self._start(request, parsed, plan)

    def _waiting_for_rows_after_change(
        self, plan: strategies.Plan, request: base.ActionRequest
    ) -> base.ActionOutcome | None:
        """IN_PROGRESS while too few labelled rows follow the change (a model of the new relationship
        learnt from a few hundred rows loses to the one it replaces); None to train now."""
        strategy = self._settings.strategy
        if plan.changed_at is None or plan.train.size >= strategy.min_rows_after_change:
            return None
        since = request.params.get("since")
        now = self._clock()
        if not isinstance(since, int | float) or now - since >= strategy.change_wait_s:
            return None
        left = strategy.change_wait_s - (now - since)
        return _outcome(
            base.OutcomeStatus.IN_PROGRESS,
            "waiting_for_data",
            f"{plan.train.size} labelled rows since the serving model's errors rose, fewer than "
            f"retrain.strategy.min_rows_after_change={strategy.min_rows_after_change}: waiting for more "
            f"(at most {left:.0f} s, then it trains on what there is)",
            train_rows=plan.train.size,
            changed_at=plan.changed_at,
            **{base.RETRY_AT: now + min(WAIT_POLL_S, left)},
        )

    def _parse(self, request: base.ActionRequest) -> _Request:
        if request.kind is not base.ActionKind.RETRAIN:
            raise InvalidRequestError(f"kind must be retrain, got {request.kind.value}")
        if request.model_name != self._model_name:
            raise InvalidRequestError(
                f"model_name {request.model_name!r} is not the model this handler retrains "
                f"({self._model_name!r})"
            )
        key = request.idempotency_key
        if not key or "'" in key or "`" in key:
            raise InvalidRequestError(
                f"idempotency_key {key!r} must be non-empty without quotes or backticks: it is what prevents "
                "a second retrain for one incident"
            )
        trigger = str(request.params.get("trigger") or request.reason or "drift")
        return _Request(key, trigger)

    def _collect(self) -> dataset.TrainingSet:
        provided = self._provider()
        if isinstance(provided, dataset.TrainingSet):
            return provided
        return dataset.from_rows(provided)

    def _start(
        self, request: base.ActionRequest, parsed: _Request, plan: strategies.Plan
    ) -> base.ActionOutcome:
        waiting = self._waiting_for_rows_after_change(plan, request)
        if waiting is not None:
            return waiting
        warm_start = self._serving_model() if plan.warm_start else None
        if plan.warm_start and warm_start is None:
            raise trainer.TrainingError(
                f"strategy incremental needs the serving model (alias {self._settings.serving_alias!r}) "
                "in the "
                "built-in format to warm-start from; none was found: use strategy full or sliding"
            )
        spec = job.JobSpec(
            job.job_name(parsed.key), self._settings.runner.work_dir.resolve() / job.job_name(parsed.key)
        )
        trainer_settings = self._settings.trainer
        job.stage(spec, plan.train, plan.holdout, trainer_settings.model_dump_json(indent=2), warm_start)
        train_fp, holdout_fp = plan.train.fingerprint(), plan.holdout.fingerprint()
        tags = {
            tracking.TAG_INCIDENT: request.incident_id,
            tracking.TAG_TRIGGER: parsed.trigger,
            tracking.TAG_STRATEGY: plan.strategy.value,
            tracking.TAG_SEVERITY: request.severity,
            tracking.TAG_MODEL: self._model_name,
            tracking.TAG_SERVING_VERSION: request.model_version or "",
            tracking.TAG_TRAIN_FINGERPRINT: train_fp,
            tracking.TAG_HOLDOUT_FINGERPRINT: holdout_fp,
            tracking.TAG_DATA_FINGERPRINT: _combined_fingerprint(train_fp, holdout_fp),
            tracking.TAG_JOB: str(spec.work_dir),
        }
        params: dict[str, Any] = {
            "strategy": plan.strategy.value,
            "runner": self._runner.kind,
            "train_rows": plan.train.size,
            "holdout_rows": plan.holdout.size,
            "features": ",".join(plan.train.feature_names),
            "warm_start": plan.warm_start,
            # Event time the training rows start at: where the serving model's errors rose.
            **({"trained_since_change_at": plan.changed_at} if plan.changed_at is not None else {}),
            **{f"trainer.{name}": value for name, value in trainer_settings.model_dump(mode="json").items()},
        }
        run_id = self._tracker.start_run(parsed.key, tags, params)
        LOG.info("retrain %s: run %s, %s", parsed.key, run_id, spec.name)
        return self._advance(run_id, spec, {**tags, tracking.TAG_KEY: parsed.key})

    # -- every call --------------------------------------------------------------------------------

    def _advance(self, run_id: str, spec: job.JobSpec, tags: dict[str, str]) -> base.ActionOutcome:
        status = self._runner.poll(spec)
        if status.phase is runners.RunPhase.PENDING:
            self._runner.submit(spec)
            status = self._runner.poll(spec)
        if status.phase in (runners.RunPhase.PENDING, runners.RunPhase.RUNNING):
            return _outcome(
                base.OutcomeStatus.IN_PROGRESS,
                "training",
                f"training {spec.name}: {status.message}; call again with the same key",
                run_id=run_id,
                job=spec.name,
            )
        if status.phase is runners.RunPhase.FAILED:
            return self._finish(
                run_id,
                _outcome(
                    base.OutcomeStatus.FAILED,
                    "training_failed",
                    f"retraining model {self._model_name} failed; the serving model stays: {status.message}",
                    run_id=run_id,
                    job=spec.name,
                ),
            )
        try:
            return self._judge(run_id, spec, tags)
        except tracking.TrackingError:
            raise  # the run stays open: the next call with this key judges again
        except Exception as exc:  # a user's model or data must never crash the agent
            LOG.warning(
                "retrain %s: the candidate could not be scored (%s); it is not deployed, the serving "
                "model stays. Check the training step's output model",
                spec.name,
                exc,
            )
            return self._finish(
                run_id,
                _outcome(
                    base.OutcomeStatus.FAILED,
                    "candidate_unusable",
                    f"the candidate for model {self._model_name} could not be judged, the serving model "
                    f"stays: {type(exc).__name__}: {exc}",
                    run_id=run_id,
                    job=spec.name,
                ),
            )

    def _judge(self, run_id: str, spec: job.JobSpec, tags: dict[str, str]) -> base.ActionOutcome:
        # The candidate is loaded and scored in a child process (actions/retrain/judge.py): its
        # code and its memory never enter the agent.
        baseline = self._serving_model() if self._settings.baseline == "serving_model" else None
        results = judge_mod.judge_out_of_process(
            spec, self._settings, baseline, self._settings.judge_timeout_s
        )
        self._tracker.log_metrics(
            run_id, {f"gate.{r.name}": r.measured for r in results if r.measured is not None}
        )
        self._tracker.log_model(run_id, spec.output_dir)
        failed = gates.failures(results)
        gate_json = [result.to_json() for result in results]
        common = {
            "run_id": run_id,
            "job": spec.name,
            "strategy": tags.get(tracking.TAG_STRATEGY),
            "gates": gate_json,
        }
        if failed:
            reasons = [result.reason() for result in failed]
            return self._finish(
                run_id,
                _outcome(
                    base.OutcomeStatus.FAILED,
                    "gates_failed",
                    f"candidate for model {self._model_name} rejected, the serving model stays: "
                    + "; ".join(reasons),
                    failed_gates=reasons,
                    **common,
                ),
            )
        version_tags = {
            key: tags[key]
            for key in (
                tracking.TAG_INCIDENT,
                tracking.TAG_TRIGGER,
                tracking.TAG_STRATEGY,
                tracking.TAG_SERVING_VERSION,
                tracking.TAG_DATA_FINGERPRINT,
            )
            if key in tags
        }
        version_tags[tracking.TAG_GATES] = json.dumps([[r.name, r.measured, r.bound] for r in results])
        version = self._tracker.register(run_id, tags[tracking.TAG_KEY], version_tags)
        return self._finish(
            run_id,
            _outcome(
                base.OutcomeStatus.SUCCEEDED,
                "candidate_registered",
                f"candidate version {version} of model {self._tracker.model_name} passed "
                f"{len(results)} gates; "
                "registered, not deployed (next: canary)",
                candidate_version=version,
                model_uri=f"models:/{self._tracker.model_name}/{version}",
                **common,
            ),
        )

    def _finish(self, run_id: str, outcome: base.ActionOutcome) -> base.ActionOutcome:
        recorded = _plain(
            {"status": outcome.status.value, "message": outcome.message, "details": outcome.details}
        )
        if len(json.dumps(recorded)) > tracking.TAG_VALUE_MAX:
            # Keep the verdict whole; the full gate list is in the run's metrics and the live outcome.
            recorded["message"] = outcome.message[:1000]
            recorded["details"]["gates"] = recorded["details"].get("gates", [])[:OUTCOME_GATES_KEPT]
            recorded["details"]["failed_gates"] = recorded["details"].get("failed_gates", [])[
                :OUTCOME_GATES_KEPT
            ]
        self._tracker.finish(run_id, recorded, succeeded=outcome.status is base.OutcomeStatus.SUCCEEDED)
        return outcome

    def _load_serving_model(self) -> model.TabularModel | None:
        """The version behind the serving alias, if it is a drift-agent model (None otherwise)."""
        version = self._tracker.aliases().get(self._settings.serving_alias)
        if version is None:
            return None
        source = self._tracker.version_source(version)
        if not source.startswith("runs:/"):
            return None
        run_id = source.removeprefix("runs:/").split("/", 1)[0]
        with tempfile.TemporaryDirectory(prefix="drift-agent-serving-") as scratch:
            root = self._tracker.download_model(run_id, pathlib.Path(scratch))
            found = next((p.parent for p in sorted(root.rglob(model.METADATA_FILE))), None)
            if found is None or not model.is_model_dir(found):
                return None
            return model.TabularModel.load(found)


def _combined_fingerprint(train_fp: str, holdout_fp: str) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(f"train:{train_fp}\nholdout:{holdout_fp}".encode()).hexdigest()


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, unknown objects their text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _recorded(text: str) -> base.ActionOutcome:
    try:
        data = json.loads(text)
        status = base.OutcomeStatus(data["status"])
        details = dict(data.get("details") or {})
    except (ValueError, KeyError, TypeError) as exc:
        return _outcome(
            base.OutcomeStatus.FAILED,
            "unreadable_record",
            f"the recorded retrain outcome cannot be read: {exc}",
        )
    return base.ActionOutcome(
        status=status, message=str(data.get("message", "")), details={**details, "recorded": True}
    )


def _outcome(status: base.OutcomeStatus, reason: str, message: str, **details: Any) -> base.ActionOutcome:
    return base.ActionOutcome(status=status, message=message, details={"reason": reason, **details})
