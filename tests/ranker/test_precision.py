"""Precision chosen by the hardware (faked capability), forced dtypes, and what repr/stats say."""

from __future__ import annotations

import pytest
import torch

from blender_core import PairRanker, devices


@pytest.fixture
def fake_cpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend to be a CPU with the given /proc/cpuinfo flags and torch CPU capability."""

    def fake(flags: set[str], capability: str) -> None:
        monkeypatch.setattr(devices, "_cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(devices, "_torch_cpu_capability", lambda: capability)

    return fake


CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "capability", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AVX512", torch.bfloat16),
        ({"avx2", "avx512f", "avx512_bf16"}, "AVX512", torch.bfloat16),  # no AMX
        ({"avx2", "amx_bf16"}, "AMX", torch.bfloat16),
        ({"avx2", "fma"}, "AVX2", torch.float32),  # AVX2-only: bf16 would be emulated, slower
        ({"avx2", "avx512f"}, "AVX512", torch.float32),  # AVX512 without its bf16 extension
        ({"avx512_bf16"}, "AVX2", torch.float32),  # torch limited to AVX2 code paths
        (set(), "DEFAULT", torch.float32),  # no /proc/cpuinfo (macOS, Windows)
    ],
)
def test_auto_precision_on_cpu(fake_cpu, flags, capability, expected) -> None:
    fake_cpu(flags, capability)
    precision = devices.choose_precision(None, CPU)
    assert precision.dtype == expected
    assert precision.auto
    assert capability in precision.reason
    assert devices.choose_precision("auto", CPU).dtype == expected


def test_forced_dtypes_win_over_the_hardware(fake_cpu) -> None:
    fake_cpu({"amx_bf16"}, "AVX512")
    for spec, dtype in [
        ("float32", torch.float32),
        ("fp16", torch.float16),
        (torch.float32, torch.float32),
    ]:
        precision = devices.choose_precision(spec, CPU)
        assert precision.dtype == dtype and not precision.auto
        assert precision.reason.startswith("forced")
    fake_cpu({"avx2"}, "AVX2")
    assert devices.choose_precision("bf16", CPU).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unsupported dtype"):
        devices.choose_precision("int4", CPU)


def test_cuda_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.choose_precision(None, cuda).dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.choose_precision(None, cuda).dtype == torch.float16


def test_real_cpu_flags_are_read() -> None:
    support = devices.cpu_bf16_support()
    assert support.capability == str(torch.backends.cpu.get_cpu_capability())
    assert set(support.flags) <= set(devices.BF16_CPU_FLAGS)


def test_ranker_reports_its_precision(fake_cpu, tiny_pairrm_dir) -> None:
    fake_cpu({"avx2"}, "AVX2")
    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu")
    assert ranker.dtype == torch.float32
    assert next(ranker.model.parameters()).dtype == torch.float32
    assert "float32 (auto: CPU without native bf16" in repr(ranker)
    assert ranker.stats.precision == "float32"
    fake_cpu({"amx_bf16", "avx512_bf16"}, "AVX512")
    fast = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu")
    assert fast.dtype == torch.bfloat16
    assert next(fast.model.parameters()).dtype == torch.bfloat16
    assert "bfloat16 (auto: CPU has amx_bf16, avx512_bf16; torch AVX512)" in repr(fast)
    fast.reset_stats()
    ranking = fast.rank("Say hi", ["hi!", "go away", "hello"])
    assert fast.stats.precision == "bfloat16" and "amx_bf16" in fast.stats.precision_reason
    assert fast.stats.sequences == 6 and len(ranking) == 3
    forced = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="float32")
    assert "float32 (forced: dtype='float32')" in repr(forced)
    # bf16 agrees with fp32 on the winner of a clear-cut toy case within bf16's resolution.
    exact = forced.compare("Say hi", "hi!", "go away", both_directions=False)
    approx = fast.compare("Say hi", "hi!", "go away", both_directions=False)
    assert approx == pytest.approx(exact, abs=5e-2)
