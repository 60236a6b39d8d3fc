"""EmbeddedBroker's checks that need no Tansu process (the process itself: tests/integration/kafka)."""

from __future__ import annotations

import os
import pathlib

import pytest

from demo import broker


def test_tansu_binary_is_the_packaged_executable() -> None:
    path = broker.tansu_binary()
    assert path.name == "tansu"
    assert path.parent.name == "bin"
    assert os.access(path, os.X_OK)


def test_missing_binary_is_named_in_the_error(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "no-such-tansu"
    with pytest.raises(broker.BrokerError, match="no-such-tansu"):
        broker.EmbeddedBroker(binary=missing).start()


def test_port_out_of_range_is_rejected() -> None:
    with pytest.raises(broker.BrokerError, match="between 0 and 65535"):
        broker.EmbeddedBroker(port=70000)
