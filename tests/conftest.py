"""Suite-wide settings: offline, deterministic, and the shared tiny checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared MixInstruct data (``../shared/data`` beside the repository)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_pairrm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random PairRM checkpoint in the ``llm-blender/PairRM`` layout (DeBERTa backbone)."""
    from blender_core.testing import make_tiny_pairranker

    return make_tiny_pairranker(tmp_path_factory.mktemp("tiny_pairrm"), layout="pairrm")


@pytest.fixture(scope="session")
def tiny_genfuser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random T5 GenFuser checkpoint with its tokenizer."""
    from blender_core.testing import make_tiny_genfuser

    return make_tiny_genfuser(tmp_path_factory.mktemp("tiny_genfuser"))


@pytest.fixture
def judged_jsonl(tmp_path: Path) -> Path:
    """``d.jsonl``: one MixInstruct record whose two candidates have ``judge`` scores."""
    record = {
        "id": 1,
        "instruction": "q",
        "output": "ref",
        "candidates": [
            {"model": "a", "text": "x", "scores": {"judge": 1.0}},
            {"model": "b", "text": "yy", "scores": {"judge": 2.0}},
        ],
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path
