"""The torch thread budget (blender_core.threads)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blender_core import threads


@pytest.fixture
def four_free_cores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import torch

    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    monkeypatch.setattr(threads, "_free_cores", 4)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("four_free_cores")
def test_auto_budget_shares_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [threads.thread_budget(n) for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    monkeypatch.setattr(threads, "_free_cores", 1)  # the load average said: busy machine
    assert threads.thread_budget(1) == 1


@pytest.mark.usefixtures("four_free_cores")
def test_the_setting_overrides_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.thread_budget(8) == 3
    monkeypatch.setenv(threads.THREADS_ENV, "off")
    assert threads.thread_budget(2) is None and threads.apply_thread_budget() is None
    monkeypatch.setenv(threads.THREADS_ENV, "auto")
    assert threads.thread_budget(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own setting wins over auto
    assert threads.thread_budget(2) is None
    for bad in ("lots", "-2"):
        monkeypatch.setenv(threads.THREADS_ENV, bad)
        with pytest.raises(ValueError, match="LLM_BLENDER_KIT_TORCH_THREADS"):
            threads.thread_budget()


def test_free_cores_come_from_the_runnable_tasks_of_other_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    for busy, free in ((0.0, 4), (1.0, 3), (6.0, 1)):
        monkeypatch.setattr(threads, "_free_cores", None)
        monkeypatch.setattr(threads, "_runnable_elsewhere", lambda busy=busy: busy)
        assert threads._cores_left_free() == free


def test_runnable_count_is_read_from_proc_loadavg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import builtins

    # The least of the samples, less the thread that reads: a blip does not cap the budget.
    lines = iter(["0.5 0.4 0.3 4/200 123\n", "9.0 0.4 0.3 2/200 123\n", "0.5 0.4 0.3 7/200 1\n"])
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            target = tmp_path / "loadavg"
            target.write_text(next(lines))
            return real_open(target, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert threads._runnable_elsewhere(samples=3, interval=0) == 1.0


def test_without_proc_the_load_average_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def no_proc(path, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.5, 0.0, 0.0))
    assert threads._runnable_elsewhere(samples=1) == 2.5


@pytest.mark.usefixtures("four_free_cores")
def test_apply_thread_budget_sets_torch_threads() -> None:
    import torch

    assert threads.apply_thread_budget(2) == 2
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("four_free_cores")
def test_concurrent_sections_split_the_cores() -> None:
    import torch

    first_inside = threading.Event()
    release = threading.Event()
    seen: dict[str, tuple[int | None, int]] = {}

    def first() -> None:
        with threads.torch_section() as n:
            seen["first"] = (n, torch.get_num_threads())
            first_inside.set()
            release.wait(10)

    def second() -> None:
        first_inside.wait(10)
        with threads.torch_section() as n:
            seen["second"] = (n, torch.get_num_threads())
        release.set()

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert seen == {"first": (4, 4), "second": (2, 2)}
    with threads.torch_section() as n:  # alone again
        assert n == 4
