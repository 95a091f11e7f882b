"""Fixtures of the hardening tests: the misbehaving loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hardening_server import MisbehavingServer


@pytest.fixture(scope="module")
def server() -> Iterator[MisbehavingServer]:
    srv = MisbehavingServer()
    yield srv
    srv.close()


@pytest.fixture
def fresh(server: MisbehavingServer) -> MisbehavingServer:
    """The server with its request log and counters reset."""
    server.reset()
    return server
