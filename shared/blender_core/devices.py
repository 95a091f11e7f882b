"""Device and dtype choice shared by every model wrapper."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "resolve_dtype"]

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
