"""Shared records and Ray start-up settings of the distributed-ranking tests.

Ray binds only to 127.0.0.1 here (``_node_ip_address``), with no dashboard and no usage stats;
each test module starts Ray once (a module-scoped fixture) and shuts it down at the end.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Any:
    """The in-process (local engine) ranker uses one intra-op thread like each Ray actor."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
