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
