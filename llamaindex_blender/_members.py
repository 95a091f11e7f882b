"""Call several members (LLMs, synthesizers) at once with the core runner; collect answers,
failures, generation latencies and queueing by member name (the core's ``MemberResults``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from blender_core.members import MemberResults, arun_members, run_members

__all__ = ["MemberResults", "acall_members", "call_members"]

T = TypeVar("T")
M = TypeVar("M")


def call_members(
    names: Sequence[str],
    members: Sequence[M],
    call: Callable[[M], T],
    *,
    timeout: float | None,
) -> MemberResults[T]:
    """Run ``call(member)`` for every member in worker threads, concurrently
    (:func:`blender_core.members.run_members`).

    Each call runs in a copy of the caller's context, so members' instrumentation spans nest
    under the caller's span. A member still running after ``timeout`` seconds is a timeout (its
    thread is left to finish in the background; Python cannot stop it); a member's own
    ``TimeoutError`` is an error.
    """
    calls = {name: partial(call, member) for name, member in zip(names, members, strict=True)}
    return MemberResults.from_outcomes(run_members(calls, timeout=timeout))


async def acall_members(
    names: Sequence[str],
    members: Sequence[M],
    call: Callable[[M], Awaitable[T]],
    *,
    timeout: float | None,
) -> MemberResults[T]:
    """Await ``call(member)`` for every member concurrently, each bounded by ``timeout``."""

    def bind(member: M) -> Callable[[], Awaitable[T]]:
        async def one() -> T:
            return await call(member)

        return one

    calls = {name: bind(member) for name, member in zip(names, members, strict=True)}
    return MemberResults.from_outcomes(await arun_members(calls, timeout=timeout))
