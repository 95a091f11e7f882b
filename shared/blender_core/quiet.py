"""Quiet model loading: transformers' load report and progress bars off where we explain them.

Loading a checkpoint into another head (MiniLM's encoder weights into ``BertForMaskedLM`` for the
MLM-scoring baseline) makes transformers print a "checkpoint seem corrupted" line, a table of
missing and unexpected keys and a progress bar, although the missing head is expected and the
library says so in one line of its own. :func:`quiet_transformers` lowers transformers' logging to
errors and hides its progress bars for the duration of a load, through transformers' public
logging API (``get_verbosity``/``set_verbosity``, ``disable_progress_bar``), and restores both
afterwards. Sections may nest and run in several threads: the settings are restored when the last
one ends.

Example:
    .. code-block:: python

        from blender_core.quiet import quiet_transformers

        with quiet_transformers():
            model = AutoModelForMaskedLM.from_pretrained(path)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["quiet_transformers"]

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, bool] | None = None  # (verbosity, progress bars on) before the first section


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Within the block, transformers logs errors only and shows no progress bars."""
    from transformers.utils import logging as hf_logging

    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
            hf_logging.set_verbosity(hf_logging.ERROR)
            hf_logging.disable_progress_bar()
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
