"""Device and dtype choice shared by every model wrapper.

:func:`choose_precision` picks the inference precision from the hardware: on CPU, bf16-mixed
(bf16 linear layers, a float32 residual stream) where the processor has native bf16 matrix units
(AMX or AVX512-BF16), else float32; on CUDA, bfloat16 where the GPU supports it, else float16. It
says why, so that a ranker's ``repr`` and stats can report it. :func:`place_module` and
:func:`compute_context` apply a choice to a model and its forward pass.

Example:
    .. code-block:: python

        import torch
        from blender_core.devices import choose_precision

        precision = choose_precision(None, torch.device("cpu"))
        precision.name, precision.reason  # ("bfloat16-mixed", "auto: CPU has amx_bf16 ...")
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")

__all__ = [
    "BF16_CPU_FLAGS",
    "CPU_MAX_BLOCK_BYTES",
    "INT8_CPU_FLAGS",
    "INT8_ENV",
    "BatchBudget",
    "CpuBf16Support",
    "CpuInt8Support",
    "Precision",
    "choose_batch_tokens",
    "choose_precision",
    "compute_context",
    "cpu_bf16_support",
    "cpu_int8_support",
    "place_module",
    "resolve_device",
    "resolve_dtype",
]

#: ``/proc/cpuinfo`` flags that mean native bf16 matrix arithmetic (oneDNN uses them for matmuls).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

#: ``/proc/cpuinfo`` flags that mean native int8 dot products (AMX-INT8 tiles, AVX512-VNNI,
#: AVX-VNNI), which torch's x86/fbgemm/onednn quantized kernels use for int8 linear layers.
INT8_CPU_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
INT8_ENV = "BLENDER_EXPERIMENTAL_INT8"
"""``1`` lets ``dtype="int8"`` through (benchmarks only: its agreement with float32 is below the
98 % top-1 bar on the trained rankers)."""

#: The spellings of the opt-in int8 precision (dynamic int8 linear layers, float32 elsewhere).
_INT8_NAMES = ("int8", "int8-dynamic", "qint8")

#: Largest activation block of one forward pass on CPU (bytes): the batch budget keeps the
#: feed-forward intermediate ``(tokens, intermediate_size)``, the largest tensor of a layer, under
#: glibc's largest dynamic mmap threshold (32 MiB), so that it is reused from the heap instead of
#: being mapped and unmapped (page faults) in every layer of every forward.
CPU_MAX_BLOCK_BYTES = 30 * 2**20

#: Fraction of the free accelerator memory a forward pass may use for its activations.
CUDA_MEMORY_FRACTION = 0.4

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def resolve_device(device: Any = None) -> torch.device:
    """``None`` picks CUDA when available, else MPS, else CPU; strings and devices pass through."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: Any, device: torch.device, *, gpu_default: str = "float16") -> torch.dtype:
    """``None`` means fp32 on CPU and ``gpu_default`` (fp16 or bf16) on an accelerator."""
    import torch

    if dtype is None:
        name = "float32" if device.type == "cpu" else gpu_default
        return getattr(torch, name)
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key == "auto":
            return resolve_dtype(None, device, gpu_default=gpu_default)
        if key in _DTYPES:
            return getattr(torch, _DTYPES[key])
    raise ValueError(
        f"unsupported dtype {dtype!r}: use None, 'auto', 'float32', 'float16' or 'bfloat16'"
    )


@dataclass(frozen=True)
class CpuBf16Support:
    """Whether this CPU computes bfloat16 matmuls natively, and the evidence.

    Attributes:
        native: ``True`` when a bf16 flag is present and torch's kernels are not limited to
            AVX2/baseline code.
        flags: The bf16 flags found (:data:`BF16_CPU_FLAGS`).
        capability: ``torch.backends.cpu.get_cpu_capability()`` (``"AVX512"``, ``"AVX2"``...).
    """

    native: bool
    flags: tuple[str, ...]
    capability: str

    def describe(self) -> str:
        """``"amx_bf16, avx512_bf16; torch AVX512"`` or ``"no bf16 flag; torch AVX2"``."""
        found = ", ".join(self.flags) if self.flags else "no bf16 flag"
        return f"{found}; torch {self.capability}"


