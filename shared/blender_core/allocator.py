"""Keep glibc from mapping and unmapping every large tensor (for processes that are ours).

glibc serves each allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` on free, and gives the top of the heap back to the
kernel above its trim threshold. A transformer forward at PairRM lengths allocates and frees
tensors of tens to hundreds of MB per layer, so each forward pays for page faults on fresh zeroed
pages: measured on a 2-core CPU, 40 of 92 CPU-seconds of a ranking run went to the kernel.

:func:`tune_malloc` raises both thresholds (``mallopt(M_MMAP_THRESHOLD)`` and
``mallopt(M_TRIM_THRESHOLD)``) so those blocks are reused from the heap. It changes the whole
process. The ``blender`` CLI calls it at start-up; a :class:`~blender_core.PairRanker` loaded on
CPU calls it once, on the first load in the process (:func:`tune_malloc_on_load`), so the plain
Python API inside an app runs at the CLI's speed (without it, 0.85-0.90x). Opt out with
``PairRanker(..., tune_malloc=False)`` or ``BLENDER_TUNE_MALLOC=0`` in the environment; it is
skipped as well when ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is set (the
operator's glibc settings win). Memory stays bounded: freed blocks are kept for reuse, not leaked;
the trim threshold bounds what the heap keeps beyond what is in use (up to 1 GiB of freed memory
may stay mapped to the process).

Example:
    .. code-block:: python

        from blender_core.allocator import tune_malloc

        tune_malloc()  # True on glibc; False (nothing done) on musl, macOS, Windows
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

__all__ = [
    "DEFAULT_THRESHOLD",
    "SERVER_MAX_ARENAS",
    "TUNE_MALLOC_ENV",
    "tune_malloc",
    "tune_malloc_on_load",
]

#: Both thresholds, in bytes (1 GiB: the largest block served from the heap, and the most free
#: memory the heap keeps at its top before returning it to the kernel).
DEFAULT_THRESHOLD = 1 << 30

#: The arena cap ``blender serve`` asks for: a server's many worker threads would otherwise each
#: get an arena (up to 8 per core), and each arena keeps its own freed blocks.
SERVER_MAX_ARENAS = 2

#: Environment variable: ``0`` (or ``false``/``off``/``no``) stops model loads from calling
#: :func:`tune_malloc` (see :func:`tune_malloc_on_load`).
TUNE_MALLOC_ENV = "BLENDER_TUNE_MALLOC"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_lock = threading.Lock()
_applied: tuple[int, int | None] | None = None
#: How many times a model load applied the setting in this process (0 or 1).
_load_applications = 0
_load_decided = False


def tune_malloc(threshold: int = DEFAULT_THRESHOLD, *, max_arenas: int | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold`` bytes; whether it was applied.

    Does nothing (and returns ``False``) where the C library is not glibc.

    Args:
        threshold: Both thresholds, in bytes.
        max_arenas: Also cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``). Each thread that
            allocates may get its own arena, and each arena keeps its freed blocks, so a process
            whose model runs on many threads (a server) grows by one set of blocks per arena.
            Left alone when ``None``, or when ``MALLOC_ARENA_MAX`` is set in the environment
            (glibc has read it already, and the operator's choice wins). Call it before the
            threads start: arenas that exist are kept.

    Raises:
        ValueError: ``threshold`` is not in ``[128 KiB, 2**31 - 1]`` (``mallopt`` takes an int),
            or ``max_arenas`` is not a positive int.
    """
    global _applied
    if not isinstance(threshold, int) or not (128 * 1024 <= threshold <= 2**31 - 1):
        raise ValueError(f"threshold must be an int in [131072, 2**31 - 1], got {threshold!r}")
    if max_arenas is not None and (
        not isinstance(max_arenas, int) or isinstance(max_arenas, bool) or max_arenas < 1
    ):
        raise ValueError(f"max_arenas must be a positive int or None, got {max_arenas!r}")
    if "MALLOC_ARENA_MAX" in os.environ:
        max_arenas = None
    with _lock:
        if _applied == (threshold, max_arenas) or (
            max_arenas is None and _applied is not None and _applied[0] == threshold
        ):
            return True
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            mallopt = libc.mallopt
            libc.gnu_get_libc_version  # noqa: B018  (glibc only)
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
            mallopt(_M_TRIM_THRESHOLD, threshold)
        )
        if ok and max_arenas is not None:
            ok = bool(mallopt(_M_ARENA_MAX, max_arenas))
        if ok:
            _applied = (threshold, max_arenas)
        return ok


def tune_malloc_on_load(requested: bool | None = None) -> bool:
    """What a model load calls: :func:`tune_malloc` once per process, unless opted out.

    The first call that is not opted out decides for the process; later calls do nothing and
    return whether the setting is in effect.

    Args:
        requested: ``False``: do nothing (the caller's opt-out). ``True`` or ``None``: apply it,
            unless ``BLENDER_TUNE_MALLOC`` is ``0``/``false``/``off``/``no`` or glibc's own
            ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are set (``True`` overrides
            ``BLENDER_TUNE_MALLOC`` but never glibc's variables).

    Returns:
        Whether the thresholds are raised in this process (by this call or an earlier one).
    """
    global _load_applications, _load_decided
    if requested is False:
        return _applied is not None
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return _applied is not None
    env = os.environ.get(TUNE_MALLOC_ENV, "1").strip().lower()
    if requested is None and env in {"0", "false", "off", "no"}:
        return _applied is not None
    with _lock:
        if _load_decided:
            return _applied is not None
        _load_decided = True
    ok = tune_malloc()
    if ok:
        with _lock:
            _load_applications += 1
    return ok
