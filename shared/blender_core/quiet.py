"""Quiet model loading: transformers' load report and progress bars off where we explain them.

Loading a checkpoint into another head (MiniLM's encoder weights into ``BertForMaskedLM`` for the
MLM-scoring baseline) makes transformers print a "checkpoint seem corrupted" line, a table of
missing and unexpected keys and a progress bar, although the missing head is expected and the
library says so in one line of its own. :func:`quiet_transformers` lowers transformers' logging to
errors and hides its progress bars for the duration of a load, through transformers' public
logging API (``get_verbosity``/``set_verbosity``, ``disable_progress_bar``), and restores both
afterwards. transformers' GGUF conversion ("Converting and de-quantizing GGUF tensors", the first
SmolLM2 load) draws a plain ``tqdm`` bar that ignores that switch: within a section it is drawn
disabled too. Sections may nest and run in several threads: the settings are restored when the
last one ends.

Example:
    .. code-block:: python

        from blender_core.quiet import quiet_transformers

        with quiet_transformers():
            model = AutoModelForMaskedLM.from_pretrained(path)
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["quiet_transformers"]

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, bool] | None = None  # (verbosity, progress bars on) before the first section
_saved_gguf_tqdm: Any = None  # transformers' GGUF module's own tqdm, while a section runs


def _gguf_module() -> Any:
    """transformers' GGUF loader module, when the ``gguf`` package is installed (else None)."""
    if importlib.util.find_spec("gguf") is None:
        return None
    try:
        from transformers import modeling_gguf_pytorch_utils
    except ImportError:
        return None
    return modeling_gguf_pytorch_utils


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Within the block, transformers logs errors only and shows no progress bars."""
    from transformers.utils import logging as hf_logging

    global _depth, _saved, _saved_gguf_tqdm
    with _lock:
        if _depth == 0:
            _saved = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
            hf_logging.set_verbosity(hf_logging.ERROR)
            hf_logging.disable_progress_bar()
            gguf = _gguf_module()
            if gguf is not None and hasattr(gguf, "tqdm"):
                _saved_gguf_tqdm = gguf.tqdm
                gguf.tqdm = functools.partial(gguf.tqdm, disable=True)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                verbosity, bars = _saved
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
                _saved = None
                if _saved_gguf_tqdm is not None:
                    gguf = _gguf_module()
                    if gguf is not None:
                        gguf.tqdm = _saved_gguf_tqdm
                    _saved_gguf_tqdm = None
