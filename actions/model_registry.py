"""The MLflow model registry as the rollback handler sees it: aliases, serving history, storage URIs.

MLflow keeps no record of which version served when, or how well, so the agent writes its own
history onto the model versions as tags (readable in the MLflow UI):

* ``drift_agent.deployed_at``: JSON list of epoch seconds this version started serving (newest last)
* ``drift_agent.health``: ``healthy`` | ``unhealthy`` | ``rolled_back`` (the latest verdict)
* ``drift_agent.health_reason``: why the latest non-healthy verdict was given
* ``drift_agent.healthy_at``: epoch seconds of the latest healthy window
* ``drift_agent.served_healthy_windows``: how many clean windows this version has served
* ``drift_agent.rolled_back_at``: epoch seconds it was last rolled back

and, on the registered model, ``drift_agent.rollbacks``: the rollback journal (the last
``JOURNAL_LENGTH`` rollbacks with their idempotency keys). It lives in the registry, not in a
pod's state directory, so a new leader on another pod resumes an interrupted rollback and sees
the same cooldown and circuit-breaker history.

Aliases replace the deprecated stages: ``champion`` serves, ``challenger`` is the canary,
``previous`` is the version the last rollback moved away from. Aliases come back empty from
``search_model_versions``; they are read from the registered model instead.

``mlflow`` is imported when a registry is created, not with this module, because importing it
costs seconds and the settings tree imports this module.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Set
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

LOG = logging.getLogger(__name__)

TAG_DEPLOYED_AT = "drift_agent.deployed_at"
TAG_HEALTH = "drift_agent.health"
TAG_HEALTH_REASON = "drift_agent.health_reason"
TAG_HEALTHY_AT = "drift_agent.healthy_at"
TAG_HEALTHY_WINDOWS = "drift_agent.served_healthy_windows"
TAG_ROLLED_BACK_AT = "drift_agent.rolled_back_at"
MODEL_TAG_ROLLBACKS = "drift_agent.rollbacks"

DEPLOYED_AT_KEPT = 20
JOURNAL_LENGTH = 20
REASON_MAX_CHARS = 500
_SEARCH_PAGE_SIZE = 200

_T = TypeVar("_T")
_VERSION_REF = re.compile(r"^models:/(?P<name>.+)/(?P<version>[0-9]+)$")
_ALIAS_REF = re.compile(r"^models:/(?P<name>.+)@(?P<alias>[A-Za-z0-9_-]+)$")
_LOGGED_MODEL_REF = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")


class Alias(enum.StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    PREVIOUS = "previous"


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    ROLLED_BACK = "rolled_back"


class RegistryError(RuntimeError):
    """The registry could not answer. ``retriable``: the server was unreachable or failed, not the request."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class RegistrySettings(pydantic.BaseModel):
    """Where the model registry is; the ``registry`` group of the agent's settings."""

    model_config = pydantic.ConfigDict(extra="forbid")

    tracking_uri: str | None = pydantic.Field(
        None,
        description="MLflow tracking/registry server, e.g. http://mlflow.mlops:5000. Null disables rollback "
        "(the agent still alerts). Credentials come from MLflow's own MLFLOW_TRACKING_TOKEN / "
        "MLFLOW_TRACKING_USERNAME+PASSWORD environment, never from this file.",
    )
    registered_model_name: str | None = pydantic.Field(
        None, description="Registered model name in MLflow; null = runtime.model_name."
    )
    min_healthy_windows: int = pydantic.Field(
        3,
        ge=1,
        description="Clean windows a version must have served before it counts as a rollback candidate.",
    )
    cooldown_s: float = pydantic.Field(
        1800.0,
        ge=0,
        description="At most one automatic rollback per model in this many seconds (forced ones bypass it).",
    )
    circuit_breaker_window_s: float = pydantic.Field(
        3600.0,
        ge=0,
        description="If the version a rollback restored is reported unhealthy within this many seconds, "
        "do not roll back again: fail with reason circuit_open and recommend paging a human.",
    )
    rollout_timeout_s: float = pydantic.Field(
        1800.0,
        gt=0,
        description="How long a rollback may stay in progress before it fails (GPU cold starts are slow).",
    )


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One model version with the agent's history tags parsed (unreadable tags read as absent)."""

    version: str
    source: str
    run_id: str | None
    health: Health | None
    health_reason: str
    healthy_windows: int
    healthy_at: float | None
    deployed_at: tuple[float, ...]
    rolled_back_at: float | None

    @property
    def last_deployed_at(self) -> float | None:
        return self.deployed_at[-1] if self.deployed_at else None


