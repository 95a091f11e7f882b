"""The README's set-up command is the one CI runs (.ci/run mirrors it exactly)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _setup_command(text: str) -> str:
    block = re.search(r"## Set up\n.*?```bash\n(.*?)\n```", text, re.DOTALL)
    assert block is not None, "README has no set-up command block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, "the set-up is one copy-paste command"
    return lines[0]


def test_ci_runs_the_readme_setup_command() -> None:
    ci = ROOT / ".ci" / "run"
    if not ci.is_file():
        pytest.skip(".ci/run not in this checkout")
    command = _setup_command((ROOT / "README.md").read_text(encoding="utf-8"))
    assert command in ci.read_text(encoding="utf-8").splitlines()


def test_setup_picks_the_cpu_build_without_a_gpu() -> None:
    command = _setup_command((ROOT / "README.md").read_text(encoding="utf-8"))
    assert command.startswith("python3 -m venv .venv && ")
    assert "nvidia-smi" in command and "download.pytorch.org/whl/cpu" in command
