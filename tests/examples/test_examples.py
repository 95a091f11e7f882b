"""Every script in examples/ runs offline, as a user runs it, and says what its ranker is.

Each runs in a fresh process from an empty working directory, with the hub off, so a script that
needs ``../shared`` (or any file outside the repository) fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

# What each script must print: its result, and what its ranker is (trained, MiniLM, or untrained).
EXPECTED = {
    "gpt_rank_smollm2.py": ["NOTE: the judge is SmolLM2-135M-Instruct", "judge calls in"],
    "langchain_agent_middleware.py": ["[chosen:"],
    "langchain_lcel_blend.py": ["ChatBlender batch:", "Blender ainvoke:"],
    "langchain_parallel_rank_fuse.py": ["ranked:", "best alone:"],
    "langchain_rag_rerank.py": ["Ranker: MiniLM relevance", "rerank():", "acompress_documents()"],
    "llamaindex_rag_rerank.py": ["Ranker: MiniLM relevance", "same order: True"],
    "llamaindex_router_fusion.py": ["Ranker: MiniLM consensus", "Answer:"],
    "llamaindex_tool_rerank.py": [
        "Ranker: MiniLM relevance",
        "Tools after reranking",
        "get_weather({'city': 'Lyon'}) -> Sunny in Lyon",
    ],
    "trl_judge.py": ["NOTE: the tiny ranker is untrained", "preferred index:"],
}


def test_every_example_is_covered() -> None:
    assert set(EXAMPLES) == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_offline_from_anywhere(name: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for marker in EXPECTED[name]:
        assert marker in proc.stdout, f"{name}: {marker!r} not in its output:\n{proc.stdout}"
    # Each says why its result is what it is, and third-party load bars stay off.
    assert "Why" in proc.stdout or "What this shows" in proc.stdout, proc.stdout
    assert "Loading weights" not in proc.stderr, proc.stderr[-2000:]


def test_tiny_ranker_is_announced_as_untrained(tmp_path: Path) -> None:
    """``--ranker tiny`` prints the NOTE before anything is ranked (checked on one script)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import langchain_rag_rerank
    finally:
        sys.path.pop(0)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), langchain_rag_rerank.make_ranker("tiny") as ranker:
        assert Path(ranker).is_dir()
    assert "NOTE: tiny *untrained* PairRM checkpoint" in out.getvalue()
