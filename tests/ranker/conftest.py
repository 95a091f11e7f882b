"""Shared tiny PairRanker checkpoints and loaded rankers for the ranker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suite_helpers import torch_threads


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """One tiny checkpoint per (layout, backbone), built once."""
    from blender_core.testing import make_tiny_pairranker

    root = tmp_path_factory.mktemp("tiny_rankers")
    return {
        (layout, backbone): make_tiny_pairranker(
            root / f"{layout}-{backbone}",
            layout=layout,
            backbone=backbone,  # type: ignore[arg-type]
        )
        for layout in ("pairrm", "hf", "legacy")
        for backbone in ("deberta", "bert")
    }


@pytest.fixture(scope="session")
def ranker(tiny_pairrm_dir: Path) -> Any:
    """The shared tiny DeBERTa PairRanker (PairRM layout, lengths 1224/412), fp32.

    fp32 is forced: the spec tests compare logits to 1e-5, and the automatic precision would pick
    bf16 on CPUs with AMX or AVX512-BF16.
    """
    from blender_core import PairRanker

    return PairRanker.from_pretrained(tiny_pairrm_dir, dtype="float32")


@pytest.fixture(scope="session")
def short_ranker(tiny_pairrm_dir: Path) -> Any:
    """The same weights with short lengths (16/12 tokens), so that truncation is exercised."""
    from blender_core import PairRanker

    return PairRanker.from_pretrained(
        tiny_pairrm_dir, dtype="float32", source_maxlength=16, candidate_maxlength=12
    )


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is ~30x faster than two."""
    with torch_threads(1):
        yield
