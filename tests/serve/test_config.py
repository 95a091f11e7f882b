"""``blend.toml``: errors name the file and the dotted key; the example config is valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from serve_helpers import serve_cli
from typer.testing import CliRunner

from blender_core.cli import _register_commands, app
from blender_core.serve.config import (
    EXAMPLE_CONFIG,
    ConfigError,
    LLMFuserSpec,
    SmolLM2Member,
    load_config,
    parse_config,
)

BASE = """
[members.a]
type = "static"
text = "A."
[members.b]
type = "static"
text = "B."
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path="blend.toml")
    return info.value


def test_example_config_is_valid_and_offline() -> None:
    config = parse_config(EXAMPLE_CONFIG)
    assert config.server.host == "127.0.0.1"
    assert all(isinstance(m, SmolLM2Member) for m in config.members.values())
    assert config.ensembles["default"].fuser.type == "select"  # a 135M writer goes off-topic
    assert isinstance(config.ensembles["fused"].fuser, LLMFuserSpec)
    assert config.ensembles["default"].ranker.type == "consensus"
    assert config.rerankers["minilm"].type == "minilm"


def test_cli_prints_the_example_config() -> None:
    _register_commands()
    result = CliRunner().invoke(app, ["serve", "--example-config"])
    assert result.exit_code == 0
    assert result.output == EXAMPLE_CONFIG


def test_cli_bad_config_is_one_error_line(tmp_path: Path) -> None:
    path, result = serve_cli(BASE + '[ensembles.e]\nmembers = ["a", "zz"]\n', tmp_path)
    assert result.exit_code == 2
    assert f"{path}:9: ensembles.e.members[1]: unknown member 'zz'" in result.output


def test_cli_lists_each_problem_on_its_own_error_line(tmp_path: Path) -> None:
    path, result = serve_cli(
        BASE + "[server]\nmax_concurrency = 0\nretry_after = 0\n"
        '[ensembles.e]\nmembers = ["a", "zz"]\n',
        tmp_path,
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert lines == [
        f"error: {path}:9: server.max_concurrency: Input should be greater than or equal to 1",
        f"error: {path}:10: server.retry_after: Input should be greater than or equal to 1",
    ]


def test_errors_carry_the_line_of_the_key() -> None:
    text = BASE + '[ensembles.e]\nmembers = ["a"]\nranker = { type = "random", bogus = 1 }\n'
    error = _error(text)
    assert error.lines == (10,)
    assert str(error) == "blend.toml:10: ensembles.e.ranker.bogus: unknown key"


@pytest.mark.parametrize(
    "name", ["a/../../etc/passwd", "../up", "/abs", "a//b", "a/", ".hidden", "a/./b", "a b"]
)
def test_member_names_with_path_shapes_are_refused(name: str) -> None:
    error = _error(BASE + f'[members."{name}"]\ntype = "static"\ntext = "x"\n')
    assert f"members.{name!r}: a name is" in str(error)


def test_member_names_with_one_slash_are_kept() -> None:
    config = parse_config(BASE + '[members."org/model-1.5"]\ntype = "static"\ntext = "x"\n')
    assert "org/model-1.5" in config.members


def test_base_url_with_a_query_is_refused_with_the_reason() -> None:
    error = _error(
        BASE + '[members.c]\ntype = "openai"\nmodel = "m"\n'
        'base_url = "http://h/v1?api-version=2024-01-01"\n'
    )
    assert "blend.toml:11: members.c.base_url: a query string or fragment cannot be kept" in str(
        error
    )


def test_cli_unset_server_key_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    _, result = serve_cli(BASE, tmp_path, "--api-key-env", "NO_SUCH_KEY_VAR")
    assert result.exit_code == 2
    assert "NO_SUCH_KEY_VAR" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server\n", "blend.toml: invalid TOML"),
        (BASE + "[server]\nmax_concurrency = 0\n", "blend.toml: server.max_concurrency: "),
        (BASE + '[server]\nport = "x"\n', "blend.toml: server.port: "),
        (BASE + "[server]\nbogus = 1\n", "blend.toml: server.bogus: unknown key"),
        (
            BASE + '[members.c]\ntype = "wizard"\n',
            "blend.toml: members.c.type: unknown type 'wizard'",
        ),
        (BASE + '[members.c]\ntext = "x"\n', "blend.toml: members.c.type: missing 'type'"),
        (
            BASE + '[members.c]\ntype = "openai"\nbase_url = "http://x/v1"\n',
            "blend.toml: members.c.model: Field required",
        ),
        (
            BASE + '[members.c]\ntype = "openai"\nmodel = "m"\nbase_url = "ftp://x"\n',
            "blend.toml: members.c.base_url: ",
        ),
        (
            BASE
            + '[members.c]\ntype = "openai"\nmodel = "m"\nbase_url = "http://x"\ntimeout = -1\n',
            "blend.toml: members.c.timeout: Input should be greater than 0",
        ),
        (
            BASE + '[ensembles.e]\nmembers = ["a", "zz"]\n',
            "blend.toml: ensembles.e.members[1]: unknown member 'zz' (a, b)",
        ),
        (BASE + "[ensembles.e]\nmembers = []\n", "blend.toml: ensembles.e.members: "),
        (
            BASE + '[ensembles.a]\nmembers = ["b"]\n',
            "blend.toml: ensembles.a: 'a' is also a member",
        ),
        (
            BASE + '[ensembles.e]\nmembers = ["a"]\nfuser = { type = "llm", member = "w" }\n',
            "blend.toml: ensembles.e.fuser.member: unknown member 'w'",
        ),
        (
            BASE + '[ensembles.e]\nmembers = ["a"]\nranker = { type = "pairrm", bogus = 1 }\n',
            "blend.toml: ensembles.e.ranker.bogus: unknown key",
        ),
        (
            BASE + '[ensembles.e]\nmembers = ["a", "b"]\nmin_candidates = 3\n',
            "blend.toml: ensembles.e.min_candidates: 3 can never be met",
        ),
        (
            BASE + '[ensembles.e]\nmembers = ["a", "a"]\n',
            "blend.toml: ensembles.e.members[1]: member 'a' is listed twice",
        ),
        ("", "blend.toml: nothing to serve"),
    ],
)
def test_errors_name_the_file_and_the_key(text: str, expected: str) -> None:
    # "blend.toml:LINE: key: problem" where the key is written in the file
    pattern = re.escape(expected).replace(re.escape("blend.toml: "), r"blend\.toml(:\d+)?: ", 1)
    assert re.search(pattern, str(_error(text))), str(_error(text))


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "blend.toml"
    path.write_text(BASE + '[ensembles.e]\nmembers = ["a", "b"]\n')
    assert load_config(path).ensembles["e"].members == ["a", "b"]
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
    with pytest.raises(OSError):
        load_config(tmp_path / "missing.toml")


def test_several_problems_are_all_reported() -> None:
    error = _error(BASE + "[server]\nmax_concurrency = 0\nretry_after = 0\n")
    keys = [key for key, _ in error.problems]
    assert keys == ["server.max_concurrency", "server.retry_after"]
