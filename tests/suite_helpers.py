"""Helpers the test packages share (their conftests and fake servers import them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from blender_core.rankers.baselines import LongestRanker
from blender_core.ranking import Ranking

__all__ = [
    "LengthRanker",
    "cli_args",
    "command_group",
    "json_values",
    "judged_pair",
    "tool_call_message",
    "torch_threads",
    "write_endless",
]


class LengthRanker(LongestRanker):
    """The longest answer first (the library's ``LongestRanker``), recording what it was asked:
    ``calls`` holds ``(instruction, candidates)`` per ranked list, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        self.calls += [(i, list(c)) for i, c in zip(instructions, candidate_lists, strict=True)]
        return super().rank_batch(instructions, candidate_lists)


def cli_args(command: str, *arguments: object, **options: object) -> list[str]:
    """The words of ``blender COMMAND ARGUMENTS... --OPTION VALUE...`` for ``CliRunner().invoke``.

    An option's keyword spells its name with ``_`` for ``-`` (``batch_tokens=256``:
    ``--batch-tokens 256``); ``True`` gives the flag alone (``no_progress=True``:
    ``--no-progress``), ``None`` or ``False`` leaves the option out, and a list or tuple gives it
    once per value. Arguments and values are written with ``str`` (paths, numbers).
    """
    words = [command, *map(str, arguments)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is not None and value is not False:
            values = value if isinstance(value, (list, tuple)) else [value]
            for item in values:
                words += [flag, str(item)]
    return words


def command_group(name: str, command: Any) -> Any:
    """A Typer app with one ``blender`` command alone, checked to be registered in the real app
    (a group, so that ``CliRunner().invoke(group, [name, ...])`` keeps the name: a one-command
    app drops it)."""
    import typer

    from blender_core.cli import app

    assert name in [c.name for c in app.registered_commands]
    group = typer.Typer()
    group.command(name)(command)
    group.callback()(lambda: None)
    return group


def json_values(*, allow_nan: bool, max_leaves: int) -> Any:
    """A hypothesis strategy of any JSON value (null, booleans, numbers, short strings, and
    lists and objects of them); floats NaN too with ``allow_nan``."""
    from hypothesis import strategies as st

    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=allow_nan)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def judged_pair(prompt: str) -> tuple[str, str]:
    """The candidates A and B that a GPT-Rank judge prompt shows, unfenced; fails the test when
    the prompt lacks its ``Candidate A:``/``Candidate B:`` slots before the question."""
    import re

    from blender_core.fencing import unfence

    assert re.search(r"Candidate A:\n.*?\n\nCandidate B:\n.*?\n\nGiven", prompt, re.S), prompt
    quoted = unfence(prompt)
    return quoted["candidate A"], quoted["candidate B"]


def tool_call_message(calls: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """An OpenAI chat-completions assistant message that calls tools: ``calls`` as
    ``(id, name, arguments)``, the arguments as JSON text (as on the wire: not checked here)."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in calls
        ],
    }


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op torch threads; the previous count comes back after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_endless(wfile: BinaryIO, chunk: bytes, *, prefix: bytes = b"") -> None:
    """A fake server's body without end: ``prefix``, then ``chunk`` 100,000 times (~6 GB of
    64 KiB chunks) or until the client stops reading and the connection breaks."""
    try:
        wfile.write(prefix)
        for _ in range(100_000):
            wfile.write(chunk)
    except OSError:
        pass
