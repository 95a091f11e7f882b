"""``blender ... --help`` at 80 columns: nothing cut, every option documented."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from blender_core.cli import _register_commands, app

_register_commands()
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _help(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_listed_in_full() -> None:
    assert {"demo", "eval", "rank", "train-fuser", "train-ranker"} <= set(COMMANDS)
    text = _help([], 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    listed = text.split("Commands:", 1)[1]
    assert "..." not in listed and "…" not in listed  # short helps not cut
    for name in COMMANDS:
        assert re.search(rf"^  {re.escape(name)} ", text, re.MULTILINE), name


@pytest.mark.parametrize("name", COMMANDS)
def test_help_fits_80_columns_and_documents_every_option(name: str) -> None:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    text = _help([name], 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    for param in command.params:
        if param.param_type_name != "option":
            continue
        assert (param.help or "").strip(), f"{name} {param.opts[0]} has no help"
        for opt in [*param.opts, *param.secondary_opts]:  # the names in full, not cut
            assert re.search(rf"(^|[ ,/]){re.escape(opt)}([ ,=]|$)", text, re.MULTILINE), opt