def _torch_cpu_capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The ``flags`` of ``/proc/cpuinfo`` (empty where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_support() -> CpuBf16Support:
    """Ask the CPU flags and torch's CPU capability whether bf16 matmuls are native here.

    Both must agree: a bf16 flag (AMX or AVX512-BF16) and a torch build dispatching above AVX2.
    On AVX2-only CPUs bf16 is emulated and about twice as slow as fp32.
    """
    capability = _torch_cpu_capability()
    flags = tuple(f for f in BF16_CPU_FLAGS if f in _cpu_flags())
    native = bool(flags) and capability.upper() not in ("DEFAULT", "NO AVX", "AVX", "AVX2")
    return CpuBf16Support(native=native, flags=flags, capability=capability)


@dataclass(frozen=True)
class CpuInt8Support:
    """Whether this CPU runs int8 linear layers natively, and the evidence.

    Attributes:
        native: ``True`` when an int8 dot-product flag is present and torch has an x86
            quantized engine (``x86``, ``fbgemm`` or ``onednn``).
        flags: The int8 flags found (:data:`INT8_CPU_FLAGS`).
        engines: ``torch.backends.quantized.supported_engines``.
    """

    native: bool
    flags: tuple[str, ...]
    engines: tuple[str, ...]

    def describe(self) -> str:
        """``"avx512_vnni; engines x86, fbgemm, onednn"`` or ``"no int8 flag; ..."``."""
        found = ", ".join(self.flags) if self.flags else "no int8 dot-product flag"
        return f"{found}; engines {', '.join(self.engines) or 'none'}"


def _quantized_engines() -> tuple[str, ...]:
    import torch

    return tuple(str(e) for e in torch.backends.quantized.supported_engines)


def cpu_int8_support() -> CpuInt8Support:
    """Ask the CPU flags and torch whether int8 linear layers are native here (never assumed)."""
    flags = tuple(f for f in INT8_CPU_FLAGS if f in _cpu_flags())
    engines = _quantized_engines()
    native = bool(flags) and any(e in engines for e in ("x86", "fbgemm", "onednn"))
    return CpuInt8Support(native=native, flags=flags, engines=engines)


@dataclass(frozen=True)
class Precision:
    """The dtype a model runs in and why it was chosen.

    Attributes:
        dtype: The torch dtype of the matrix products.
        reason: A short human explanation (``"forced"``, or what the hardware offered).
        auto: Whether it was chosen automatically (``dtype=None``/``"auto"``).
        mixed: ``dtype`` is used for the linear layers only (their weights stored in it, their
            products under ``torch.autocast``), while the residual stream, norms, embeddings
            and head stay in float32 (``"bf16-mixed"``, ``"fp16-mixed"``).
        quantized: ``"int8"``: the linear layers (outside the head) are dynamically quantized
            to int8 weights with int8 activations quantized per call (``torch.ao``); everything
            else is ``dtype`` (float32). Opt-in only, never chosen automatically.
    """

    dtype: torch.dtype
    reason: str
    auto: bool
    mixed: bool = False
    quantized: str | None = None

    @property
    def name(self) -> str:
        """``"bfloat16"``, ``"float32"``, ``"bfloat16-mixed"``, ``"int8"``..."""
        if self.quantized:
            return self.quantized
        base = str(self.dtype).removeprefix("torch.")
        return f"{base}-mixed" if self.mixed else base


def choose_precision(dtype: Any, device: torch.device) -> Precision:
    """The inference precision for ``device``: forced by ``dtype``, or chosen by the hardware.

    ``None``/``"auto"``: on CPU bf16-mixed (bf16 linear layers, float32 stream; see
    :class:`Precision`) where :func:`cpu_bf16_support` says bf16 is native, else float32; on
    CUDA bfloat16 where ``torch.cuda.is_bf16_supported()``, else float16; on other accelerators
    (MPS...) float16. ``"bf16-mixed"`` / ``"fp16-mixed"`` force a mixed precision; any other
    value goes through :func:`resolve_dtype`.

    On CPU the mixed form costs little (the products dominate; trained MiniLM rankers on an
    AVX512-BF16 CPU: 434.7 s against 434.0 s in all-bf16 on the alpaca-v1 dev set, 217.6 s
    against 210.4 s on alpaca-v2's) and rounds less (largest logit error against float32 0.029
    against 0.043, and 0.136 against 0.154).
    """
    import torch

    if isinstance(dtype, str) and dtype.lower() in _INT8_NAMES:
        if os.environ.get(INT8_ENV, "") != "1":
            raise ValueError(
                f"dtype={dtype!r} is not offered: dynamic int8 linear layers agree with float32 "
                "on the top-1 of only 86.7 % of the dev records of both AlpacaEval sets with "
                "the trained rankers (the bar is 98 %; docs/pairranker.md, 'int8'). Use the "
                "automatic precision (bf16 where native: 100 % there), or set "
                f"{INT8_ENV}=1 to measure it anyway"
            )
        if device.type != "cpu":
            raise ValueError(f"dtype={dtype!r} is offered on CPU only, not on {device.type}")
        int8 = cpu_int8_support()
        if not int8.native:
            raise ValueError(
                f"dtype={dtype!r} needs a CPU with AMX-INT8 or VNNI (flags {INT8_CPU_FLAGS}) "
                f"and torch's x86 quantized engine; this one has {int8.describe()}"
            )
        return Precision(
            torch.float32,
            f"forced: dtype={dtype!r} (int8 linear layers; CPU has {int8.describe()})",
            auto=False,
            quantized="int8",
        )
    if isinstance(dtype, str) and dtype.lower().endswith("-mixed"):
        forced = resolve_dtype(dtype.lower().removesuffix("-mixed"), device)
        if forced == torch.float32:
            raise ValueError(f"{dtype!r}: mixed precision needs 'bf16-mixed' or 'fp16-mixed'")
        return Precision(forced, f"forced: dtype={dtype!r}", auto=False, mixed=True)
    if dtype is not None and not (isinstance(dtype, str) and dtype.lower() == "auto"):
        forced = resolve_dtype(dtype, device)
        name = str(forced).removeprefix("torch.")
        return Precision(forced, f"forced: dtype={name!r}", auto=False)
    if device.type == "cpu":
        support = cpu_bf16_support()
        if support.native:
            return Precision(
                torch.bfloat16, f"auto: CPU has {support.describe()}", auto=True, mixed=True
            )
        return Precision(
            torch.float32, f"auto: CPU without native bf16 ({support.describe()})", auto=True
        )
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, "auto: CUDA device supports bf16", auto=True)
        return Precision(torch.float16, "auto: CUDA device without bf16", auto=True)
    return Precision(torch.float16, f"auto: {device.type} accelerator", auto=True)