@dataclasses.dataclass(frozen=True)
class RollbackEntry:
    """One rollback in the journal. ``completed_at`` is None while it is in progress."""

    key: str
    from_version: str
    to_version: str
    model_uri: str
    forced: bool
    reason: str
    started_at: float
    completed_at: float | None = None
    result: str | None = None  # "succeeded" | "failed" once completed
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> RollbackEntry:
        if not isinstance(data, dict):
            raise TypeError(f"journal entry must be an object, got {type(data).__name__}")
        completed_at = data.get("completed_at")
        result = data.get("result")
        return cls(
            key=str(data["key"]),
            from_version=str(data["from_version"]),
            to_version=str(data["to_version"]),
            model_uri=str(data["model_uri"]),
            forced=bool(data["forced"]),
            reason=str(data.get("reason", "")),
            started_at=float(data["started_at"]),
            completed_at=None if completed_at is None else float(completed_at),
            result=None if result is None else str(result),
            message=str(data.get("message", "")),
        )


def _float_or_none(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _parse_deployed_at(raw: str | None) -> tuple[float, ...]:
    if raw is None:
        return ()
    try:
        values = json.loads(raw)
        return tuple(float(value) for value in values)
    except (ValueError, TypeError):
        return ()


def _parse_health(raw: str | None) -> Health | None:
    try:
        return None if raw is None else Health(raw)
    except ValueError:
        return None


def _parse_count(raw: str | None) -> int:
    try:
        return max(0, int(raw)) if raw is not None else 0
    except ValueError:
        return 0


def version_info(model_version: ModelVersion) -> VersionInfo:
    tags: dict[str, str] = dict(model_version.tags or {})
    return VersionInfo(
        version=str(model_version.version),
        source=str(model_version.source or ""),
        run_id=model_version.run_id or None,
        health=_parse_health(tags.get(TAG_HEALTH)),
        health_reason=tags.get(TAG_HEALTH_REASON, ""),
        healthy_windows=_parse_count(tags.get(TAG_HEALTHY_WINDOWS)),
        healthy_at=_float_or_none(tags.get(TAG_HEALTHY_AT)),
        deployed_at=_parse_deployed_at(tags.get(TAG_DEPLOYED_AT)),
        rolled_back_at=_float_or_none(tags.get(TAG_ROLLED_BACK_AT)),
    )


def _format_time(value: float) -> str:
    return repr(float(value))


class ModelRegistry:
    """One registered model in an MLflow registry, through the MLflow 3 client."""

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        *,
        min_healthy_windows: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not model_name or "'" in model_name:
            raise ValueError(
                f"registered model name {model_name!r} must be non-empty and contain no single quote "
                "(set registry.registered_model_name)"
            )
        if min_healthy_windows < 1:
            raise ValueError(f"min_healthy_windows must be at least 1, got {min_healthy_windows}")
        from mlflow import tracking  # noqa: PLC0415 - costs seconds; only the registry user pays it

        self._client: MlflowClient = tracking.MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
        self._name = model_name
        self._min_healthy_windows = min_healthy_windows
        self._clock = clock

    @property
    def model_name(self) -> str:
        return self._name

    # -- reading ---------------------------------------------------------------------------------

    def version(self, version: str) -> VersionInfo:
        model_version = self._call(
            f"read version {version} of model {self._name}",
            self._client.get_model_version,
            self._name,
            version,
        )
        return version_info(model_version)

    def versions(self) -> list[VersionInfo]:
        """Every version of the model with its tags (one search per page of 200)."""
        found: list[VersionInfo] = []
        page_token: str | None = None
        while True:
            page = self._call(
                f"list versions of model {self._name}",
                self._client.search_model_versions,
                filter_string=f"name='{self._name}'",
                max_results=_SEARCH_PAGE_SIZE,
                page_token=page_token,
            )
            found.extend(version_info(model_version) for model_version in page)
            page_token = page.token
            if not page_token:
                return found

    def aliases(self) -> dict[str, str]:
        """alias -> version, read from the registered model (search results carry none)."""
        model = self._call(f"read model {self._name}", self._client.get_registered_model, self._name)
        return {str(alias): str(version) for alias, version in dict(model.aliases or {}).items()}

    def alias(self, alias: Alias | str) -> str | None:
        return self.aliases().get(Alias(alias).value)

    def last_healthy_version(self, exclude: Set[str] = frozenset()) -> str | None:
        """The version that most recently served healthily, skipping ``exclude``.

        Not "current minus one": a version that was rolled back or found unhealthy is skipped
        however recent, and one the agent never saw serve clean windows is not trusted.
        """
        candidates = [
            info
            for info in self.versions()
            if info.version not in exclude
            and info.health is Health.HEALTHY
            and info.healthy_windows >= self._min_healthy_windows
        ]
        if not candidates:
            return None
        best = max(candidates, key=_recency)
        return best.version

    def resolve_uri(self, ref: str) -> str:
        """Storage URI for ``models:/name/N``, ``models:/name@alias`` or ``models:/m-<id>``.

        For servers that cannot read ``models:/`` (KServe's storage initializer): the version's
        artifact location, with ``runs:/`` sources resolved through the run's artifact URI.
        Any other URI (``s3://``, ``gs://``, a path) is already a storage URI and comes back as is.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError(f"model reference must be a non-empty string, got {ref!r}")
        if not ref.startswith("models:/"):
            return ref
        logged = _LOGGED_MODEL_REF.match(ref)
        if logged is not None:
            return self._logged_model_location(logged.group("model_id"))
        by_version = _VERSION_REF.match(ref)
        if by_version is not None:
            return self._version_location(by_version.group("name"), by_version.group("version"))
        by_alias = _ALIAS_REF.match(ref)
        if by_alias is not None:
            name, alias = by_alias.group("name"), by_alias.group("alias")
            model_version = self._call(
                f"resolve alias {alias} of model {name}", self._client.get_model_version_by_alias, name, alias
            )
            return self._version_location(name, str(model_version.version))
        raise ValueError(
            f"model reference {ref!r} is not understood: use models:/<name>/<version>, "
            "models:/<name>@<alias> or models:/m-<logged model id>"
        )

    def model_uri(self, version: str) -> str:
        """Storage URI of one version of this model."""
        return self.resolve_uri(f"models:/{self._name}/{version}")

    def rollbacks(self) -> list[RollbackEntry]:
        """The rollback journal in the order rollbacks started. Unreadable entries are skipped."""
        model = self._call(f"read model {self._name}", self._client.get_registered_model, self._name)
        raw = dict(model.tags or {}).get(MODEL_TAG_ROLLBACKS)
        if raw is None:
            return []
        try:
            items = json.loads(raw)
        except ValueError:
            LOG.warning(
                "model %s: registry tag %s is not JSON; rollbacks recorded there are ignored. Delete or "
                "fix the tag",
                self._name,
                MODEL_TAG_ROLLBACKS,
            )
            return []
        entries: list[RollbackEntry] = []
        for item in items if isinstance(items, list) else []:
            try:
                entries.append(RollbackEntry.from_json(item))
            except (KeyError, TypeError, ValueError) as exc:
                LOG.warning("model %s: skipping unreadable rollback journal entry (%s)", self._name, exc)
        return entries

    def rollback(self, key: str) -> RollbackEntry | None:
        return next((entry for entry in self.rollbacks() if entry.key == key), None)

    # -- writing ---------------------------------------------------------------------------------

    def set_alias(self, alias: Alias | str, version: str) -> None:
        name = Alias(alias).value
        self._call(
            f"set alias {name} of model {self._name} to {version}",
            self._client.set_registered_model_alias,
            self._name,
            name,
            version,
        )

    def mark_deployed(self, version: str, *, at: float | None = None) -> None:
        """Record that ``version`` started serving at ``at``. Repeating the same ``at`` adds nothing."""
        when = self._clock() if at is None else at
        history = list(self.version(version).deployed_at)
        if history and history[-1] == when:
            return
        history = [*history, when][-DEPLOYED_AT_KEPT:]
        self._set_tag(version, TAG_DEPLOYED_AT, json.dumps(history))

    def mark_healthy(self, version: str, *, windows: int = 1) -> None:
        """Record ``windows`` more clean windows served by ``version``; its verdict becomes healthy."""
        if windows < 1:
            raise ValueError(f"windows must be at least 1, got {windows}")
        info = self.version(version)
        # A rolled-back version can still serve a trickle (a draining canary) that looks clean:
        # only a redeploy after the rollback makes it a candidate again.
        rolled_back_at = info.rolled_back_at or 0.0
        if info.health is Health.ROLLED_BACK and max(info.deployed_at, default=0.0) <= rolled_back_at:
            return
        self._set_tag(version, TAG_HEALTHY_WINDOWS, str(info.healthy_windows + windows))
        self._set_tag(version, TAG_HEALTHY_AT, _format_time(self._clock()))
        if info.health is not Health.HEALTHY:  # one round trip fewer in the steady state
            self._set_tag(version, TAG_HEALTH, Health.HEALTHY.value)

    def mark_unhealthy(self, version: str, reason: str) -> None:
        self._set_tag(version, TAG_HEALTH_REASON, reason[:REASON_MAX_CHARS])
        self._set_tag(version, TAG_HEALTH, Health.UNHEALTHY.value)

    def mark_rolled_back(self, version: str, reason: str, *, at: float | None = None) -> None:
        when = self._clock() if at is None else at
        self._set_tag(version, TAG_ROLLED_BACK_AT, _format_time(when))
        self._set_tag(version, TAG_HEALTH_REASON, reason[:REASON_MAX_CHARS])
        self._set_tag(version, TAG_HEALTH, Health.ROLLED_BACK.value)

    def record_rollback(self, entry: RollbackEntry) -> None:
        """Add a journal entry, or replace the one with the same key in place; oldest fall off first."""
        journal = self.rollbacks()
        keys = [existing.key for existing in journal]
        if entry.key in keys:
            journal[keys.index(entry.key)] = entry
        else:
            journal = [*journal, entry][-JOURNAL_LENGTH:]
        self._call(
            f"write the rollback journal of model {self._name}",
            self._client.set_registered_model_tag,
            self._name,
            MODEL_TAG_ROLLBACKS,
            json.dumps([item.to_json() for item in journal], sort_keys=True),
        )

    # -- internals -------------------------------------------------------------------------------

    def _set_tag(self, version: str, key: str, value: str) -> None:
        self._call(
            f"tag version {version} of model {self._name} ({key})",
            self._client.set_model_version_tag,
            self._name,
            version,
            key,
            value,
        )

    def _version_location(self, name: str, version: str) -> str:
        location = str(
            self._call(
                f"find the artifacts of version {version} of model {name}",
                self._client.get_model_version_download_uri,
                name,
                version,
            )
        )
        if location.startswith("runs:/"):
            return self._run_artifact_location(location)
        logged = _LOGGED_MODEL_REF.match(location)
        if logged is not None:
            return self._logged_model_location(logged.group("model_id"))
        return location

    def _run_artifact_location(self, runs_uri: str) -> str:
        run_id, _, artifact_path = runs_uri.removeprefix("runs:/").partition("/")
        run = self._call(f"read run {run_id}", self._client.get_run, run_id)
        root = str(run.info.artifact_uri).rstrip("/")
        return f"{root}/{artifact_path}" if artifact_path else root

    def _logged_model_location(self, model_id: str) -> str:
        logged_model = self._call(f"read logged model {model_id}", self._client.get_logged_model, model_id)
        return str(logged_model.artifact_location)

    def _call(self, what: str, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        from mlflow import exceptions as mlflow_exceptions  # noqa: PLC0415 - already loaded by __init__

        try:
            return method(*args, **kwargs)
        except mlflow_exceptions.MlflowException as exc:
            code = str(getattr(exc, "error_code", ""))
            # Unknown names and bad values are the caller's to fix; anything else may pass.
            retriable = code not in {
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
                "PERMISSION_DENIED",
            }
            raise RegistryError(
                f"MLflow registry: cannot {what}: {exc.message}", retriable=retriable
            ) from exc


def _recency(info: VersionInfo) -> tuple[float, float, int]:
    version_number = int(info.version) if info.version.isdigit() else -1
    return (info.healthy_at or 0.0, info.last_deployed_at or 0.0, version_number)


def describe_versions(infos: Iterable[VersionInfo]) -> str:
    """One line per version for error messages and the audit log."""
    return "; ".join(
        f"v{info.version}: {info.health.value if info.health else 'unknown'}"
        f" ({info.healthy_windows} clean windows)"
        for info in infos
    )
