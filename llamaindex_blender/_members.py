"""Call several members (LLMs, synthesizers) at once; collect answers, failures, latencies."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from blender_core.blend import ModelFailure

__all__ = ["MemberResults", "acall_members", "call_members"]

T = TypeVar("T")
M = TypeVar("M")


@dataclass
class MemberResults(Generic[T]):
    """What each member returned, in member order; failures and latencies by member name."""

    outputs: dict[str, T] = field(default_factory=dict)
    failures: list[ModelFailure] = field(default_factory=list)
    latencies: dict[str, float] = field(default_factory=dict)


def _failure(
    name: str, error: BaseException | None, *, timeout: float | None = None
) -> ModelFailure:
    from blender_core.blend import ModelFailure

    if error is None or isinstance(error, TimeoutError):
        return ModelFailure(
            model=name, kind="timeout", message=f"no answer within {timeout} s", exception=error
        )
    return ModelFailure(
        model=name, kind="error", message=f"{type(error).__name__}: {error}", exception=error
    )


def call_members(
    names: Sequence[str],
    members: Sequence[M],
    call: Callable[[M], T],
    *,
    timeout: float | None,
    max_workers: int | None = None,
) -> MemberResults[T]:
    """Run ``call(member)`` for every member in a thread pool, concurrently.

    Each call runs in a copy of the caller's context, so members' instrumentation spans nest
    under the caller's span. A member still running after ``timeout`` seconds is reported as a
    timeout (its thread is left to finish in the background; Python cannot stop it).
    """
    results: MemberResults[T] = MemberResults()
    started: dict[str, float] = {}
    ended: dict[str, float] = {}

    def timed(name: str, member: M) -> T:
        started[name] = time.perf_counter()
        try:
            return call(member)
        finally:
            ended[name] = time.perf_counter()

    t0 = time.perf_counter()
    executor = ThreadPoolExecutor(
        max_workers=max_workers or len(members), thread_name_prefix="blender-member"
    )
    try:
        futures = [
            executor.submit(contextvars.copy_context().run, timed, name, member)
            for name, member in zip(names, members, strict=True)
        ]
        done, _ = wait(futures, timeout=timeout)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    for name, future in zip(names, futures, strict=True):
        if future in done:
            error = future.exception()
            if error is None:
                results.outputs[name] = future.result()
            else:
                results.failures.append(_failure(name, error))
            results.latencies[name] = ended.get(name, time.perf_counter()) - started.get(name, t0)
        else:
            future.cancel()
            results.failures.append(_failure(name, None, timeout=timeout))
            results.latencies[name] = time.perf_counter() - started.get(name, t0)
    return results


async def acall_members(
    names: Sequence[str],
    members: Sequence[M],
    call: Callable[[M], Awaitable[T]],
    *,
    timeout: float | None,
) -> MemberResults[T]:
    """Await ``call(member)`` for every member concurrently, each bounded by ``timeout``."""

    async def timed(member: M) -> tuple[T | None, BaseException | None, float]:
        start = time.perf_counter()
        try:
            output = await asyncio.wait_for(call(member), timeout)
        except Exception as error:
            return None, error, time.perf_counter() - start
        return output, None, time.perf_counter() - start

    outcomes = await asyncio.gather(*(timed(member) for member in members))
    results: MemberResults[T] = MemberResults()
    for name, (output, error, latency) in zip(names, outcomes, strict=True):
        results.latencies[name] = latency
        if error is None:
            results.outputs[name] = output  # type: ignore[assignment]
        else:
            results.failures.append(_failure(name, error, timeout=timeout))
    return results
