"""Call every member of an ensemble at once: sync and async, each under a deadline, failures
as data, and each member's generation time measured apart from its queueing.

The one runner behind :class:`~blender_core.blend.Blender`, the LangChain ensembles and agent
middleware, and the LlamaIndex ensembles. A member is a zero-argument call (the adapter binds
its model, prompt, config and retries into it); the runner only calls, times and classifies:

* an answer (``check`` may refuse it: a ``TypeError``/``ValueError`` it raises is an error),
* ``"error"``: the call raised (a ``TimeoutError`` raised by the member itself included: only
  running out of the runner's own time is a timeout), or was cancelled by someone else,
* ``"timeout"``: no answer within ``timeout`` seconds. An async call is cancelled and given one
  second to clean up; a sync call's thread cannot be stopped, its late answer is dropped.

Latencies are generation time: a member that waits for a shared resource (a local model that
generates one call at a time) reports the wait with
:func:`~blender_core.generators.timing.add_queue_time`, and that wait is :attr:`Outcome.queued`,
not part of :attr:`Outcome.latency`.

Example:
    .. code-block:: python

        from blender_core.members import arun_members, run_members

        outcomes = run_members({"a": lambda: "hi", "b": lambda: 1 / 0}, timeout=5)
        [o.ok for o in outcomes]  # [True, False]
        outcomes[1].failure.message  # "ZeroDivisionError: division by zero"
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from blender_core.generators.timing import measure_queueing
from blender_core.secrets import redact

__all__ = [
    "MemberResults",
    "ModelFailure",
    "Outcome",
    "Stage",
    "arun_members",
    "deadline_failure",
    "describe_error",
    "error_failure",
    "member_items",
    "name_members",
    "run_members",
    "timeout_failure",
]

T = TypeVar("T")

Stage = Literal["generation", "ranking", "fusion"]

_CLEANUP_SECONDS = 1.0


@dataclass(frozen=True)
class ModelFailure:
    """A base model that gave no usable answer, or a ranking/fusion stage that ran out of time.

    Attributes:
        model: The model's name (for the ranking and fusion stages: the ranker's or fuser's
            name, e.g. ``"LLMFuser(gpt-4o)"``).
        kind: The cause: ``"timeout"`` (no answer within the runner's deadline, or the member's
            own timeout: it raised a ``TimeoutError``) or ``"error"`` (it raised anything else,
            also when it was retrying after an error as the deadline passed, or returned
            something that is not a non-empty string).
        message: What happened, e.g. ``"RuntimeError: boom"`` (credentials redacted with
            :func:`~blender_core.secrets.redact`, whoever builds the failure).
        exception: The exception raised, when there was one.
        stage: ``"generation"`` (a base model), ``"ranking"`` or ``"fusion"``.
    """

    model: str
    kind: Literal["error", "timeout"]
    message: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    stage: Stage = "generation"

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", redact(self.message))

    def __str__(self) -> str:
        kind = self.kind if self.stage == "generation" else f"{self.stage} {self.kind}"
        return f"{self.model} ({kind}: {self.message})"

    def to_dict(self) -> dict[str, str]:
        """``model``, ``kind`` and ``message``, plus ``stage`` for a ranking/fusion failure."""
        out = {"model": self.model, "kind": self.kind, "message": self.message}
        if self.stage != "generation":
            out["stage"] = self.stage
        return out


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"`` (or the type name alone): how every failure message reads."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def timeout_failure(name: str, timeout: float | None) -> ModelFailure:
    """The failure of a member that gave no answer within ``timeout`` seconds."""
    message = f"no answer within {timeout:g} s" if timeout is not None else "no answer"
    return ModelFailure(name, "timeout", message, TimeoutError(message))


def error_failure(name: str, exc: BaseException) -> ModelFailure:
    """The failure of a member whose call raised ``exc``: kind ``"timeout"`` when the cause is
    a timeout (the member's own, e.g. its HTTP client's: a ``TimeoutError``), else ``"error"``."""
    kind: Literal["error", "timeout"] = "timeout" if isinstance(exc, TimeoutError) else "error"
    return ModelFailure(name, kind, describe_error(exc), exc)


def deadline_failure(name: str, timeout: float | None, timing: Any) -> ModelFailure:
    """The failure of a member still running at the runner's deadline: a bare timeout, or,
    when it was retrying after an error, that error (the cause) with the deadline noted."""
    cause = getattr(timing, "retry_error", None)
    if cause is None:
        return timeout_failure(name, timeout)
    failure = error_failure(name, cause)
    when = f"{timeout:g} s" if timeout is not None else "the"
    message = f"{failure.message} (it was being retried when the {when} deadline passed)"
    return ModelFailure(name, failure.kind, message, cause)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One member's answer or failure, and its timing.

    Attributes:
        name: The member's name.
        output: Its answer (``None`` on failure).
        failure: Why it gave none.
        latency: Seconds it spent generating (its wall time less :attr:`queued`).
        queued: Seconds it waited for a shared resource before generating.
    """

    name: str
    output: T | None = None
    failure: ModelFailure | None = None
    latency: float = 0.0
    queued: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the member answered."""
        return self.failure is None


@dataclass
class MemberResults(Generic[T]):
    """The outcomes gathered by member name: what the pipeline's ranking stage takes.

    Attributes:
        outputs: Member -> its answer, for the members that answered (in member order).
        failures: The members that gave no answer.
        latencies: Member -> generation seconds (failed members included).
        queueing: Member -> seconds waited for a shared model (only members that waited).
    """

    outputs: dict[str, T] = field(default_factory=dict)
    failures: list[ModelFailure] = field(default_factory=list)
    latencies: dict[str, float] = field(default_factory=dict)
    queueing: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_outcomes(
        cls, outcomes: Sequence[Outcome[Any]], convert: Callable[[Any], T] | None = None
    ) -> MemberResults[T]:
        """Gather ``outcomes``; ``convert`` turns each answer into its output (e.g. its text)."""
        results: MemberResults[T] = cls()
        for outcome in outcomes:
            results.latencies[outcome.name] = outcome.latency
            if outcome.queued:
                results.queueing[outcome.name] = outcome.queued
            if outcome.failure is not None:
                results.failures.append(outcome.failure)
            else:
                output = outcome.output if convert is None else convert(outcome.output)
                results.outputs[outcome.name] = output  # type: ignore[assignment]
        return results

    def blend_keywords(self) -> dict[str, Any]:
        """These results as the keywords of ``Blender.ablend_candidates`` and
        ``astream_candidates``: ``candidates``, ``failures``, ``latencies``, ``queueing``."""
        return {
            "candidates": self.outputs,
            "failures": self.failures,
            "latencies": self.latencies,
            "queueing": self.queueing,
        }


def member_items(
    members: Any,
    name_of: Callable[[Any], Any],
    *,
    field: str = "models",
    kind: str = "model",
    number_repeats: bool = True,
) -> list[tuple[Any, Any]]:
    """The ``(name, member)`` pairs of an ensemble's members, not yet checked: a mapping's
    items as given, or a list's members named ``name_of(member)`` (with ``number_repeats``,
    ``#2``, ``#3``... appended to repeats).

    Raises:
        TypeError: ``members`` is neither a list nor a mapping (the message names ``field``,
            holding ``kind``s).
    """
    if isinstance(members, Mapping):
        return list(members.items())
    if isinstance(members, str) or not isinstance(members, Sequence):
        raise TypeError(
            f"{field} must be a list of {kind}s or a mapping name -> {kind}, "
            f"got {type(members).__name__}"
        )
    if not number_repeats:
        return [(name_of(member), member) for member in members]
    items = []
    seen: dict[str, int] = {}
    for member in members:
        base = name_of(member)
        seen[base] = seen.get(base, 0) + 1
        items.append((base if seen[base] == 1 else f"{base}#{seen[base]}", member))
    return items


def name_members(
    models: Any, name_of: Callable[[Any], str], *, check: Callable[[str, Any], Any] | None = None
) -> dict[str, Any]:
    """The one way every front names its members: a mapping's keys as given, or, for a list,
    ``name_of(model)`` with ``#2``, ``#3``... appended to repeats (:func:`member_items`).

    Args:
        models: A list of models, or a mapping name -> model.
        name_of: A model's readable name (a front's own: a LangChain model's ``model_name``, a
            LlamaIndex LLM's ``metadata.model_name``).
        check: Called as ``check(name, model)``; returns the model to keep (converted) or raises.

    Raises:
        TypeError: ``models`` is neither a list nor a mapping.
        ValueError: no models, an empty name, or a duplicate name.
    """
    items = member_items(models, name_of)
    if not items:
        raise ValueError("an ensemble needs at least one model")
    named: dict[str, Any] = {}
    for position, (name, model) in enumerate(items):
        if not isinstance(name, str) or not name:
            raise ValueError(f"model {position} has no name (a non-empty string)")
        if name in named:
            raise ValueError(f"duplicate model name {name!r}")
        named[name] = check(name, model) if check is not None else model
    return named


def _retrying(call: Callable[[], T], retries: int) -> Callable[[], T]:
    if retries <= 0:
        return call

    def retried() -> T:
        for attempt in range(retries + 1):
            try:
                return call()
            except Exception:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    return retried


def _aretrying(call: Callable[[], Awaitable[T]], retries: int) -> Callable[[], Awaitable[T]]:
    if retries <= 0:
        return call

    async def retried() -> T:
        for attempt in range(retries + 1):
            try:
                return await call()
            except Exception:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    return retried


def _checked(name: str, output: Any, check: Callable[[Any], Any] | None) -> Outcome[Any]:
    if check is None:
        return Outcome(name, output=output)
    try:
        return Outcome(name, output=check(output))
    except (TypeError, ValueError) as exc:
        return Outcome(name, failure=error_failure(name, exc))


def _timed(outcome: Outcome[T], wall: float, queued: float) -> Outcome[T]:
    return Outcome(
        outcome.name,
        output=outcome.output,
        failure=outcome.failure,
        latency=max(0.0, wall - queued),
        queued=queued,
    )


def run_members(
    calls: Mapping[str, Callable[[], T]],
    *,
    timeout: float | None,
    check: Callable[[Any], T] | None = None,
    executor: Callable[..., ThreadPoolExecutor] = ThreadPoolExecutor,
    retries: int = 0,
) -> list[Outcome[T]]:
    """Call every member at once in worker threads; outcomes in ``calls`` order.

    Each call runs in a copy of the caller's context (LangChain run configs, LlamaIndex spans
    and the queueing measure reach it). The wall time is the slowest member's, at most
    ``timeout``.

    Args:
        calls: Member name -> its zero-argument call.
        timeout: Seconds every member may take (``None``: no limit).
        check: Turns an answer into the outcome's output, or refuses it with a ``TypeError`` /
            ``ValueError`` (an ``"error"`` failure).
        executor: The pool class (LangChain's ``ContextThreadPoolExecutor`` fits).
        retries: Times a call that raises is tried again (within the same ``timeout``).
    """
    if not calls:
        return []
    timings: dict[str, tuple[float, float]] = {}
    started: dict[str, float] = {}

    timings_by_name: dict[str, Any] = {}

    def one(name: str, call: Callable[[], T]) -> T:
        started[name] = time.perf_counter()
        with measure_queueing() as timing:
            timings_by_name[name] = timing
            if timeout is not None:
                timing.deadline = deadline
            try:
                return call()
            finally:
                timings[name] = (time.perf_counter() - started[name], timing.queued)

    pool = executor(max_workers=len(calls), thread_name_prefix="blender-member")
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        futures = {
            name: pool.submit(contextvars.copy_context().run, one, name, _retrying(call, retries))
            for name, call in calls.items()
        }
        done, _ = wait(futures.values(), timeout=timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    outcomes: list[Outcome[T]] = []
    for name, future in futures.items():
        if future not in done:
            future.cancel()
            wall = time.perf_counter() - started.get(name, t0)
            failure = deadline_failure(name, timeout, timings_by_name.get(name))
            outcomes.append(_timed(Outcome(name, failure=failure), wall, 0))
            continue
        wall, queued = timings.get(name, (0.0, 0.0))
        error = future.exception()
        outcome = (
            Outcome(name, failure=error_failure(name, error))
            if error is not None
            else _checked(name, future.result(), check)
        )
        outcomes.append(_timed(outcome, wall, queued))
    return outcomes


async def _arun_one(
    name: str,
    call: Callable[[], Awaitable[T]],
    timeout: float | None,
    check: Callable[[Any], T] | None,
) -> Outcome[T]:
    start = time.perf_counter()
    with measure_queueing() as timing:
        if timeout is not None:
            timing.deadline = time.monotonic() + timeout
        task = asyncio.ensure_future(call())
        # asyncio.wait (not wait_for): a TimeoutError raised by the member itself is an
        # "error"; only running out of our own time is a "timeout".
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
    wall = time.perf_counter() - start
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=_CLEANUP_SECONDS)  # let it clean up, never hang
        failure = deadline_failure(name, timeout, timing)
        return _timed(Outcome(name, failure=failure), wall, timing.queued)
    if task.cancelled():
        message = "CancelledError: the call was cancelled"
        return _timed(Outcome(name, failure=ModelFailure(name, "error", message)), wall, 0)
    error = task.exception()
    outcome = (
        Outcome(name, failure=error_failure(name, error))
        if error is not None
        else _checked(name, task.result(), check)
    )
    return _timed(outcome, wall, timing.queued)


async def arun_members(
    calls: Mapping[str, Callable[[], Awaitable[T]]],
    *,
    timeout: float | None,
    check: Callable[[Any], T] | None = None,
    retries: int = 0,
) -> list[Outcome[T]]:
    """Async :func:`run_members`: every member's coroutine at once on this event loop.

    Cancelling the caller cancels every member still running.
    """
    return list(
        await asyncio.gather(
            *(
                _arun_one(name, _aretrying(call, retries), timeout, check)
                for name, call in calls.items()
            )
        )
    )
