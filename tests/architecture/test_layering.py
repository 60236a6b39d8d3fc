"""The design card's dependency direction, enforced: agent -> detectors, actions; never back."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# detectors is pure computation: numpy/scipy/torch (and pydantic for configs), nothing with I/O.
DETECTOR_THIRD_PARTY = {"numpy", "scipy", "torch", "pydantic", "detectors"}
# Standard-library modules that do I/O or talk to the outside world are not for detectors.
DETECTOR_FORBIDDEN_STDLIB = {"socket", "subprocess", "urllib", "http", "requests", "threading", "asyncio"}


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[pathlib.Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("detectors"), ids=lambda p: str(p.relative_to(REPO)))
def test_detectors_are_pure(path: pathlib.Path) -> None:
    roots = imported_roots(path)
    third_party = {r for r in roots if r not in sys.stdlib_module_names and r != "__future__"}
    assert third_party <= DETECTOR_THIRD_PARTY, (
        f"{path.name} imports {sorted(third_party - DETECTOR_THIRD_PARTY)}"
    )
    assert not roots & DETECTOR_FORBIDDEN_STDLIB, (
        f"{path.name} does I/O via {sorted(roots & DETECTOR_FORBIDDEN_STDLIB)}"
    )


@pytest.mark.parametrize("path", sources("actions"), ids=lambda p: str(p.relative_to(REPO)))
def test_actions_never_import_the_agent(path: pathlib.Path) -> None:
    assert "agent" not in imported_roots(path)


def test_there_is_something_to_check() -> None:
    assert len(sources("detectors")) >= 3
    assert len(sources("actions")) >= 2
