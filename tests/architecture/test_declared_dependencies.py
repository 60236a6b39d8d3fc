"""Every third-party module the runtime imports is one of its declared dependencies.

The image installs exactly what pyproject.toml declares (plus what those pull in): a module the
development environment happens to have, imported but not declared, works in every test and
fails only in the image (msgspec did).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys
import tomllib

from tests.architecture.test_layering import REPO, imported_roots, sources

# The packages `pip install drift-agent` installs; demo is the `demo` extra's (checked below).
RUNTIME_PACKAGES = ("agent", "detectors", "actions")
OWN_TOP_LEVEL = {"agent", "detectors", "actions", "demo", "drift_logger"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _names(requirements: list[str]) -> set[str]:
    return {_normalized(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]) for requirement in requirements}


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return _names(project["dependencies"]), _names(project["optional-dependencies"]["demo"])


@functools.cache
def _module_providers() -> dict[str, set[str]]:
    return {
        module: {_normalized(name) for name in names}
        for module, names in importlib.metadata.packages_distributions().items()
    }


def _undeclared(packages: tuple[str, ...], declared: set[str]) -> dict[str, set[str]]:
    missing: dict[str, set[str]] = {}
    for package in packages:
        for path in sources(package):
            for root in imported_roots(path) - OWN_TOP_LEVEL:
                if root in sys.stdlib_module_names or root == "__future__":
                    continue
                providers = _module_providers().get(root, set())
                # mlflow-skinny provides the `mlflow` module (as does the full mlflow in dev).
                if not providers & declared:
                    missing.setdefault(root, set()).add(str(path.relative_to(REPO)))
    return missing


def test_the_runtime_imports_only_declared_dependencies() -> None:
    runtime, _ = _declared()
    missing = _undeclared(RUNTIME_PACKAGES, runtime)
    assert missing == {}, f"imported but not in [project].dependencies: {missing}"


def test_the_demo_imports_only_runtime_or_demo_dependencies() -> None:
    runtime, demo = _declared()
    missing = _undeclared(("demo",), runtime | demo)
    assert missing == {}, f"imported by demo/ but in neither dependencies nor the demo extra: {missing}"
