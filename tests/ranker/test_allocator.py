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


_LOAD_TWICE = (
    "import sys\n"
    "from blender_core import PairRanker, allocator as a\n"
    "from blender_core.testing import make_tiny_pairranker\n"
    "path = make_tiny_pairranker(sys.argv[1], layout='pairrm', backbone='bert')\n"
    "kw = eval(sys.argv[2])\n"
    "before = a._applied\n"
    "PairRanker.from_pretrained(path, device='cpu', dtype='float32', **kw)\n"
    "PairRanker.from_pretrained(path, device='cpu', dtype='float32', **kw)\n"
    "print(f'{before}|{a._applied}|{a._load_applications}')\n"
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize(
    ("kwargs", "env", "applied"),
    [
        ("{}", {}, True),  # the plain Python API gets the CLI's allocator setting, once
        ("{'tune_malloc': False}", {}, False),  # the argument opts out
        ("{}", {"BLENDER_TUNE_MALLOC": "0"}, False),  # so does the environment
        ("{'tune_malloc': True}", {"BLENDER_TUNE_MALLOC": "0"}, True),  # the argument wins
        ("{}", {"MALLOC_MMAP_THRESHOLD_": "4194304"}, False),  # glibc's own variables win
    ],
)
def test_first_cpu_load_tunes_malloc_once(tmp_path, kwargs, env, applied) -> None:
    # A fresh process each: the setting is process-wide.
    import os
    import subprocess
    import sys

    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BLENDER_TUNE_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    }
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_TWICE, str(tmp_path / "r"), kwargs],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    before, after, times = out.stdout.strip().splitlines()[-1].split("|")
    assert before == "None"
    if applied:
        assert after == f"({1 << 30}, None)"
        assert times == "1"  # two loads, applied once
    else:
        assert after == "None"
        assert times == "0"
