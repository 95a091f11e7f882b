"""Helpers the test packages share (their conftests and fake servers import them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

__all__ = ["torch_threads", "write_endless"]


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
