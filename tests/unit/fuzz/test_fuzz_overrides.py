"""Fuzz tests of the override loader: any text gives an ``OverrideFile`` or an ``OverrideError``.

``overrides.parse`` reads a file an operator edits by hand (``kubectl edit`` on a ConfigMap); the
watcher keeps the previous overrides when it raises ``OverrideError``, and only that. What is
proved, on arbitrary text, on text assembled from YAML's own syntax (anchors, aliases, tags such
as ``!!int`` / ``!!binary`` / ``!!python/object``, merge keys, flow and block collections,
impossible dates and offsets, deep nesting), on arbitrary mappings dumped to YAML and on valid
override files with one key or value mutated:

- ``parse`` returns an ``OverrideFile`` or raises ``OverrideError`` naming the file, never another
  exception;
- a valid file is accepted with every entry.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any, Final

import hypothesis
import yaml
from hypothesis import strategies as st

from actions import vocabulary
from agent import overrides
from tests.unit.fuzz.common import FUZZ, json_scalars, texts

SOURCE: Final = "fuzz.yaml"
SECTIONS: Final = sorted(overrides.OverrideFile.model_fields)


def check_parse(text: str) -> overrides.OverrideFile | None:
    """The parsed file, or None when it was rejected with ``OverrideError`` (the only error)."""
    try:
        parsed = overrides.parse(text, SOURCE)
    except overrides.OverrideError as exc:
        assert SOURCE in str(exc), exc
        return None
    assert isinstance(parsed, overrides.OverrideFile)
    return parsed


# -- strategies ---------------------------------------------------------------------------------

# Pieces of YAML syntax, joined at random: most joins are invalid, many are valid but odd.
_YAML_PIECES: Final = [
    *SECTIONS,
    "until",
    "model",
    "id",
    "action",
    "threshold",
    ":",
    ": ",
    " ",
    "  ",
    "\n",
    "\n  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: ",
    "? ",
    "|\n",
    ">\n",
    "'",
    '"',
    "#",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!binary ",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!custom ",
    "~",
    "null",
    "true",
    "yes",
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "1_000",
    "1e400",
    "9" * 400,
    "2030-01-01T00:00:00Z",
    "2030-02-30",  # no such day: PyYAML's date constructor raises ValueError
    "2030-01-01 00:00:00 +25:00",  # no such offset: ValueError from datetime.timezone
    "2030-01-01T00:00:00",  # no timezone
    "0001-01-01 00:00:00 -23:59",
    "9999-12-31 23:59:59 +00:00",
    "x",
    "fraud",
    "\t",
    "\x00",
    "\ud800",
    "\ufeff",
]
yaml_syntax: Final = st.lists(st.sampled_from(_YAML_PIECES) | texts, max_size=30).map("".join)

# Override files as an operator writes them, with a scalar that YAML reads in an unusual way.
_SCALARS: Final = [
    "2030-01-31T18:00:00Z",
    "2030-02-30",
    "2030-13-01",
    "2030-01-01 00:00:00 +25:00",
    "2030-01-01T25:00:00Z",
    "0001-01-01 00:00:00 -23:59",
    "!!int x",
    "!!float x",
    "!!bool x",
    "!!timestamp x",
    "!!timestamp 2030-01-01",
    "!!binary x",
    "!!binary \u00e9",
    "!!null x",
    "!!str 1",
    "!!set {a, b}",
    "!!omap [a]",
    "!!python/name:os.system",
    "!!map x",
    "!!seq x",
    "&a [*a]",
    "*nowhere",
    "{<<: 1}",
    "{<<: [1]}",
    "? [a]",
    "1e400",
    ".nan",
    "-.inf",
    "0x1F",
    "~",
    "[]",
    "{}",
]
_KEYS: Final = ["until", "model", "version", "id", "action", "threshold", "incident", "command", "enabled"]
yaml_files: Final = st.builds(
    lambda section, key, value, flow: (
        f"{section}:\n  - {{{key}: {value}}}\n" if flow else f"{section}:\n  - {key}: {value}\n"
    ),
    st.sampled_from(SECTIONS),
    st.sampled_from(_KEYS) | texts,
    st.sampled_from(_SCALARS) | texts,
    st.booleans(),
) | st.builds(
    lambda section, value: f"{section}: {value}\n", st.sampled_from(SECTIONS), st.sampled_from(_SCALARS)
)


def _aware(offsets: st.SearchStrategy[datetime.timedelta]) -> st.SearchStrategy[datetime.datetime]:
    return st.datetimes(
        min_value=datetime.datetime(1, 1, 2),
        max_value=datetime.datetime(9999, 12, 30),
        timezones=st.builds(datetime.timezone, offsets),
    )


_DAY: Final = datetime.timedelta(hours=23, minutes=59)
# Offsets of whole minutes, as people write them; any offset (PyYAML cannot read back what it
# writes for a sub-minute one) only where anything may come.
aware_datetimes: Final = _aware(
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda m: datetime.timedelta(minutes=m)
    )
)
odd_datetimes: Final = _aware(st.timedeltas(min_value=-_DAY, max_value=_DAY))
# Values PyYAML can write: JSON's, and dates and times with or without a timezone.
yaml_scalars: Final = st.one_of(
    json_scalars,
    st.dates(),
    st.datetimes(),
    aware_datetimes,
    odd_datetimes,
    aware_datetimes.map(datetime.datetime.isoformat),
)
yaml_values: Final = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(texts | st.sampled_from(SECTIONS), children, max_size=3)
    ),
    max_leaves=10,
)

# Valid files hold text without lone surrogates (pydantic refuses those: an OverrideError).
clean_texts: Final = st.text(max_size=12)
globs: Final = st.sampled_from(["*", "fraud", "fr*", "[ab]?"]) | clean_texts
non_empty: Final = clean_texts.filter(bool)
untils: Final = aware_datetimes | aware_datetimes.map(datetime.datetime.isoformat)
severities: Final = st.sampled_from([severity.value for severity in vocabulary.Severity])
optional_common: Final = {"reason": st.none() | clean_texts, "by": st.none() | clean_texts}

entries: Final[dict[str, st.SearchStrategy[dict[str, Any]]]] = {
    "mute": st.fixed_dictionaries(
        {"until": untils},
        optional={
            "model": globs,
            "family": globs,
            "detector": globs,
            "feature": globs,
            "max_severity": severities,
            **optional_common,
        },
    ),
    "freeze": st.fixed_dictionaries({"until": untils}, optional={"model": globs, **optional_common}),
    "pins": st.fixed_dictionaries({"model": globs, "version": non_empty}, optional=optional_common),
    "thresholds": st.fixed_dictionaries(
        {"detector": globs, "threshold": st.floats(allow_nan=False, allow_infinity=False)},
        optional={"model": globs, "feature": globs, "until": st.none() | untils, **optional_common},
    ),
    "force": st.fixed_dictionaries(
        {"action": st.sampled_from([kind.value for kind in vocabulary.ActionKind])},
        optional={
            "model": st.none() | clean_texts,
            "to_version": st.none() | clean_texts,
            "incident": st.none() | clean_texts,
            "severity": severities,
            **optional_common,
        },
    ),
    "acknowledge": st.fixed_dictionaries(
        {"incident": non_empty}, optional={"until": st.none() | untils, **optional_common}
    ),
    "canary": st.fixed_dictionaries(
        {"command": st.sampled_from(["pause", "resume", "abort", "promote"])},
        optional={"id": st.none() | clean_texts, **optional_common},
    ),
}


@st.composite
def valid_files(draw: st.DrawFn) -> dict[str, Any]:
    file: dict[str, Any] = {}
    for section, entry in entries.items():
        if draw(st.booleans()):
            file[section] = draw(st.lists(entry, min_size=1, max_size=3))
    # Ids and canary models must be unique within the file.
    for i, forced in enumerate(file.get("force", [])):
        forced["id"] = f"op-{i}"
    for i, control in enumerate(file.get("canary", [])):
        control["model"] = f"model-{i}"
    if draw(st.booleans()):
        file["dry_run"] = draw(
            st.booleans()
            | st.fixed_dictionaries(
                {}, optional={"enabled": st.booleans(), "until": untils, **optional_common}
            )
        )
    return file


_DELETE: Final = object()


@st.composite
def near_valid_files(draw: st.DrawFn) -> Any:
    """A valid file with one section, entry, key or value replaced by anything (or removed, or
    renamed); now and then the whole document is replaced."""
    file = copy.deepcopy(draw(valid_files()))
    if not file or draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(yaml_values)
    # Walk down to a random mapping or list.
    node: Any = file
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if not isinstance(child, dict | list) or not child or draw(st.booleans()):
            break
        node = child
    replacement = draw(st.just(_DELETE) | yaml_values)
    if isinstance(node, dict):
        if replacement is _DELETE:
            del node[key]
        elif draw(st.booleans()):
            node[key] = replacement
        else:
            node[draw(texts | st.sampled_from(SECTIONS))] = node.pop(key)  # a renamed key
    elif node:
        node[key] = None if replacement is _DELETE else replacement
    return file


# -- the tests ----------------------------------------------------------------------------------


@hypothesis.settings(FUZZ, max_examples=250)
@hypothesis.given(text=st.text(max_size=200) | yaml_syntax | yaml_files)
# Raised ValueError, KeyError, AttributeError or RecursionError, not OverrideError, before the fix
# in agent/overrides/schema.py (``parse``):
@hypothesis.example(text="mute:\n  - {until: 2030-02-30}\n")  # day out of range for month
@hypothesis.example(text="freeze:\n  - {until: 2030-01-01 00:00:00 +25:00}\n")  # offset of 25 h
@hypothesis.example(text="thresholds:\n  - {detector: ks, threshold: !!float x}\n")  # float('x')
@hypothesis.example(text="pins: !!int x\n")  # int('x')
@hypothesis.example(text="dry_run: !!bool x\n")  # KeyError
@hypothesis.example(text="mute:\n  - {until: !!timestamp x}\n")  # AttributeError (regex found no match)
@hypothesis.example(text="[" * 2_000)  # nesting deeper than the recursion limit
@hypothesis.example(text="a: " + "{a: " * 2_000)
def test_any_text_gives_a_file_or_an_override_error(text: str) -> None:
    check_parse(text)


@hypothesis.settings(FUZZ, max_examples=200)
@hypothesis.given(document=yaml_values)
# PyYAML writes a timezone of 1 microsecond as a timestamp it cannot read back (AttributeError).
@hypothesis.example(
    document=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(microseconds=1)))
)
def test_any_document_gives_a_file_or_an_override_error(document: Any) -> None:
    check_parse(yaml.safe_dump(document))


@hypothesis.settings(FUZZ, max_examples=100)
@hypothesis.given(file=valid_files())
def test_valid_files_are_accepted_with_every_entry(file: dict[str, Any]) -> None:
    parsed = check_parse(yaml.safe_dump(file))
    assert parsed is not None, file
    for section, written in file.items():
        if section != "dry_run":
            assert len(getattr(parsed, section)) == len(written), section
    assert (parsed.dry_run is not None) == ("dry_run" in file)


@hypothesis.settings(FUZZ, max_examples=200)
@hypothesis.given(document=near_valid_files())
def test_near_valid_files_give_a_file_or_an_override_error(document: Any) -> None:
    check_parse(yaml.safe_dump(document))
