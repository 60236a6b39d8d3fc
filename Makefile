# Two commands for a new user: `make demo` and `make test`. Both set themselves up.
VENV := .venv
PY := $(VENV)/bin/python
# drift_logger is its own distribution (drift_logger/pyproject.toml); its package lives under src/.
SRC := agent detectors actions demo drift_logger/src/drift_logger

.PHONY: setup setup-test demo test lint typecheck unit bench image clean

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

demo: setup
	$(VENV)/bin/drift-agent demo $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check $(SRC) tests bench
	$(VENV)/bin/ruff format --check $(SRC) tests bench
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy $(SRC) tests bench

# Every test: tests/unit, tests/integration (real servers on loopback), tests/e2e, tests/architecture.
test: setup-test lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# The tests that start no server process (and the import rules): under a minute on 2 cores.
# Nothing is excluded by marker; a unit test that grows slow enough to break that moves to
# tests/integration/slow_<area> instead.
unit: setup
	$(PY) -m pytest tests/unit tests/architecture $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# The agent's container image, tagged as the chart's default (ghcr.io/drift-agent/drift-agent:<version>):
# Docker or Podman where one runs, buildah otherwise. IMAGE, TAG, BASE_IMAGE, BUILDER: see
# scripts/image.sh. Instant when the image is up to date with its inputs.
image: setup
	@bash scripts/image.sh build

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .state build/wheelhouse
