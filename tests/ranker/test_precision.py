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
    assert precision.mixed == (expected == torch.bfloat16)
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
    assert not devices.choose_precision(None, cuda).mixed
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
    assert fast.dtype == torch.bfloat16 and fast.precision.mixed
    # bf16-mixed: the linear layers' weights in bf16, the rest (embeddings, norms, head) fp32.
    assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16, torch.float32}
    assert "bfloat16-mixed (auto: CPU has amx_bf16, avx512_bf16; torch AVX512)" in repr(fast)
    fast.reset_stats()
    ranking = fast.rank("Say hi", ["hi!", "go away", "hello"])
    assert fast.stats.precision == "bfloat16-mixed" and "amx_bf16" in fast.stats.precision_reason
    assert fast.stats.sequences == 6 and len(ranking) == 3
    forced = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="float32")
    assert "float32 (forced: dtype='float32')" in repr(forced)
    # bf16 agrees with fp32 on the winner of a clear-cut toy case within bf16's resolution.
    exact = forced.compare("Say hi", "hi!", "go away", both_directions=False)
    approx = fast.compare("Say hi", "hi!", "go away", both_directions=False)
    assert approx == pytest.approx(exact, abs=5e-2)


@pytest.mark.parametrize("spec", ["bf16-mixed", "bfloat16-mixed", "BF16-Mixed", "fp16-mixed"])
def test_mixed_precisions_parse(fake_cpu, spec) -> None:
    fake_cpu({"avx2"}, "AVX2")
    precision = devices.choose_precision(spec, CPU)
    assert precision.mixed and not precision.auto
    assert precision.dtype in (torch.bfloat16, torch.float16)
    assert precision.name == f"{str(precision.dtype).removeprefix('torch.')}-mixed"
    with pytest.raises(ValueError, match="mixed precision needs"):
        devices.choose_precision("float32-mixed", CPU)
    with pytest.raises(ValueError, match="unsupported dtype"):
        devices.choose_precision("int8-mixed", CPU)


def test_mixed_ranker_keeps_a_float32_stream(tiny_pairrm_dir) -> None:
    """bf16 linear weights and products; embeddings, norms, head and residual stream in fp32."""
    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="bf16-mixed")
    model = ranker.model
    linears = [m for m in model.pretrained_model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    others = [
        p
        for m in model.pretrained_model.modules()
        if not isinstance(m, torch.nn.Linear)
        for p in m.parameters(recurse=False)
    ]
    assert others and all(p.dtype == torch.float32 for p in others)
    assert all(p.dtype == torch.float32 for p in model.head_layer.parameters())
    assert ranker.stats.precision == "bfloat16-mixed"
    assert "bfloat16-mixed (forced: dtype='bf16-mixed')" in repr(ranker)

    exact = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="float32")
    pure = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="bfloat16")
    source, texts = "Say hi", ["hi!", "go away", "hello", "Hello there, friend."]
    want = exact.rank(source, texts, strategy="max_logits")
    got = ranker.rank(source, texts, strategy="max_logits")
    rough = pure.rank(source, texts, strategy="max_logits")

    def error(ranking) -> float:
        return max(
            abs(a - b)
            for ra, rb in zip(ranking.matrix, want.matrix, strict=True)
            for a, b in zip(ra, rb, strict=True)
            if a is not None and b is not None
        )

    assert error(got) < 5e-2
    # Same products, fp32 stream: closer to fp32 than all-bf16 (or as close).
    assert error(got) <= error(rough) + 1e-6
    # The cache tells the precisions apart.
    assert ranker._identity() != pure._identity()


def test_int8_is_not_offered_below_the_agreement_bar(fake_cpu, monkeypatch) -> None:
    fake_cpu({"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_int8"}, "AVX512")
    monkeypatch.setattr(devices, "_quantized_engines", lambda: ("x86", "fbgemm", "onednn"))
    monkeypatch.delenv(devices.INT8_ENV, raising=False)
    with pytest.raises(ValueError, match=r"not offered.*86.7 %.*98 %"):
        devices.choose_precision("int8", CPU)
    monkeypatch.setenv(devices.INT8_ENV, "yes")  # only "1" lets it through
    with pytest.raises(ValueError, match="not offered"):
        devices.choose_precision("int8", CPU)


def test_int8_for_measurement_needs_detected_int8_units(fake_cpu, monkeypatch) -> None:
    fake_cpu({"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_int8"}, "AVX512")
    monkeypatch.setattr(devices, "_quantized_engines", lambda: ("x86", "fbgemm", "onednn"))
    monkeypatch.setenv(devices.INT8_ENV, "1")
    assert devices.choose_precision(None, CPU).quantized is None  # never the automatic choice
    for spec in ("int8", "INT8", "int8-dynamic", "qint8"):
        precision = devices.choose_precision(spec, CPU)
        assert precision.quantized == "int8" and precision.name == "int8"
        assert precision.dtype == torch.float32 and not precision.auto and not precision.mixed
        assert "avx512_vnni" in precision.reason and "amx_int8" in precision.reason
    fake_cpu({"avx2", "fma"}, "AVX2")  # no VNNI, no AMX-INT8: refused, not emulated
    with pytest.raises(ValueError, match="AMX-INT8 or VNNI"):
        devices.choose_precision("int8", CPU)
    fake_cpu({"avx_vnni"}, "AVX2")
    assert devices.choose_precision("int8", CPU).quantized == "int8"
    monkeypatch.setattr(devices, "_quantized_engines", lambda: ("none",))  # no x86 engine
    with pytest.raises(ValueError, match="engines none"):
        devices.choose_precision("int8", CPU)
    with pytest.raises(ValueError, match="CPU only"):
        devices.choose_precision("int8", torch.device("cuda"))


@pytest.mark.skipif(
    not {"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines),
    reason="torch without an x86 quantized engine",
)
def test_int8_ranker_quantizes_the_backbone_only(fake_cpu, tiny_pairrm_dir, monkeypatch) -> None:
    fake_cpu({"avx512_vnni"}, "AVX512")
    monkeypatch.setenv(devices.INT8_ENV, "1")
    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="int8", cache=True)
    backbone = ranker.model.pretrained_model
    assert not any(isinstance(m, torch.nn.Linear) for m in backbone.modules())
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    assert any(isinstance(m, DynamicQuantizedLinear) for m in backbone.modules())
    # the fast attention kept the quantized projections
    attention = backbone.encoder.layer[0].attention.self
    assert isinstance(attention.query_proj, DynamicQuantizedLinear)
    assert all(p.dtype == torch.float32 for p in ranker.model.head_layer.parameters())
    assert isinstance(ranker.model.head_layer[1], torch.nn.Linear)
    assert ranker.stats.precision == "int8" and "int8 (forced: dtype='int8'" in repr(ranker)
    exact = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="float32")
    source, texts = "Say hi", ["hi!", "go away", "hello", "Hello there, friend."]
    got = ranker.rank(source, texts)
    want = exact.rank(source, texts)
    assert got.scores == pytest.approx(want.scores, abs=5e-2)
    again = ranker.rank(source, texts)  # the cache keys an int8 model too
    assert again.scores == got.scores and ranker.stats.cache_hits == 12
