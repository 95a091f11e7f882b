"""Issue 13 (files, CLI, loading): one-line CLI errors, safe readers, atomic outputs, configs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blender_core.cli import _register_commands, app
from blender_core.data import MixInstructError, read_mixinstruct, write_mixinstruct
from blender_core.encoding import precut
from blender_core.evaluation.cache import ScoreCache, model_key
from blender_core.modeling import CheckpointError, PairRankerConfig, validate_config_dict
from blender_core.ranking import check_pairwise_size

GOOD = {"id": "r1", "instruction": "Say hi", "candidates": [{"model": "a", "text": "hi"}]}


def cli(*args: str) -> Any:
    _register_commands()
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Malformed MixInstruct files and the message each must give (file:line: problem)."""
    good = json.dumps(GOOD)
    cases = {
        "json": (good + "\n{not json\n").encode(),
        "utf8": (good + "\n").encode() + b'{"id": "\xff\xfe"}\n',
        "deep": (good + "\n" + "[" * 200_000 + "]" * 200_000 + "\n").encode(),
        "bigint": (good + "\n" + '{"id": ' + "9" * 5000 + "}\n").encode(),
        "field": (good + "\n" + json.dumps({"instruction": 3, "candidates": []}) + "\n").encode(),
    }
    expected = {
        "json": "invalid JSON",
        "utf8": "not UTF-8",
        "deep": "nested too deeply",
        "bigint": "invalid JSON",
        "field": "field 'instruction' must be a string",
    }
    out = {}
    for name, data in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(data)
        out[name] = (path, expected[name])
    return out


def test_reader_names_file_and_line(bad_files: dict[str, tuple[Path, str]]) -> None:
    for name, (path, message) in bad_files.items():
        with pytest.raises(MixInstructError, match=f"{path.name}:2: .*{message}"):
            read_mixinstruct(path)
        assert name


@pytest.mark.parametrize("command", ["eval", "rank"])
def test_cli_input_errors_are_one_line_exit_2(
    command: str, bad_files: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    for path, message in bad_files.values():
        # rank checks a hub model's cache before reading any input (offline PairRM fails first,
        # in seconds): an offline ranker isolates the input errors this test is about.
        extra = ["--out", str(tmp_path / "o")] if command == "eval" else ["-m", "consensus"]
        result = cli(command, str(path), *extra)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines == [lines[0]] and lines[0].startswith(f"error: {path.name}:2: ")
        assert message in lines[0] and "Traceback" not in result.output


def test_output_location_checked_before_the_work(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(GOOD) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli(
        "eval", str(data), "--rankers", "longest", "--metrics", "judge", "--out", str(blocker)
    )
    assert result.exit_code == 2 and "exists and is not a folder" in result.output
    result = cli("rank", str(data), "--out", str(tmp_path / "missing" / "r.jsonl"), "-m", "nowhere")
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_eval_results_are_strict_json_and_written_atomically(
    tmp_path: Path, judged_jsonl: Path
) -> None:
    out = tmp_path / "new" / "deeper"
    result = cli(
        "eval",
        str(judged_jsonl),
        "-r",
        "longest,random",
        "-m",
        "judge",
        "-o",
        str(out),
        "--no-plots",
    )
    assert result.exit_code == 0, result.output
    text = (out / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in results.json"))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_write_mixinstruct_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_mixinstruct(target, [GOOD])
    before = target.read_bytes()
    with pytest.raises(MixInstructError):
        write_mixinstruct(target, [GOOD, {"instruction": "no candidates"}])
    assert target.read_bytes() == before  # the failed write left the old file whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_cache_skips_damaged_lines_and_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.jsonl"
    cache = ScoreCache(path)
    cache.update({"k1": 0.5, "nan": math.nan})
    with path.open("a") as handle:
        handle.write('{"key": "k2", "sco')  # cut by a kill
    with caplog.at_level("WARNING"):
        again = ScoreCache(path)
    assert again.skipped == 1 and "cache.jsonl:3: skipped a damaged" in caplog.text
    assert again.get("k1") == 0.5 and math.isnan(again.get("nan") or 0.0)
    again.update({"k3": 1.0})  # starts on a fresh line
    third = ScoreCache(path)
    assert third.get("k3") == 1.0 and third.skipped == 1
    assert "NaN" not in path.read_text()


def test_local_model_keys_tell_same_named_folders_apart(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "model", tmp_path / "b" / "model"
    for folder, weights in ((one, b"1" * 10), (two, b"2" * 10)):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(weights)
    assert model_key(one) != model_key(two)
    assert model_key(one).startswith("local:model:")
    copy = tmp_path / "c" / "model"
    copy.mkdir(parents=True)
    for f in one.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert model_key(copy) == model_key(one)  # moving a folder keeps its cache
    assert model_key("org/hub-model") == "org/hub-model"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"n_tasks": 100_000_000}, "n_tasks=100000000 is outside"),
        ({"n_tasks": "1"}, "n_tasks must be an integer, got str"),
        ({"n_tasks": 1.5}, "n_tasks must be an integer, got float"),
        ({"source_maxlength": True}, "source_maxlength must be an integer, got bool"),
        ({"drop_out": "high"}, "drop_out must be a number"),
        ({"drop_out": 3}, r"drop_out=3 is outside \[0, 1\)"),
        ({"hidden_size": 10**9}, "hidden_size=1000000000 is outside"),
        (
            {"vocab_size": 1 << 24, "hidden_size": 1 << 16},
            "vocab_size x hidden_size = .* too large",
        ),
        ({"model_name": 7}, "model_name must be a string"),
    ],
)
def test_config_validation_names_file_and_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(CheckpointError, match=f"ranker_config.json: {message}"):
        validate_config_dict(data, "ranker_config.json")


def test_absurd_checkpoint_config_fails_before_allocating(tmp_path: Path) -> None:
    from blender_core.testing import make_tiny_pairranker

    path = make_tiny_pairranker(tmp_path / "ckpt", layout="pairrm")
    config = json.loads((path / "config.json").read_text())
    config["n_tasks"] = 100_000_000
    for name in ("config.json", "ranker_config.json"):
        if (path / name).is_file():
            (path / name).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: n_tasks=100000000 is outside"):
        PairRankerConfig.from_pretrained(path)
    result = cli("rank", str(tmp_path / "d.jsonl"), "-m", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_precut_is_exact_for_texts_that_fit() -> None:
    text = "word " * 30  # 150 characters, under the bound of (10 + 1) * 16
    assert precut(text, 10, 16) is text  # short: the same object
    long = "x" * 10_000 + " " * 50_000 + "y" * 10_000
    cut = precut(long, 10, 16)
    assert len(cut.replace(" ", "")) == (10 + 1) * 16 and long.startswith(cut)


def test_pairwise_strategies_limit_n(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="600 candidates need 359,400 pair comparisons"):
        check_pairwise_size([["a"] * 600], strategy="max_logits")
    with caplog.at_level("WARNING"):
        check_pairwise_size([["a"] * 100], strategy="max_logits")
    assert "9900 pair comparisons" in caplog.text


@pytest.mark.parametrize(
    ("command", "model"),
    [(["train-ranker", "--metric", "judge"], "--backbone"), (["train-fuser"], "--base")],
)
def test_train_output_folder_checked_first(command: list[str], model: str, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("{broken\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli(*command, str(data), model, str(tmp_path / "nowhere"), "--out", str(blocker))
    assert result.exit_code == 2, result.output
    assert "exists and is not a folder" in result.output and "Traceback" not in result.output
    result = cli(
        *command, str(data), model, str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
