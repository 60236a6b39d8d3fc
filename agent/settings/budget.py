"""Start-up check of the windows and the reference against their share of ``memory.budget_mib``.

The label join, dead-letter retries, KServe pairing, retrain rows and audit copies evict their
oldest data at their byte bounds. Windows and the reference are bounded by record counts
instead (a detector needs the whole window), so their bytes are estimated here from those
counts and the feature width, before any data is held: the agent refuses to start when the
reference and one open window cannot fit, and warns when ``window.max_open_windows`` full windows
could not (that many rarely fill at once: one per model version and segment).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Protocol

from agent.settings import groups, tree

log = logging.getLogger(__name__)

# A reference value kept as a float64 column for the detectors.
REFERENCE_VALUE_BYTES: Final = 8
# A buffered window value: the record's feature dict entry and its float object (measured with
# tracemalloc: 70-76 bytes per value for 20-200 features; rounded up).
WINDOW_VALUE_BYTES: Final = 80
# A vector component: float32, in the record's bytes and in the closed window's or reference's array.
VECTOR_VALUE_BYTES: Final = 4
SHARE: Final = "windows_reference"


class _Record(Protocol):
    @property
    def features(self) -> Mapping[str, object]: ...

    @property
    def embeddings(self) -> Mapping[str, bytes] | None: ...


def width_of(records: Iterable[_Record]) -> tuple[int, int]:
    """Scalar features and vector components per record, of the widest record."""
    scalars = components = 0
    for record in records:
        scalars = max(scalars, len(record.features))
        vectors = record.embeddings
        if vectors:
            components = max(components, sum(len(v) for v in vectors.values()) // VECTOR_VALUE_BYTES)
    return scalars, components


def check_reference_records(
    settings: tree.AgentSettings, records: Sequence[_Record] | None, *, time_window_records: int
) -> None:
    """``check_windows_and_reference`` for a loaded reference (None: collected later, unchecked);
    the warning is logged."""
    if not records:
        return
    width, vector_width = width_of(records)
    warning = check_windows_and_reference(
        settings,
        reference_rows=len(records),
        width=width,
        vector_width=vector_width,
        time_window_records=time_window_records,
    )
    if warning is not None:
        log.warning("%s", warning)


def window_records(settings: groups.WindowSettings, time_window_records: int) -> int:
    """Records one open window holds at most (``time_window_records``: the time windows' cap)."""
    return settings.size if settings.kind == "count" else time_window_records


def check_windows_and_reference(
    settings: tree.AgentSettings,
    *,
    reference_rows: int,
    width: int,
    time_window_records: int,
    vector_width: int = 0,
) -> str | None:
    """Raise ``ConfigError`` when the reference plus one window exceed the share; a warning (or
    None) about ``max_open_windows`` windows. ``width``: scalar features per record;
    ``vector_width``: vector components per record (all its vectors' dimensions)."""
    share = settings.memory.bytes_for(SHARE)
    reference_bytes = reference_rows * (width * REFERENCE_VALUE_BYTES + vector_width * VECTOR_VALUE_BYTES)
    record_bytes = width * WINDOW_VALUE_BYTES + vector_width * 2 * VECTOR_VALUE_BYTES
    one_window = window_records(settings.window, time_window_records) * record_bytes
    mib = 1024 * 1024
    vectors = f" + {vector_width} vector components" if vector_width else ""
    if reference_bytes + one_window > share:
        raise tree.ConfigError(
            f"the reference ({reference_rows} rows x {width} values{vectors} ~ "
            f"{reference_bytes / mib:.0f} MiB) and one open window ({one_window / mib:.0f} MiB) exceed their "
            "share of the memory budget "
            f"({share / mib:.0f} MiB of memory.budget_mib={settings.memory.budget_bytes / mib:.0f}): lower "
            "reference.max_rows or window.size (window.duration_s for time windows), or raise "
            "memory.budget_mib (and the container's memory limit)"
        )
    all_windows = one_window * settings.window.max_open_windows
    if reference_bytes + all_windows <= share:
        return None
    fit = max(1, int((share - reference_bytes) // one_window))
    return (
        f"memory: only {fit} of window.max_open_windows={settings.window.max_open_windows} full windows "
        f"({one_window / mib:.1f} MiB each at {width} values{vectors} per record) fit beside the reference "
        f"in {share / mib:.0f} MiB; more (model versions x segments) open at once could exceed the "
        "container's memory limit. Lower window.max_open_windows or window.size, or raise memory.budget_mib"
    )
