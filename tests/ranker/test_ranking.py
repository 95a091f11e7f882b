"""Ranking behaviour: batch independence, strategies, bubble, bad input, odd texts, BERT, async."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import torch

from blender_core import PairRanker, Ranking
from blender_core.aggregation import bubble_permutation

INSTRUCTIONS = [
    "Say hi",
    "Write a poem about the sea.",
    "What are the best exercises for beginners?",
]
CANDIDATES = [
    ["hi!", "go away", "hello, how can I help?", "bye"],
    ["The sea is blue.", "Waves and wind,\nthe sky is wide.", "I do not write poems."],
    [
        "Walking, swimming and push-ups.",
        "Eat well.",
        "Lift the heaviest weights at once.",
        "Sleep.",
        "Yoga",
    ],
]


def _with_budget(ranker: PairRanker, batch_tokens: int) -> PairRanker:
    return PairRanker(ranker.model, ranker.tokenizer, dtype=ranker.dtype, batch_tokens=batch_tokens)


@pytest.mark.parametrize("strategy", ["max_logits", "max_wins", "bubble"])
def test_ranking_independent_of_batching_and_neighbours(ranker, strategy) -> None:
    alone = [
        ranker.rank(i, c, strategy=strategy, seed=3)
        for i, c in zip(INSTRUCTIONS, CANDIDATES, strict=True)
    ]
    for batch_tokens in (1, 1_000_000):
        together = _with_budget(ranker, batch_tokens).rank_batch(
            INSTRUCTIONS, CANDIDATES, strategy=strategy, seed=3
        )
        for a, b in zip(alone, together, strict=True):
            assert a.order == b.order and a.ranks == b.ranks
            assert a.scores == pytest.approx(b.scores, abs=1e-5)
    # Other inputs in a different order and with a long neighbour change nothing.
    mixed = ranker.rank_batch(
        [INSTRUCTIONS[2], "x " * 200, INSTRUCTIONS[0]],
        [CANDIDATES[2], ["long " * 300, "short"], CANDIDATES[0]],
        strategy=strategy,
        seed=3,
    )
    assert mixed[0].scores == pytest.approx(alone[2].scores, abs=1e-5)
    assert mixed[2].scores == pytest.approx(alone[0].scores, abs=1e-5)


def test_max_logits_and_max_wins_formulas(ranker) -> None:
    ranking = ranker.rank(INSTRUCTIONS[2], CANDIDATES[2])
    m = ranking.matrix
    assert m is not None and ranking.strategy == "max_logits"
    n = len(m)
    assert all(m[i][i] == 0.0 for i in range(n))
    expected = [sum(m[i][j] - m[j][i] for j in range(n)) / n for i in range(n)]
    assert ranking.scores == pytest.approx(expected, abs=1e-9)
    assert ranking.ranks == tuple(1 + sum(s > x for s in expected) for x in expected)
    assert ranking.scores[ranking.order[0]] == max(ranking.scores)
    wins = ranker.rank(INSTRUCTIONS[2], CANDIDATES[2], strategy="max_wins")
    w = wins.matrix
    assert w is not None
    expected_wins = [
        sum(1 for j in range(n) if j != i and w[i][j] > 0)
        + sum(1 for j in range(n) if j != i and w[j][i] < 0)
        for i in range(n)
    ]
    assert list(wins.scores) == expected_wins
    assert wins.strategy == "max_wins"


def test_all_pairs_are_run(ranker) -> None:
    ranker.reset_stats()
    ranker.rank_batch(INSTRUCTIONS, CANDIDATES)
    assert ranker.stats.sequences == sum(len(c) * (len(c) - 1) for c in CANDIDATES)


def _count_rows(ranker: PairRanker, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    rows: list[int] = []
    backbone = ranker.model.pretrained_model
    original = backbone.forward

    def counting(*args: Any, input_ids: torch.Tensor, **kwargs: Any):  # type: ignore[no-untyped-def]
        rows.append(int(input_ids.shape[0]))
        return original(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(backbone, "forward", counting)
    return rows


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_bubble_makes_2n_minus_2_forward_passes(ranker, monkeypatch, n) -> None:
    rows = _count_rows(ranker, monkeypatch)
    cands = [f"answer number {k}" for k in range(n)]
    ranking = ranker.rank("Say something", cands, strategy="bubble", seed=0)
    assert sum(rows) == 2 * (n - 1)
    assert sorted(ranking.ranks) == list(range(1, n + 1))  # elimination order: no ties
    assert ranking.matrix is None and ranking.strategy == "bubble"


def test_bubble_follows_the_spec_and_the_seed(ranker) -> None:
    source, cands = INSTRUCTIONS[2], CANDIDATES[2]
    ranking = ranker.rank(source, cands, strategy="bubble", seed=11)
    assert ranker.rank(source, cands, strategy="bubble", seed=11) == ranking
    # Replay the pass by hand from the documented permutation.
    perm = bubble_permutation(len(cands), 11, key=[source, *cands])
    cur = perm[0]
    for nxt in perm[1:]:
        d = ranker.compare(source, cands[cur], cands[nxt])
        cur = cur if d > 0 else nxt
    assert ranking.best == cur
    perms = {tuple(bubble_permutation(len(cands), s, key=[source, *cands])) for s in range(10)}
    assert len(perms) > 1  # the seed matters


def test_one_candidate_needs_no_forward_pass(ranker, monkeypatch) -> None:
    rows = _count_rows(ranker, monkeypatch)
    for strategy in ("max_logits", "max_wins", "bubble"):
        ranking = ranker.rank("Say hi", ["only one"], strategy=strategy)
        assert ranking.order == (0,) and ranking.ranks == (1,) and ranking.best == 0
    assert rows == []


def test_different_sizes_and_determinism(ranker) -> None:
    lists = [["a"], ["b", "c"], CANDIDATES[2]]
    first = ranker.rank_batch(["x", "y", INSTRUCTIONS[2]], lists)
    assert [len(r) for r in first] == [1, 2, 5]
    assert ranker.rank_batch(["x", "y", INSTRUCTIONS[2]], lists) == first
    assert all(isinstance(r, Ranking) for r in first)


def test_input_is_appended_to_instruction(ranker) -> None:
    with_input = ranker.rank("Translate: ", ["bonjour", "hello"], input="good morning")
    joined = ranker.rank("Translate: good morning", ["bonjour", "hello"])
    assert with_input.scores == pytest.approx(joined.scores, abs=1e-6)


def test_compare_reward_and_conversations(ranker) -> None:
    a, b = "hi!", "go away"
    both = ranker.compare("Say hi", a, b)
    one = ranker.compare("Say hi", a, b, both_directions=False)
    back = ranker.compare("Say hi", b, a, both_directions=False)
    assert both == pytest.approx(one - back, abs=1e-5)
    assert ranker.compare_batch(["Say hi", "Say hi"], [a, b], [b, a]) == pytest.approx(
        [both, -both], abs=1e-5
    )
    rewards = ranker.reward("Say hi", [a, b], reference="hello")
    assert rewards == pytest.approx(
        [ranker.compare("Say hi", a, "hello"), ranker.compare("Say hi", b, "hello")], abs=1e-5
    )

    from blender_core.encoding import conversation_texts

    conv_a = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "USER", "content": "how are you?"},
        {"role": "ASSISTANT", "content": "fine"},
    ]
    conv_b = [
        conv_a[0],
        {"role": "assistant", "content": "go away"},
        conv_a[2],
        {"role": "assistant", "content": "bad"},
    ]
    source, ta, tb = conversation_texts(conv_a, conv_b)
    assert source == (
        "Finish the following coversation in each i-th turn by filling in <Response i> "
        "with your response."
        "USER: hi\nAssistant: <Response 1>\nUSER: how are you?\nAssistant: <Response 2>"
    )
    assert ta == "<Response 1>: hello\n<Response 2>: fine"
    assert ranker.compare_conversations(conv_a, conv_b) == pytest.approx(
        ranker.compare(source, ta, tb), abs=1e-6
    )
    with pytest.raises(ValueError, match="user turn 2 differs"):
        ranker.compare_conversations(
            conv_a, [*conv_b[:2], {"role": "user", "content": "other"}, conv_b[3]]
        )
    with pytest.raises(ValueError, match="alternate"):
        ranker.compare_conversations(conv_a[1:], conv_b[1:])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda r: r.rank("x", []), ValueError, "empty"),
        (lambda r: r.rank("x", ["a", 3]), TypeError, "candidate 1 of input 0"),
        (lambda r: r.rank("x", ["a", None]), TypeError, "NoneType"),
        (lambda r: r.rank(None, ["a", "b"]), TypeError, "instruction 0"),
        (lambda r: r.rank("x", "ab"), TypeError, "not a single string"),
        (lambda r: r.rank("x", None), TypeError, "candidates of input 0"),
        (lambda r: r.rank_batch(["x", "y"], [["a", "b"]]), ValueError, "same length"),
        (lambda r: r.rank_batch(["x"], [["a", "b"]], inputs=["1", "2"]), ValueError, "inputs"),
        (lambda r: r.rank("x", ["a", "b"], strategy="best"), ValueError, "unknown strategy"),
        (lambda r: r.compare_batch(["x"], ["a", "b"], ["c"]), ValueError, "same length"),
        (lambda r: r.compare("x", "a", None), TypeError, r"bs\[0\]"),
        (lambda r: r.reward("x", ["a"], None), TypeError, "reference"),
        (lambda r: r.reward("x", [], "ref"), ValueError, "empty"),
        (lambda r: r.compare_conversations("hi", []), TypeError, "conversation_a"),
    ],
)
def test_bad_input_gets_clear_errors(ranker, call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(ranker)


def test_odd_candidates_rank_fine(short_ranker) -> None:
    cands = [
        "<|candidate1|> is better",
        "[SEP] [CLS] <|source|>",
        "",
        "x" * 200_000,
        "<|CANDIDATE2|>",
        "fine",
    ]
    ranking = short_ranker.rank("Which is best? <|candidate|> [SEP]", cands)
    assert sorted(ranking.order) == list(range(len(cands)))
    assert all(math.isfinite(s) for s in ranking.scores)
    bubble = short_ranker.rank("Which?", cands, strategy="bubble", seed=1)
    assert len(bubble) == len(cands)


def test_huge_candidate_with_default_lengths(ranker) -> None:
    ranker.reset_stats()
    ranking = ranker.rank("Say hi", ["hi!", "y" * 200_000])
    assert all(math.isfinite(s) for s in ranking.scores)
    assert ranker.stats.real_tokens <= 2 * (1224 + 2 * 412)


def test_bert_backbone_works_the_same_way(tiny_dirs) -> None:
    bert = PairRanker.from_pretrained(
        tiny_dirs[("pairrm", "bert")], dtype="float32", source_maxlength=64, candidate_maxlength=48
    )
    alone = [bert.rank(i, c) for i, c in zip(INSTRUCTIONS, CANDIDATES, strict=True)]
    together = PairRanker(bert.model, bert.tokenizer, dtype="float32", batch_tokens=50).rank_batch(
        INSTRUCTIONS, CANDIDATES
    )
    for a, b in zip(alone, together, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)
    odd = bert.rank("Say HI <|SOURCE|>", ["<|candidate1|>", "[sep] [SEP]", "", "z" * 50_000])
    assert all(math.isfinite(s) for s in odd.scores)
    assert len(set(alone[0].scores)) > 1  # a real, non-constant model


async def test_async_matches_sync(ranker) -> None:
    expected = ranker.rank_batch(INSTRUCTIONS, CANDIDATES, strategy="max_wins")
    results = await asyncio.gather(
        *(
            ranker.arank(i, c, strategy="max_wins")
            for i, c in zip(INSTRUCTIONS, CANDIDATES, strict=True)
        ),
        ranker.arank_batch(INSTRUCTIONS, CANDIDATES, strategy="max_wins"),
    )
    for got_list in (list(results[:3]), results[3]):
        for got, want in zip(got_list, expected, strict=True):
            assert got.order == want.order and got.ranks == want.ranks
            assert got.scores == pytest.approx(want.scores, abs=1e-5)


def test_progress_bar_and_repr(ranker, capsys) -> None:
    ranker.rank_batch(INSTRUCTIONS, CANDIDATES, show_progress=True)
    assert "PairRanker" in capsys.readouterr().err
    ranker.rank_batch(INSTRUCTIONS, CANDIDATES)
    assert capsys.readouterr().err == ""
    assert "deberta-v2" in repr(ranker)
