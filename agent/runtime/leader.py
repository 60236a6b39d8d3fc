"""Leader election on a coordination.k8s.io/v1 Lease, so only one sidecar acts.

Every sidecar computes; only the leader alerts, rolls back or retrains (duplicate notifications
from several controller pods were a recurring complaint: argo-rollouts#2556).

The algorithm is client-go's ``leaderelection``:

- A candidate takes the Lease when it is absent, or when its record (holder, renewTime,
  transitions) has not changed for ``lease_duration_s`` *as measured on the candidate's own
  clock* since it first saw that record. Remote timestamps are never compared with local ones,
  so clock skew between pods cannot hand leadership to two of them.
- Every write carries the ``resourceVersion`` it was computed from; of two candidates racing
  for the Lease, the API server accepts one and answers 409 to the other.
- The holder renews every ``retry_period_s``. ``is_leader()`` turns False as soon as
  ``renew_deadline_s`` passes without a successful renew, which is before any other candidate
  may take over (``renew_deadline_s < lease_duration_s``): the executor checks it right before
  acting, so an agent cut off from the API server stops acting before another one starts.
- A renew counts from when its request *started*, not when the answer came: a successful
  renew that took longer than the deadline (a slow API server) leaves this candidate already
  lapsed, never leading past the moment another may take over.
- Every API call carries a request timeout (half the renew deadline), and no lock is held
  across one: ``is_leader()`` answers at once even while the API server hangs.

``try_acquire_or_renew`` is the pure step (tests call it with a fake clock); ``run``/``stop``
drive it from a daemon thread.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from agent.observability import errors
from agent.runtime import heartbeat
from agent.settings import groups as settings_groups

if TYPE_CHECKING:
    from kubernetes import client as k8s_client

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
HEARTBEAT = "leader election"
MERGE_PATCH = "application/merge-patch+json"


def micro_time(epoch_s: float) -> str:
    """Kubernetes MicroTime text; it must carry exactly six fractional digits."""
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    lease_duration_s: float
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str


def _record_of(lease: Any) -> LeaseRecord:
    spec = lease.spec
    holder = spec.holder_identity if spec is not None else None
    return LeaseRecord(
        holder=holder or None,
        lease_duration_s=float(spec.lease_duration_seconds or 0) if spec is not None else 0.0,
        acquire_time=_time_text(spec.acquire_time) if spec is not None else None,
        renew_time=_time_text(spec.renew_time) if spec is not None else None,
        transitions=int(spec.lease_transitions or 0) if spec is not None else 0,
        resource_version=str(lease.metadata.resource_version),
    )


def _time_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return micro_time(value.timestamp())
    return str(value)


class LeaderElector:
    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        heartbeats: heartbeat.Heartbeats | None = None,
        stall_after_s: float = 180.0,
    ) -> None:
        settings_groups.check_lease_durations(lease_duration_s, renew_deadline_s, retry_period_s)
        if not identity:
            raise ValueError("identity must be a non-empty string (e.g. the pod name)")
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        # Imported here: agent.settings imports this module for its settings group, and the
        # Kubernetes client takes most of a second to import.
        import urllib3  # noqa: PLC0415
        from kubernetes import client as k8s_client  # noqa: PLC0415

        self._k8s = k8s_client
        self._api = k8s_client.CoordinationV1Api(api_client)
        # What a flaky network or API server raises; never fatal to the agent.
        self._transient: tuple[type[BaseException], ...] = (
            k8s_client.ApiException,
            OSError,
            urllib3.exceptions.HTTPError,
        )
        # `clock` measures intervals (monotonic); `wall_clock` only stamps the Lease for humans.
        self._clock = clock
        self._wall_clock = wall_clock
        # A request that has not answered within this is abandoned: a renew must land before the
        # deadline to count at all.
        self._request_timeout_s = renew_deadline_s / 2
        # Read and written by the one thread that runs the attempts (the ticker, or a test).
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        # Guarded by _lock, which is never held across a request.
        self._last_renew: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[bool], None] | None = None
        # The ticker beats once per attempt while it runs: a ticker stuck beyond
        # ``stall_after_s`` fails the liveness probe.
        self.heartbeats = heartbeats
        self.stall_after_s = stall_after_s

    # -- the pure step --------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True when this candidate holds it now."""
        started = self._clock()
        with self._lock:
            was_leader = self._leading_now()
        try:
            held = self._attempt(started)
        except self._transient as exc:
            # An unreachable API server must not crash the agent: is_leader() lapses by itself.
            logger.warning(
                "leader election: cannot reach lease %s/%s (%s); this agent does not lead until it "
                "can. Check the API server and the service account's lease permissions",
                self.namespace,
                self.name,
                _short(exc),
            )
            held = False
        with self._lock:
            if held and (self._last_renew is None or started > self._last_renew):
                self._last_renew = started
            now_leader = self._leading_now()
        if was_leader != now_leader:
            logger.info(
                "leader election: %s %s lease %s/%s",
                self.identity,
                "acquired" if now_leader else "lost",
                self.namespace,
                self.name,
            )
            if self.on_change is not None:
                self.on_change(now_leader)
        return held

    def is_leader(self) -> bool:
        with self._lock:
            return self._leading_now()

    def release(self) -> None:
        """Give the Lease up on shutdown so a successor need not wait out the lease duration."""
        with self._lock:
            held, self._last_renew = self._last_renew, None
        if held is None:
            return
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._request_timeout_s
            )
            record = _record_of(lease)
            if record.holder != self.identity:
                return
            self._patch(
                record,
                {
                    "holderIdentity": None,
                    "leaseDurationSeconds": 1,
                    "renewTime": micro_time(self._wall_clock()),
                },
            )
        except self._transient as exc:
            logger.warning(
                "leader election: lease %s/%s not released (%s); another agent takes it when it expires",
                self.namespace,
                self.name,
                _short(exc),
            )

    # -- the ticker -----------------------------------------------------------------------

    def run(self) -> None:
        """Start the background ticker (a daemon thread); idempotent."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_period_s + 5)
            self._thread = None
        if self.heartbeats is not None:
            self.heartbeats.stopped(HEARTBEAT)
        if release:
            self.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.heartbeats is not None:
                self.heartbeats.beat(HEARTBEAT, self.stall_after_s)
            self.try_acquire_or_renew()
            self._stop.wait(self.retry_period_s)

    # -- internals ------------------------------------------------------------------------

    def _leading_now(self) -> bool:
        return self._last_renew is not None and self._clock() - self._last_renew < self.renew_deadline_s

    def _attempt(self, now: float) -> bool:
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._request_timeout_s
            )
        except self._k8s.ApiException as exc:
            if exc.status != 404:
                raise
            return self._create()
        record = _record_of(lease)
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        if record.holder is not None and record.holder != self.identity:
            # The holder's own stated duration counts, in case it differs from ours.
            wait = record.lease_duration_s or self.lease_duration_s
            if now - self._observed_at < wait:
                return False
        stamp = micro_time(self._wall_clock())
        changes: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "renewTime": stamp,
        }
        if record.holder != self.identity:
            changes["acquireTime"] = stamp
            changes["leaseTransitions"] = record.transitions + 1
        return self._patch(record, changes)

    def _create(self) -> bool:
        body = self._k8s.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=self._k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=self._k8s.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=max(1, round(self.lease_duration_s)),
                lease_transitions=0,
            ),
        )
        try:
            created = self._api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self._request_timeout_s
            )
        except self._k8s.ApiException as exc:
            if exc.status == 409:
                return False  # another candidate created it first
            raise
        # The client serializes datetimes without the six fractional digits MicroTime demands
        # when they happen to be whole seconds, so the times are written as text by a patch.
        stamp = micro_time(self._wall_clock())
        self._patch(_record_of(created), {"acquireTime": stamp, "renewTime": stamp})
        return True

    def _patch(self, record: LeaseRecord, changes: dict[str, Any]) -> bool:
        # The resourceVersion makes the write conditional: a concurrent writer gets 409.
        body = {"metadata": {"resourceVersion": record.resource_version}, "spec": changes}
        try:
            self._api.patch_namespaced_lease(
                self.name,
                self.namespace,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=self._request_timeout_s,
            )
        except self._k8s.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


class AlwaysLeader:
    """Local/demo mode without Kubernetes: this process always acts."""

    def try_acquire_or_renew(self) -> bool:
        return True

    def is_leader(self) -> bool:
        return True

    def release(self) -> None:
        return None

    def run(self) -> None:
        return None

    def stop(self, *, release: bool = True) -> None:
        return None


class Elector(Protocol):
    """What the executor and the runtime use: LeaderElector or AlwaysLeader."""

    def try_acquire_or_renew(self) -> bool: ...
    def is_leader(self) -> bool: ...
    def release(self) -> None: ...
    def run(self) -> None: ...
    def stop(self, *, release: bool = True) -> None: ...


def default_identity() -> str:
    """The pod name (a pod's hostname) plus a random suffix, so a restarted pod is a new candidate."""
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


def build_elector(
    config: settings_groups.LeaderElectionSettings,
    api_client: k8s_client.ApiClient | None,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    heartbeats: heartbeat.Heartbeats | None = None,
    stall_after_s: float = 180.0,
) -> Elector:
    """A LeaderElector when leader election is enabled, else AlwaysLeader."""
    if not config.enabled:
        return AlwaysLeader()
    if api_client is None:
        raise ValueError(
            "leader_election.enabled is true but no Kubernetes API client was given: configure "
            "target.kubeconfig or run in a pod, or set leader_election.enabled=false"
        )
    return LeaderElector(
        api_client,
        config.namespace,
        config.lease_name,
        config.identity or default_identity(),
        lease_duration_s=config.lease_duration_s,
        renew_deadline_s=config.renew_deadline_s,
        retry_period_s=config.retry_period_s,
        clock=clock,
        wall_clock=wall_clock,
        heartbeats=heartbeats,
        stall_after_s=stall_after_s,
    )


def _short(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status} {getattr(exc, 'reason', '')}"
    return errors.describe(exc)
