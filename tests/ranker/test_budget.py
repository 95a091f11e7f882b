"""The batch budget tuned per device."""

from __future__ import annotations

import pytest
import torch

from blender_core import PairRanker
from blender_core.devices import CPU_MAX_BLOCK_BYTES, choose_batch_tokens

SHAPE = {"hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "max_pair_length": 2048}


def test_forced_budget_wins() -> None:
    budget = choose_batch_tokens(777, torch.device("cpu"), torch.float32, **SHAPE)
    assert budget.tokens == 777 and budget.reason == "forced"
    with pytest.raises(ValueError, match="batch_tokens"):
        choose_batch_tokens(0, torch.device("cpu"), torch.float32, **SHAPE)


def test_cpu_budget_keeps_the_ffn_block_under_the_mmap_threshold() -> None:
    large32 = choose_batch_tokens(None, torch.device("cpu"), torch.float32, **SHAPE).tokens
    large16 = choose_batch_tokens(None, torch.device("cpu"), torch.bfloat16, **SHAPE).tokens
    mid = dict(SHAPE, hidden_size=384, intermediate_size=1536)
    mid32 = choose_batch_tokens(None, torch.device("cpu"), torch.float32, **mid).tokens
    assert (large32, large16, mid32) == (1536, 3584, 5120)
    for tokens, inter, size in ((large32, 4096, 4), (large16, 4096, 2), (mid32, 1536, 4)):
        assert tokens * inter * size <= CPU_MAX_BLOCK_BYTES
    tiny = dict(SHAPE, intermediate_size=64)
    assert choose_batch_tokens(None, torch.device("cpu"), torch.float32, **tiny).tokens == 16384


def test_cuda_budget_follows_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    free = {"bytes": 80 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 2**40))
    big = choose_batch_tokens(None, torch.device("cuda"), torch.bfloat16, **SHAPE)
    free["bytes"] = 2 * 2**30
    small = choose_batch_tokens(None, torch.device("cuda"), torch.bfloat16, **SHAPE)
    assert big.tokens == 131072 and "cuda" in big.reason
    assert 4096 <= small.tokens < big.tokens and small.tokens % 1024 == 0


def test_ranker_reports_its_budget(ranker) -> None:
    auto = PairRanker(ranker.model, ranker.tokenizer, dtype="float32")
    assert auto.batch_tokens == auto.budget.tokens and "cpu" in auto.budget.reason
    assert "batch_tokens=" in repr(auto) and auto.budget.reason in repr(auto)
    forced = PairRanker(ranker.model, ranker.tokenizer, dtype="float32", batch_tokens=512)
    assert forced.batch_tokens == 512 and forced.budget.reason == "forced"
