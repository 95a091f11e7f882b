"""``python -m blender_core.cli`` runs the ``blender`` command line."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blender_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        check=False,
    )


def test_python_dash_m_lists_the_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("rank", "serve", "demo"):
        assert command in result.stdout
    assert "python -m blender_core.cli" in result.stdout


def test_python_dash_m_runs_a_command() -> None:
    result = _run("serve", "--example-config")
    assert result.returncode == 0, result.stderr
    assert "[server]" in result.stdout
    assert "[members." in result.stdout


def test_python_dash_m_unknown_command_fails_clearly() -> None:
    result = _run("no-such-command")
    assert result.returncode != 0
    assert "no-such-command" in result.stderr
