"""The SSE line splitter and the Retry-After parser of OpenAICompatibleGenerator."""

from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blender_core.generators.openai_compatible import _retry_after, _SSELines


def _split_all(data: bytes, cuts: list[int], cap: int = 10**6) -> list[str]:
    lines = _SSELines(cap)
    out: list[str] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += lines.feed(data[start:cut])
        start = cut
    out += lines.feed(data[start:])
    return out + lines.flush()


@given(
    st.lists(st.text(alphabet="ab: é{}", max_size=8), max_size=6),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.lists(st.integers(0, 80), max_size=6),
)
def test_lines_do_not_depend_on_how_the_bytes_arrive(
    lines: list[str], newline: str, cuts: list[int]
) -> None:
    data = "".join(line + newline for line in lines).encode()
    assert _split_all(data, [c for c in cuts if c <= len(data)]) == lines


def test_crlf_split_across_chunks_and_the_cap() -> None:
    assert _split_all(b"data: a\r\n\r\ndata: b\r\n", [8]) == ["data: a", "", "data: b"]
    assert _split_all(b"data: a\r\ndata: [DONE]", [3]) == ["data: a", "data: [DONE]"]
    lines = _SSELines(10)
    lines.feed(b"x" * 10)
    with pytest.raises(OverflowError):
        lines.feed(b"x")


def test_retry_after() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(" 0.5 ") == 0.5
    assert _retry_after("-4") == 0.0
    assert _retry_after(None) is None and _retry_after("") is None
    assert _retry_after("soon") is None and _retry_after("nan") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = _retry_after(when)
    assert wait is not None and 28 <= wait <= 31
    assert _retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
