"""`make bench`: run every benchmark, or the ones named (`python -m bench ingest detectors`)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("ingest", "ingest_wide", "detectors", "logger", "detection", "quality", "memory")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; valid: {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        module.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