def place_module(
    module: ModuleT,
    precision: Precision,
    device: torch.device,
    *,
    keep_float32: torch.nn.Module | None = None,
) -> ModuleT:
    """Move ``module`` to ``device`` in ``precision``; returns it.

    Plain precisions cast every floating tensor. Mixed ones cast only the weights of its
    ``nn.Linear`` layers (those outside ``keep_float32``), once, so that the products under
    :func:`compute_context` read them without a per-call copy; the rest stays float32. int8
    replaces those layers by ``torch.ao`` dynamically quantized ones (int8 weights, activations
    quantized per call), in place.
    """
    import torch

    if precision.quantized == "int8":
        import warnings

        from torch.ao.quantization import quantize_dynamic

        module.to(device=device, dtype=torch.float32)
        kept = set() if keep_float32 is None else {id(m) for m in keep_float32.modules()}
        names = {
            name
            for name, sub in module.named_modules()
            if isinstance(sub, torch.nn.Linear) and id(sub) not in kept
        }
        with warnings.catch_warnings():
            # torch.ao's eager quantization is deprecated in favour of torchao (not a
            # dependency); it is what runs on VNNI/AMX CPUs with torch alone.
            warnings.simplefilter("ignore")
            quantize_dynamic(module, names, dtype=torch.qint8, inplace=True)
        return module
    if not precision.mixed:
        return module.to(device=device, dtype=precision.dtype)
    module.to(device=device, dtype=torch.float32)
    kept = set() if keep_float32 is None else {id(m) for m in keep_float32.modules()}
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear) and id(sub) not in kept:
            sub.to(dtype=precision.dtype)
    return module


def compute_context(
    precision: Precision, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` in the precision's dtype for mixed precisions, else a no-op."""
    import torch

    if precision.mixed:
        return torch.autocast(device.type, dtype=precision.dtype)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class BatchBudget:
    """Padded tokens per forward pass for a device, and why.

    Attributes:
        tokens: The budget.
        reason: How it was chosen (forced, or from what).
    """

    tokens: int
    reason: str


def _round_down(value: float, step: int, low: int, high: int) -> int:
    return max(low, min(high, int(value) // step * step))


def choose_batch_tokens(
    batch_tokens: int | None,
    device: torch.device,
    dtype: torch.dtype,
    *,
    hidden_size: int,
    intermediate_size: int,
    num_heads: int,
    max_pair_length: int,
) -> BatchBudget:
    """The batch budget: ``batch_tokens`` if given, else tuned for the device.

    - CPU: the most tokens whose feed-forward intermediate stays within
      :data:`CPU_MAX_BLOCK_BYTES` (1024..16384, multiple of 512): larger batches do not compute
      faster on a CPU (the matmuls of one 256-token pair already fill its vector units) but their
      blocks above glibc's mmap threshold cost page faults in every layer.
    - CUDA: :data:`CUDA_MEMORY_FRACTION` of the free memory over an estimate of the bytes one token
      needs in a layer (hidden states, feed-forward, its row of the attention bias),
      4096..131072, multiple of 1024.
    - Other accelerators: 8192.
    """
    import torch

    if batch_tokens is not None:
        if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        return BatchBudget(batch_tokens, "forced")
    size = torch.empty((), dtype=dtype).element_size()
    if device.type == "cpu":
        tokens = _round_down(CPU_MAX_BLOCK_BYTES / (intermediate_size * size), 512, 1024, 16384)
        return BatchBudget(
            tokens, f"cpu: FFN block of {intermediate_size} x {size} B under 30 MiB per forward"
        )
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_token = size * (6 * hidden_size + 2 * intermediate_size + num_heads * max_pair_length)
        tokens = _round_down(CUDA_MEMORY_FRACTION * free / per_token, 1024, 4096, 131072)
        return BatchBudget(tokens, f"cuda: {CUDA_MEMORY_FRACTION:.0%} of {free >> 20} MiB free")
    return BatchBudget(8192, f"{device.type}: fixed")
