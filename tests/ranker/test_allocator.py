"""tune_malloc: applied on glibc, refused for bad thresholds."""

from __future__ import annotations

import platform

import pytest

from blender_core.allocator import tune_malloc


def test_tune_malloc() -> None:
    applied = tune_malloc()
    assert applied == (platform.libc_ver()[0] == "glibc")
    assert tune_malloc() == applied  # idempotent
    for bad in (0, 2**31, "big", 1.5):
        with pytest.raises(ValueError):
            tune_malloc(bad)  # type: ignore[arg-type]


def test_max_arenas_is_validated() -> None:
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="max_arenas"):
            tune_malloc(max_arenas=bad)  # type: ignore[arg-type]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("env", [None, "4"])
def test_arena_cap_in_a_fresh_process(env: str | None) -> None:
    # A fresh process: the cap is process-wide and must not change this test session's malloc.
    import os
    import subprocess
    import sys

    code = (
        "from blender_core import allocator as a\n"
        "print(a.tune_malloc(max_arenas=a.SERVER_MAX_ARENAS), a._applied)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if env is not None:
        environ["MALLOC_ARENA_MAX"] = env
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    expected_cap = None if env is not None else 2  # the operator's MALLOC_ARENA_MAX wins
    assert out.stdout.split(None, 1) == ["True", f"({1 << 30}, {expected_cap})\n"]
