"""Shared records and Ray start-up settings of the distributed-ranking tests.

Ray runs on loopback only, with no dashboard and no usage stats; each test module starts Ray
once (a module-scoped fixture) and stops it at the end.

Loopback: on Linux Ray takes a node's address from the interface that routes outwards, and it
rewrites ``127.0.0.1`` given to ``ray.init`` (``address=`` or ``_node_ip_address=``) into that
address. A cluster whose head and worker were started on 127.0.0.1 is then looked for on the
other interface, and the driver hangs. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read when Ray is
imported) makes Ray's node address lookup answer loopback, as it does on a laptop; it must be set
before the first ``import ray`` of the test process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from suite_helpers import torch_threads

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The in-process (local engine) ranker uses one intra-op thread like each Ray actor."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def cli_app() -> Any:
    """A Typer app with ``blender rank`` alone."""
    from ray_helpers import rank_cli_app

    return rank_cli_app()
