"""Incidents while two versions serve (a canary's split, or a rollout under way), pure.

When the last ``RECENT_WINDOWS`` windows came from more than one version, the version joins each
unit's segment, so every version's incidents and streaks are its own: a canary's incident is not
reset by clean stable windows, nor re-opened as the two alternate. An incident open when the
split begins goes on as the version's it was about (one page per problem); when a version stops
serving, its incidents close; when one version serves alone again, its still-open incident goes on
as the model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from agent.policy import incidents
from agent.policy.state import PolicyState
from agent.policy.units import Unit

# The segment key that keeps incidents per model version during a split.
SPLIT_VERSION_KEY = "model_version"
# Windows remembered to tell whether the model serves two versions.
RECENT_WINDOWS = 8


@dataclasses.dataclass(frozen=True)
class Ended:
    """A per-version incident closed because no window will update it any more."""

    incident: incidents.IncidentState
    epoch_actions: list[str]  # what its epoch had issued: a RESOLVE goes where someone was told
    why: str


def note_serving(state: PolicyState, units: Sequence[Unit]) -> frozenset[str]:
    """The versions of the last RECENT_WINDOWS windows, this one's included."""
    version = next((unit.model_version for unit in units if unit.model_version is not None), None)
    if version is not None:
        state.recent_versions = [*state.recent_versions, version][-RECENT_WINDOWS:]
    return frozenset(state.recent_versions)


def per_version(unit: Unit) -> Unit:
    """The unit with its version in its segment (during a split)."""
    if unit.model_version is None:
        return unit
    return dataclasses.replace(unit, segment={**(unit.segment or {}), SPLIT_VERSION_KEY: unit.model_version})


def model_incident_id(model: str, family: str, group: str, segment: Mapping[str, str] | None) -> str:
    """The model's incident id for a per-version incident (its segment less the version)."""
    rest = {key: value for key, value in (segment or {}).items() if key != SPLIT_VERSION_KEY}
    return incidents.incident_id(model, family, group, rest or None)


def carried_into_split(
    state: PolicyState, key: str, plain: str, version: str
) -> incidents.IncidentState | None:
    """The model's open incident ``plain``, carried over as ``version``'s (``key``) when the split
    begins and it was about that version; None when there is none to carry."""
    before = state.incidents.get(plain)
    if before is None or before.status == "closed" or before.model_version not in (version, None):
        return None
    carried = dataclasses.replace(before, incident_id=key, split_version=version, model_incident_id=plain)
    state.incidents[key] = carried
    del state.incidents[plain]
    return carried


def settle(state: PolicyState, serving: frozenset[str]) -> list[Ended]:
    """Close the per-version incidents no window will update any more (those of a version that no
    longer serves; once one version serves alone again, every one), and move a lone version's
    open incident back to the model's key. Returns the ones closed, for their RESOLVE."""
    split = len(serving) > 1
    ended = []
    for key, incident in list(state.incidents.items()):
        version = incident.split_version
        if version is None or incident.status == "closed" or (split and version in serving):
            continue
        plain = incident.model_incident_id
        earlier = state.incidents.get(plain) if plain is not None else None
        if version in serving and plain is not None and (earlier is None or earlier.status == "closed"):
            # Same episode, no resolve and re-open; an epoch of its own so its action keys never
            # meet the model incident's earlier ones.
            del state.incidents[key]
            epoch = max(incident.epoch, earlier.epoch + 1) if earlier is not None else incident.epoch
            state.incidents[plain] = dataclasses.replace(
                incident, incident_id=plain, split_version=None, model_incident_id=None, epoch=epoch
            )
            continue
        epoch_actions = list(incident.actions_taken)
        incidents.end(incident)
        why = (
            f"ended: version {version} no longer serves"
            if version not in serving
            else f"ended: version {version} serves alone again; its windows count for the model's incidents"
        )
        ended.append(Ended(incident, epoch_actions, why))
    return ended
