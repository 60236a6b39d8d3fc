"""bench/ingest.py's record stream (the measurement itself needs a broker: tests/integration/kafka)."""

from __future__ import annotations

from bench import ingest


def test_bench_schema_is_the_streams_features() -> None:
    schema = ingest.bench_schema()
    assert schema.names == tuple(f"feat_{i:03d}" for i in range(ingest.FEATURES))
    assert set(schema.kinds) == {"numeric"}
