"""load_ranker and load_fuser: specs, objects, checkpoints and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pipeline_fakes import FakeGenerator, LengthRanker, RecordingFuser

from blender_core.loading import load_fuser, load_ranker
from blender_core.rankers.consensus import ConsensusRanker
from blender_core.rankers.random import RandomRanker


def test_load_ranker_names_and_objects() -> None:
    for spec in (None, "consensus", " Consensus "):
        ranker = load_ranker(spec, device="cpu")
        assert isinstance(ranker, ConsensusRanker)
        assert ranker.device == "cpu" and not ranker._loaded.loaded  # lazy: nothing loaded
    assert isinstance(load_ranker("random"), RandomRanker)


@pytest.mark.parametrize(
    ("load", "own", "blank", "not_a_spec", "named"),
    [
        (load_ranker, LengthRanker(), "  ", 42, "PairRanker checkpoint"),
        (load_fuser, RecordingFuser(), "", 3.5, "GenFuser checkpoint"),
    ],
    ids=["ranker", "fuser"],
)
def test_loaders_pass_objects_and_refuse_bad_specs(
    load: Any, own: Any, blank: str, not_a_spec: Any, named: str
) -> None:
    assert load(own) is own
    with pytest.raises(ValueError, match="empty"):
        load(blank)
    with pytest.raises(TypeError, match=named):
        load(not_a_spec)


def test_load_ranker_checkpoint_path(tiny_pairrm_dir: Path) -> None:
    from blender_core.pair_ranker import PairRanker

    ranker = load_ranker(str(tiny_pairrm_dir), device="cpu")
    assert isinstance(ranker, PairRanker)
    assert len(ranker.rank("q", ["a", "b", "c"])) == 3


def test_load_ranker_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises((OSError, ValueError), match="nope"):
        load_ranker(str(tmp_path / "nope"))


def test_load_fuser_names_objects_and_generators() -> None:
    from blender_core.fusion.llm_fuser import LLMFuser
    from blender_core.fusion.select import SelectFuser

    assert isinstance(load_fuser(None), SelectFuser)
    assert isinstance(load_fuser("select"), SelectFuser)
    generator = FakeGenerator("writer", "fused!")
    fuser = load_fuser(generator)
    assert isinstance(fuser, LLMFuser) and fuser.generator is generator
    assert fuser.fuse("q", ["a", "b"]) == "fused!"


def test_load_fuser_checkpoint_path(tiny_genfuser_dir: Path) -> None:
    from blender_core.fusion.gen_fuser import GenFuser

    fuser = load_fuser(str(tiny_genfuser_dir), device="cpu")
    assert isinstance(fuser, GenFuser)
    assert isinstance(fuser.fuse("Say hi", ["hi", "hello"], max_new_tokens=4), str)
