"""The lazy Hugging Face model the metrics and baseline rankers share (blender_core.hf_models)."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blender_core.encoding import chars_per_token_bound
from blender_core.evaluation.bartscore import BARTScoreMetric
from blender_core.evaluation.bleurt import BLEURTMetric
from blender_core.hf_models import LazyModel, load_pretrained
from blender_core.rankers.consensus import ConsensusRanker
from blender_core.rankers.mlm_scoring import MLMScoringRanker
from blender_core.rankers.simcls import SimCLSRanker


class _Counted(LazyModel[int]):
    """A model whose load is counted, slow enough for threads to race, and may fail once."""

    def __init__(self, *, fail_first: bool = False) -> None:
        super().__init__(device="cpu", batch_size=2)
        self.loads = 0
        self.fail_first = fail_first

    def _load_model(self) -> int:
        self.loads += 1
        if self.fail_first and self.loads == 1:
            raise OSError("the hub did not answer")
        threading.Event().wait(0.05)
        return self.loads


def test_a_lazy_model_loads_once_across_threads() -> None:
    model = _Counted()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(model.load())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert model.loads == 1
    assert results == [model] * 8  # load() returns the object itself
    assert model._loaded.get() == 1


def test_a_failed_load_is_tried_again() -> None:
    model = _Counted(fail_first=True)
    with pytest.raises(OSError, match="did not answer"):
        model.load()
    assert model.load() is model
    assert model.loads == 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SimCLSRanker(batch_size=0), "batch_size must be >= 1, got 0"),
        (lambda: MLMScoringRanker(batch_size=-1), "batch_size must be >= 1, got -1"),
        (lambda: BLEURTMetric("x", batch_size=0), "batch_size must be >= 1, got 0"),
        (lambda: BARTScoreMetric("x", max_length=3), "max_length must be >= 4, got 3"),
        (lambda: ConsensusRanker(max_length=1), "max_length must be >= 2, got 1"),
    ],
)
def test_settings_are_checked_at_construction(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "wrapper", [BARTScoreMetric, MLMScoringRanker, ConsensusRanker, SimCLSRanker]
)
def test_wrappers_load_nothing_until_used(wrapper: Callable[..., Any], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    built = wrapper(missing, device="cpu")  # a load here would raise
    with pytest.raises(OSError):
        built.load()


def test_a_loaded_ranker_pickles_unloaded_and_loads_again(tiny_mlm_dir: Path) -> None:
    ranker = MLMScoringRanker(tiny_mlm_dir, device="cpu", head="mlm").load()
    copy = pickle.loads(pickle.dumps(ranker))
    assert not copy._loaded.loaded  # the weights do not travel
    cands = ["the cat sat on the mat", "hello"]
    assert copy.pseudo_log_likelihoods(["Describe a cat."] * 2, cands) == pytest.approx(
        ranker.pseudo_log_likelihoods(["Describe a cat."] * 2, cands)
    )


def test_load_pretrained_checks_the_tokenizer_before_the_weights(tiny_mlm_dir: Path) -> None:
    from transformers import AutoModelForMaskedLM

    seen: list[Any] = []
    loaded = load_pretrained(
        AutoModelForMaskedLM, str(tiny_mlm_dir), device="cpu", check_tokenizer=seen.append
    )
    assert seen == [loaded.tokenizer]
    assert str(loaded.device) == "cpu" and not loaded.model.training
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert "missing_keys" in loaded.loading_info
    assert loaded.chars_per_token == chars_per_token_bound(loaded.tokenizer)

    class NoWeights:
        @staticmethod
        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the weights loaded after the tokenizer check failed")

    def refuse(tokenizer: Any) -> None:
        raise ValueError("not a masked LM tokenizer")

    with pytest.raises(ValueError, match="not a masked LM"):
        load_pretrained(NoWeights, str(tiny_mlm_dir), device="cpu", check_tokenizer=refuse)
