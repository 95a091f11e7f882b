"""Checkpoint-layout I/O of a PairRanker: which published layout a folder holds, where it is
(local or a hub snapshot), its tokenizer and weights, and writing the hf layout's files.

The network and its configuration live in :mod:`blender_core.modeling`; this module reads and
writes files only (torch and transformers load inside the functions that need them). Layouts:

1. ``"pairrm"`` (``llm-blender/PairRM``): ranker ``config.json`` / ``ranker_config.json`` and
   ``model.safetensors``.
2. ``"hf"`` (``llm-blender/PairRM-hf``): the backbone's transformers ``config.json`` plus the
   ranker keys, ``model.safetensors``; what :func:`write_ranker_files` and
   :meth:`~blender_core.modeling.PairRankerModel.save_pretrained` write.
3. ``"legacy"`` (``llm-blender/pair-ranker``): like 1 with ``pytorch_model.bin``.

Example:
    .. code-block:: python

        from pathlib import Path

        from blender_core.checkpoints import detect_layout

        detect_layout(Path("runs/ranker"))  # "hf"
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from blender_core.io import atomic_write_text

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from blender_core.modeling import PairRankerConfig

__all__ = [
    "BACKBONE_PREFIX",
    "HEAD_PREFIX",
    "TOKENIZER_FILES",
    "CheckpointError",
    "Layout",
    "detect_layout",
    "load_state_dict",
    "load_tokenizer",
    "normalise_keys",
    "read_json_object",
    "resolve_checkpoint_dir",
    "write_ranker_files",
]

Layout = Literal["pairrm", "hf", "legacy"]

_IGNORED_KEYS = frozenset({"pretrained_model.embeddings.position_ids"})
BACKBONE_PREFIX = "pretrained_model."
HEAD_PREFIX = "head_layer."

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "spm.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing files, unknown layout, or mismatched weights."""


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (:class:`CheckpointError`: missing, invalid, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} not found") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def detect_layout(path: Path) -> Layout:
    """Which published layout a local checkpoint directory uses."""
    config_path = path / "config.json"
    if not config_path.is_file():
        if (path / "ranker_config.json").is_file():
            config_path = path / "ranker_config.json"
        else:
            raise CheckpointError(f"{path} has no config.json: not a PairRanker checkpoint")
    data = read_json_object(config_path)
    archs = data.get("architectures") or []
    is_ranker = "ranker_type" in data or ("model_name" in data and "hidden_size" not in data)
    if not is_ranker and (
        any(str(a).endswith("PairRM") for a in archs)
        or ("n_tasks" in data and "hidden_size" in data)
    ):
        return "hf"
    if not is_ranker:
        raise CheckpointError(
            f"{config_path} is neither a ranker config (ranker_type/model_name) nor a PairRM "
            "transformers config (architectures [...PairRM], n_tasks, hidden_size)"
        )
    if (path / "model.safetensors").is_file():
        return "pairrm"
    if (path / "pytorch_model.bin").is_file():
        return "legacy"
    raise CheckpointError(f"{path} has no model.safetensors or pytorch_model.bin")


def resolve_checkpoint_dir(name_or_path: str | os.PathLike[str], **hub_kwargs: Any) -> Path:
    """A local directory for ``name_or_path``: the directory itself, or a hub snapshot of it.

    Only the ranker's own files are fetched (configs, weights, tokenizer), never a backbone.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file, not a checkpoint directory")
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise CheckpointError(f"{name!r} is neither a local directory nor a hub id (owner/name)")
    from huggingface_hub import list_repo_files, snapshot_download

    from blender_core.hub import HubUnavailableError, local_snapshot

    weights = ["model.safetensors", "pytorch_model.bin"]
    patterns = ["config.json", "ranker_config.json", *weights, *TOKENIZER_FILES]
    try:  # offline: the local cache or one clear error now, not half a minute of retries
        cached = local_snapshot(
            name, allow_patterns=patterns, revision=hub_kwargs.get("revision"),
            what="PairRanker checkpoint",
        )  # fmt: skip
    except HubUnavailableError as exc:
        raise CheckpointError(str(exc)) from exc
    if cached is not None:
        return cached
    try:
        # Fetch one weights file only (a repo may carry both, 1.7 GB each).
        files = set(
            list_repo_files(
                name, revision=hub_kwargs.get("revision"), token=hub_kwargs.get("token")
            )
        )
        weights = ["model.safetensors"] if "model.safetensors" in files else ["pytorch_model.bin"]
    except Exception:  # offline or no listing: the snapshot call below decides
        pass
    try:
        local = snapshot_download(
            name,
            allow_patterns=["config.json", "ranker_config.json", *weights, *TOKENIZER_FILES],
            **hub_kwargs,
        )
    except Exception as exc:
        raise CheckpointError(f"cannot fetch {name!r} from the hub: {exc}") from exc
    return Path(local)


def load_tokenizer(
    checkpoint_dir: str | os.PathLike[str], config: PairRankerConfig
) -> PreTrainedTokenizerBase:
    """The tokenizer saved beside the checkpoint (never the backbone's), prefix ids checked.

    The backbone config is passed so that a ranker ``config.json`` whose ``model_type`` says
    ``"deberta"`` cannot pick the wrong tokenizer class.
    """
    from transformers import AutoTokenizer

    path = Path(checkpoint_dir)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:5])}, ...)"
        )
    tokenizer = AutoTokenizer.from_pretrained(
        str(path), config=config.backbone, trust_remote_code=False
    )
    config.set_token_ids(tokenizer)
    return tokenizer


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint folder's weights (``model.safetensors`` or ``pytorch_model.bin``), on CPU."""
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise CheckpointError(f"{path / 'pytorch_model.bin'} does not hold a state dict")
        return state
    raise CheckpointError(f"{path} has no model.safetensors or pytorch_model.bin")


def normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the ``pretrained_model.`` prefix where the hf layout omits it; drop ignorable keys."""
    has_prefix = any(k.startswith(BACKBONE_PREFIX) for k in state)
    out = {}
    for key, value in state.items():
        if not has_prefix and not key.startswith(HEAD_PREFIX):
            key = BACKBONE_PREFIX + key
        if key in _IGNORED_KEYS:
            continue
        out[key] = value
    return out


def write_ranker_files(model: Any, tokenizer: PreTrainedTokenizerBase | None, out: Path) -> None:
    """Write the hf layout's ``config.json`` (atomically) and the tokenizer into ``out``.

    The config's ``vocab_size`` is the model's embedding rows (resized for the prefix tokens).
    Weights are the caller's: :meth:`~blender_core.modeling.PairRankerModel.save_pretrained` or
    the ``Trainer``'s checkpointing.
    """
    config = model.config
    config.backbone.vocab_size = int(model.pretrained_model.get_input_embeddings().weight.shape[0])
    atomic_write_text(
        out / "config.json", json.dumps(config.to_hf_dict(), indent=2, sort_keys=True) + "\n"
    )
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
