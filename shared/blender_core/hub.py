"""Offline detection for hub ids: a model in the local cache loads, anything else fails fast.

Without network, ``huggingface_hub`` retries every request for about half a minute before it
gives up. :func:`local_snapshot` asks first whether the hub can be used at all: it cannot when
``HF_HUB_OFFLINE=1`` is set (``huggingface_hub.is_offline_mode``) or when one short probe of the
hub endpoint (``HF_ENDPOINT``, 3 s deadline, no retries, the result kept for the process) gets no
HTTP answer. Then a hub id is resolved from the local Hugging Face cache only, and a model that
is not cached raises :class:`HubUnavailableError` at once, with one message that says what to do.
When the hub is reachable, :func:`local_snapshot` returns ``None`` and the caller downloads as
usual.

Every hub loader of the library goes through it (PairRanker checkpoints, GenFuser and the other
fusers, Hugging Face generators), so eager loading (``Blender(ranker="llm-blender/PairRM")``) and
lazy loading (``ChatBlender`` or ``PairRankerRerank`` on first use) fail with the same error.

Example:
    .. code-block:: python

        from blender_core.hub import local_snapshot

        path = local_snapshot("llm-blender/PairRM")  # None: online, download as usual
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "PROBE_TIMEOUT_S",
    "HubUnavailableError",
    "hub_unavailable_reason",
    "local_snapshot",
    "require_cached",
]

PROBE_TIMEOUT_S = 3.0
"""Deadline of the one request that tells whether the hub endpoint answers."""

_TRUE = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads boolean variables
_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}  # endpoint -> None (reachable) or why it is not


class HubUnavailableError(OSError):
    """A hub id that is not in the local cache while the hub cannot be used (offline).

    Attributes:
        missing: The hub ids that are missing (one for :func:`local_snapshot`, every one for
            :func:`require_cached`).
    """

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def _probe(endpoint: str) -> str | None:
    """``None`` when ``endpoint`` gives any HTTP answer within the deadline, else the reason."""
    import httpx

    try:
        httpx.head(endpoint, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"the hub at {endpoint} is unreachable ({type(exc).__name__}: {exc})"
    return None


def hub_unavailable_reason() -> str | None:
    """Why the hub cannot be used now, or ``None`` when it can.

    ``HF_HUB_OFFLINE=1`` answers without any request; otherwise the endpoint is probed once per
    process (one request, :data:`PROBE_TIMEOUT_S` deadline) and the answer is kept.
    """
    from huggingface_hub import is_offline_mode

    raw = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    if is_offline_mode() or raw in _TRUE:  # the variable may be set after the hub's import
        return "HF_HUB_OFFLINE=1 is set (offline mode)"
    endpoint = _endpoint()
    with _probe_lock:
        if endpoint not in _probed:
            _probed[endpoint] = _probe(endpoint)
        return _probed[endpoint]


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and "\\" not in name


def local_snapshot(
    repo_id: str | os.PathLike[str],
    *,
    allow_patterns: Sequence[str] | None = None,
    revision: str | None = None,
    what: str = "model",
) -> Path | None:
    """The cached snapshot of ``repo_id`` when the hub cannot be used; ``None`` when it can.

    A local directory, or anything that is not an ``owner/name`` hub id, also gives ``None``
    (the caller handles paths). Nothing is downloaded here.

    Args:
        repo_id: A hub id such as ``"llm-blender/PairRM"``.
        allow_patterns: The files the caller needs (as for ``snapshot_download``); a cached
            snapshot must hold them.
        revision: A branch, tag or commit (``None``: the default branch).
        what: What the id names, for the error message (``"PairRanker checkpoint"``).

    Raises:
        HubUnavailableError: the hub cannot be used and ``repo_id`` is not in the local cache.
    """
    name = str(repo_id)
    if Path(name).expanduser().exists() or not _looks_like_hub_id(name):
        return None
    reason = hub_unavailable_reason()
    if reason is None:
        return None
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(
            name,
            revision=revision,
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
            local_files_only=True,
        )
    except Exception as exc:  # LocalEntryNotFoundError, or a cache without these files
        raise HubUnavailableError(
            f"cannot fetch {name!r} from the hub: {reason}, and the {what} is not in the local "
            "Hugging Face cache. Download it once where the hub is reachable (hf download "
            f"{name}), or pass a local directory, or use a model that ships offline (ranker "
            "'consensus', the demo's SmolLM2 members)",
            missing=[name],
        ) from exc
    return Path(local)


def require_cached(specs: Sequence[tuple[str, str]]) -> None:
    """Check up front that every hub id among ``specs`` can be had; name all missing ones at once.

    A command that loads several models (``blender demo --ranker ... --fuser ...``) calls this
    before loading any, so that a user offline learns about every missing model from one
    message instead of one per run. Paths, non-hub names and ids that are cached pass; nothing
    is downloaded and, while the hub is reachable, nothing is checked.

    Args:
        specs: ``(name, what)`` pairs, e.g. ``("llm-blender/PairRM", "PairRanker checkpoint")``.

    Raises:
        HubUnavailableError: the hub cannot be used and at least one hub id is not cached;
            ``missing`` lists every one.
    """
    missing: list[tuple[str, str]] = []
    for name, what in specs:
        try:
            local_snapshot(name, what=what)
        except HubUnavailableError:
            missing.append((name, what))
    if not missing:
        return
    reason = hub_unavailable_reason() or "the hub cannot be used"
    names = ", ".join(f"{name!r} ({what})" for name, what in missing)
    them = "them" if len(missing) > 1 else "it"
    downloads = " and ".join(f"hf download {name}" for name, _ in missing)
    raise HubUnavailableError(
        f"cannot fetch {names} from the hub: {reason}, and "
        f"{'they are' if len(missing) > 1 else 'it is'} not in the local Hugging Face cache. "
        f"Download {them} once where the hub is reachable ({downloads}), or pass local "
        "directories, or use the models that ship offline (ranker 'consensus', the demo's "
        "SmolLM2 members)",
        missing=[name for name, _ in missing],
    )
