"""Fuzz tests (hypothesis): the MixInstruct reader, the CLI inputs and the PairRanker public API.

Whatever the bytes, the reader raises only :class:`MixInstructError`, the CLI answers with exit 0
or one ``error:`` line and exit 2 (never a traceback, never a half-written output), and the
PairRanker either ranks or raises a clear ``TypeError``/``ValueError``. Example counts are small so
that the suite stays fast; every case is bounded by pytest-timeout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suite_helpers import json_values
from typer.testing import CliRunner

from blender_core.cli import _register_commands, app
from blender_core.data import MixInstructError, read_mixinstruct

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

JSON_VALUES = json_values(allow_nan=True, max_leaves=12)
candidate = st.fixed_dictionaries(
    {"text": JSON_VALUES | st.text(max_size=30)},
    optional={"model": JSON_VALUES, "scores": JSON_VALUES, "decoding_method": JSON_VALUES},
)
record = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_VALUES,
        "instruction": st.text(max_size=30) | JSON_VALUES,
        "input": JSON_VALUES,
        "output": JSON_VALUES,
        "candidates": st.lists(candidate, max_size=3) | JSON_VALUES,
    },
)
line = (
    record.map(lambda r: json.dumps(r).encode())
    | st.binary(max_size=60)
    | st.sampled_from([b"[" * 50_000, b'{"id": ' + b"1" * 5000 + b"}", b"\xef\xbb\xbf{}", b"NaN"])
)
files = st.lists(line, min_size=1, max_size=5).map(lambda lines: b"\n".join(lines) + b"\n")


@FUZZ
@given(data=files)
def test_reader_raises_only_mixinstruct_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        records = read_mixinstruct(path)
    except MixInstructError as exc:
        assert str(exc).startswith("fuzz.jsonl:")
    else:
        for rec in records:
            assert isinstance(rec.id, str) and isinstance(rec.instruction, str)
            assert all(isinstance(t, str) for t in rec.texts)


def _invoke(*args: str) -> Any:
    _register_commands()
    return CliRunner().invoke(app, list(args))


def _assert_clean_exit(result: Any) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [x for x in result.output.splitlines() if x.startswith("error")]
        assert len(errors) == 1 or "Usage:" in result.output, result.output


@FUZZ
@given(data=files)
def test_eval_cli_on_fuzzed_input(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    out = tmp_path / "out"
    result = _invoke(
        "eval", str(path), "-r", "longest,random", "-m", "judge", "-o", str(out), "--no-plots"
    )
    _assert_clean_exit(result)
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")] if out.exists() else []
    assert leftovers == []
    if result.exit_code == 0:
        payload = (out / "results.json").read_text()
        json.loads(payload, parse_constant=lambda c: pytest.fail(f"bare {c}"))


@pytest.fixture(scope="module")
def tiny_ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from blender_core.testing import make_tiny_pairranker

    return make_tiny_pairranker(tmp_path_factory.mktemp("fuzz_ranker"), layout="pairrm")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=files, use_out=st.booleans())
def test_rank_cli_on_fuzzed_input(
    tmp_path: Path, tiny_ranker_dir: Path, data: bytes, use_out: bool
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    out = tmp_path / "ranked.jsonl"
    out.unlink(missing_ok=True)
    extra = ["--out", str(out)] if use_out else []
    result = _invoke("rank", str(path), "-m", str(tiny_ranker_dir), "--no-progress", *extra)
    _assert_clean_exit(result)
    if result.exit_code == 0 and use_out:
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(rows) == len(read_mixinstruct(path))
    if result.exit_code == 2 and use_out:
        assert not out.exists()


@pytest.fixture(scope="module")
def short_ranker(tiny_ranker_dir: Path) -> Any:
    from blender_core import PairRanker

    return PairRanker.from_pretrained(tiny_ranker_dir, source_maxlength=16, candidate_maxlength=12)


texts = st.text(alphabet=st.sampled_from(list("ab [SEP]<|>/\n")) | st.characters(), max_size=30)
anything = texts | st.none() | st.integers() | st.lists(texts, max_size=2)


@settings(max_examples=30, deadline=None)
@given(
    instruction=anything,
    candidates=st.lists(texts, max_size=4) | anything,
    strategy=st.sampled_from(["max_logits", "max_wins", "bubble", "nope"]),
)
def test_pair_ranker_api_ranks_or_refuses_clearly(
    short_ranker: Any, instruction: Any, candidates: Any, strategy: str
) -> None:
    try:
        ranking = short_ranker.rank(instruction, candidates, strategy=strategy)
    except (TypeError, ValueError) as exc:
        assert str(exc)
    else:
        assert sorted(ranking.order) == list(range(len(candidates)))
        assert len(ranking.scores) == len(candidates)


# Lone surrogates cannot be tokenised at all (the tokenizer refuses them); this property is about
# the pre-cut, so it draws encodable text only.
encodable = st.text(
    alphabet=st.sampled_from(list("ab [SEP]<|>/\n")) | st.characters(exclude_categories=("Cs",)),
    max_size=30,
)


@settings(max_examples=20, deadline=None)
@given(encodable, st.integers(min_value=0, max_value=4000))
def test_pair_ranker_precut_changes_nothing(short_ranker: Any, text: str, pad: int) -> None:
    encoder = short_ranker.encoder
    long = text + " " * pad + "tail " * pad
    ids = encoder.tokenize([long])[0]
    full = encoder.tokenizer("<|source|>" + encoder.sanitize(long), add_special_tokens=False)[
        "input_ids"
    ][1 : 1 + encoder.max_text_ids]
    encoder.clear_cache()
    assert ids == full
