"""The PairRanker network and its configuration; loading and saving use the published layouts.

A PairRanker is an encoder (DeBERTa-v3 in every published checkpoint, any ``AutoModel`` encoder
here) plus a small head. One ordered pair ``(A, B)`` is encoded as::

    [CLS] <|source|> source [SEP] [CLS] <|candidate1|> A [SEP] [CLS] <|candidate2|> B [SEP] [PAD]...

and the head scores the hidden states at the three prefix tokens:
``left = head(cat(h_source, h_cand1))``, ``right = head(cat(h_source, h_cand2))``;
``logit(A, B) = mean over tasks of (left - right)`` (> 0: A is better).

Three published checkpoint layouts load strictly (no missing or unexpected weight):

1. ``"pairrm"`` (``llm-blender/PairRM``): ``config.json`` (= ``ranker_config.json``) is a *ranker*
   config naming the backbone in ``model_name``; weights in ``model.safetensors``.
2. ``"hf"`` (``llm-blender/PairRM-hf``): ``config.json`` is the backbone's transformers config plus
   ``architectures: ["DebertaV2PairRM"]``, ``n_tasks``, ``drop_out`` and the prefix token ids.
3. ``"legacy"`` (``llm-blender/pair-ranker``): like 1, weights in ``pytorch_model.bin`` and the
   lengths spelled ``source_max_length`` / ``candidate_max_length``.

:meth:`PairRankerModel.save_pretrained` writes layout 2 with the tokenizer beside it. The file
side (layout detection, hub snapshots, tokenizer and weight files) is
:mod:`blender_core.checkpoints`; its names stay importable from here.

Example:
    .. code-block:: python

        from blender_core.modeling import PairRankerModel

        # A fresh ranker to train, from any encoder (the four prefix tokens are added):
        model, tokenizer = PairRankerModel.from_backbone("microsoft/deberta-v3-small")
        # A published checkpoint:
        model, tokenizer = PairRankerModel.from_pretrained("llm-blender/PairRM")
        model.save_pretrained("my-ranker", tokenizer)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from blender_core.checkpoints import (
    BACKBONE_PREFIX,
    CheckpointError,
    Layout,
    detect_layout,
    load_state_dict,
    load_tokenizer,
    normalise_keys,
    read_json_object,
    resolve_checkpoint_dir,
    write_ranker_files,
)
from blender_core.encoding import (
    ADDED_TOKENS,
    CAND1_PREFIX,
    CAND2_PREFIX,
    CAND_PREFIX,
    SOURCE_PREFIX,
)
from blender_core.io import atomic_path

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = [
    "ADDED_TOKENS",
    "CAND1_PREFIX",
    "CAND2_PREFIX",
    "CAND_PREFIX",
    "DEBERTA_V3_STRUCTURE",
    "KNOWN_BACKBONES",
    "SOURCE_PREFIX",
    "CheckpointError",
    "Layout",
    "PairRankerConfig",
    "PairRankerModel",
    "detect_layout",
    "load_tokenizer",
    "resolve_checkpoint_dir",
    "validate_config_dict",
]


#: The structure shared by the deberta-v3 backbones (and so PairRM), apart from their sizes.
DEBERTA_V3_STRUCTURE: dict[str, Any] = {
    "model_type": "deberta-v2",
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "max_position_embeddings": 512,
    "relative_attention": True,
    "position_buckets": 256,
    "norm_rel_ebd": "layer_norm",
    "share_att_key": True,
    "pos_att_type": ["p2c", "c2p"],
    "layer_norm_eps": 1e-7,
    "max_relative_positions": -1,
    "position_biased_input": False,
    "type_vocab_size": 0,
    "vocab_size": 128100,
    "pad_token_id": 0,
}

#: Backbone configs known without a download (the hub's ``config.json`` of each model).
KNOWN_BACKBONES: dict[str, dict[str, Any]] = {
    "microsoft/deberta-v3-large": {
        **DEBERTA_V3_STRUCTURE,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    "microsoft/deberta-v3-base": {
        **DEBERTA_V3_STRUCTURE,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "microsoft/deberta-v3-small": {
        **DEBERTA_V3_STRUCTURE,
        "hidden_size": 768,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "microsoft/deberta-v3-xsmall": {
        **DEBERTA_V3_STRUCTURE,
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
    },
}

# Keys of the hf layout's config.json that belong to the ranker, not to the backbone config.
_RANKER_HF_KEYS = (
    "n_tasks",
    "drop_out",
    "source_prefix_id",
    "cand1_prefix_id",
    "cand2_prefix_id",
    "cand_prefix_id",
    "source_maxlength",
    "candidate_maxlength",
    "source_max_length",
    "candidate_max_length",
    "architectures",
)


@dataclass
class PairRankerConfig:
    """Everything that defines a PairRanker besides its weights.

    Attributes:
        backbone: The encoder's transformers config (``DebertaV2Config`` for the published models).
        model_name: Where the backbone came from (a hub id or a path); informative for layout 2.
        n_tasks: Number of head outputs (1 in every published checkpoint).
        drop_out: Dropout of the head (0.05 in every published checkpoint).
        source_maxlength: Token budget of the source part, ``[CLS]`` and ``[SEP]`` included.
        candidate_maxlength: Base token budget of each candidate part (see
            :mod:`blender_core.encoding`).
        source_prefix_id: Id of ``<|source|>``; the other three likewise.
        layout: The layout it was read from (``"pairrm"``, ``"hf"`` or ``"legacy"``); saving
            writes ``"hf"``.
        extra: Keys of the ranker config this project does not use, kept for reference.

    Example:
        .. code-block:: python

            config = PairRankerConfig.from_ranker_dict(
                {"model_name": "microsoft/deberta-v3-large", "source_maxlength": 1224,
                 "candidate_maxlength": 412, "n_tasks": 1, "drop_out": 0.05}
            )
            config.backbone.hidden_size  # 1024
    """

    backbone: PretrainedConfig
    model_name: str | None = None
    n_tasks: int = 1
    drop_out: float = 0.05
    source_maxlength: int = 1224
    candidate_maxlength: int = 412
    source_prefix_id: int | None = None
    cand1_prefix_id: int | None = None
    cand2_prefix_id: int | None = None
    cand_prefix_id: int | None = None
    layout: Layout = "hf"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        """Hidden size of the backbone."""
        return int(self.backbone.hidden_size)

    @property
    def prefix_ids(self) -> tuple[int, int, int]:
        """Ids of ``<|source|>``, ``<|candidate1|>`` and ``<|candidate2|>``."""
        ids = (self.source_prefix_id, self.cand1_prefix_id, self.cand2_prefix_id)
        if any(i is None for i in ids):
            raise ValueError(
                "the prefix token ids are not set: call set_token_ids(tokenizer) first"
            )
        return ids  # type: ignore[return-value]

    @property
    def max_pair_length(self) -> int:
        """Longest possible encoded pair: ``source_maxlength + 2 * candidate_maxlength`` tokens."""
        return self.source_maxlength + 2 * self.candidate_maxlength

    def check_lengths(self) -> None:
        """Refuse lengths below 3 tokens, or pairs longer than an absolute-position backbone allows.

        DeBERTa-v3 (relative positions only) has no limit; BERT-like encoders stop at
        ``max_position_embeddings`` (512 for MiniLM).
        """
        if min(self.source_maxlength, self.candidate_maxlength) < 3:
            raise ValueError(
                f"source_maxlength ({self.source_maxlength}) and candidate_maxlength "
                f"({self.candidate_maxlength}) must be >= 3"
            )
        relative_only = str(self.backbone.model_type).startswith("deberta") and not getattr(
            self.backbone, "position_biased_input", True
        )
        limit = getattr(self.backbone, "max_position_embeddings", None)
        if not relative_only and limit is not None and self.max_pair_length > int(limit):
            raise ValueError(
                f"source_maxlength + 2 * candidate_maxlength = {self.max_pair_length} tokens "
                f"exceeds "
                f"the backbone's max_position_embeddings ({limit}): lower the lengths"
            )

    def set_token_ids(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Take the four prefix ids from ``tokenizer``; refuse ids that disagree with the config."""
        names = ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id", "cand_prefix_id")
        for name, token in zip(names, ADDED_TOKENS, strict=True):
            token_id: Any = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise CheckpointError(
                    f"the tokenizer has no {token!r} token: a PairRanker tokenizer needs "
                    f"{', '.join(ADDED_TOKENS)} (PairRankerModel.from_backbone adds them)"
                )
            current = getattr(self, name)
            if current is not None and current != token_id:
                raise CheckpointError(
                    f"config {name}={current} but the tokenizer maps {token!r} to {token_id}"
                )
            setattr(self, name, int(token_id))

    # ---- the three published formats -------------------------------------------------------

    @classmethod
    def from_ranker_dict(
        cls,
        data: dict[str, Any],
        *,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        layout: Layout = "pairrm",
        source: str = "ranker config",
    ) -> PairRankerConfig:
        """Read a ranker config (``llm-blender/PairRM`` / ``pair-ranker`` style).

        The backbone config comes from ``model_name``: a known hub name (no download), a local
        directory (absolute, or relative to ``checkpoint_dir``) with a ``config.json``, or, last,
        the hub's config only (``AutoConfig.from_pretrained``; never the backbone weights).
        """
        validate_config_dict(data, source)
        model_name = data.get("model_name")
        if not isinstance(model_name, str) or not model_name:
            raise CheckpointError("the ranker config has no 'model_name' naming its backbone")
        backbone = backbone_config(model_name, checkpoint_dir=checkpoint_dir)
        used = {
            "model_name",
            "n_tasks",
            "drop_out",
            "source_maxlength",
            "candidate_maxlength",
            "source_max_length",
            "candidate_max_length",
        }
        return cls(
            backbone=backbone,
            model_name=model_name,
            n_tasks=int(data.get("n_tasks", 1)),
            drop_out=float(data.get("drop_out", 0.05)),
            source_maxlength=_length(data, "source", 128),
            candidate_maxlength=_length(data, "candidate", 128),
            layout=layout,
            extra={k: v for k, v in data.items() if k not in used},
        )

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any], *, source: str = "config.json") -> PairRankerConfig:
        """Read an hf-layout ``config.json`` (``llm-blender/PairRM-hf`` style)."""
        from transformers import AutoConfig

        validate_config_dict(data, source)
        backbone_dict = {k: v for k, v in data.items() if k not in _RANKER_HF_KEYS}
        model_type = backbone_dict.pop("model_type", None)
        if not model_type:
            raise CheckpointError("the hf-layout config.json has no 'model_type'")
        backbone_dict.pop("transformers_version", None)
        backbone = AutoConfig.for_model(model_type, **backbone_dict)

        def _opt_int(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        return cls(
            backbone=backbone,
            model_name=data.get("_name_or_path") or None,
            n_tasks=int(data.get("n_tasks", 1)),
            drop_out=float(data.get("drop_out", 0.05)),
            # The hub's PairRM-hf config has no lengths: its README uses PairRM's 1224/412.
            source_maxlength=_length(data, "source", 1224),
            candidate_maxlength=_length(data, "candidate", 412),
            source_prefix_id=_opt_int("source_prefix_id"),
            cand1_prefix_id=_opt_int("cand1_prefix_id"),
            cand2_prefix_id=_opt_int("cand2_prefix_id"),
            cand_prefix_id=_opt_int("cand_prefix_id"),
            layout="hf",
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The hf-layout ``config.json``: backbone config + the ranker's keys."""
        data = self.backbone.to_dict()
        data.pop("_name_or_path", None)
        data.pop("dtype", None)
        data.pop("torch_dtype", None)
        data["architectures"] = [_architecture_name(self.backbone)]
        data.update(
            {
                "n_tasks": self.n_tasks,
                "drop_out": self.drop_out,
                "source_prefix_id": self.source_prefix_id,
                "cand1_prefix_id": self.cand1_prefix_id,
                "cand2_prefix_id": self.cand2_prefix_id,
                "cand_prefix_id": self.cand_prefix_id,
                "source_maxlength": self.source_maxlength,
                "candidate_maxlength": self.candidate_maxlength,
            }
        )
        if self.model_name:
            data["_name_or_path"] = self.model_name
        return data

    def to_ranker_dict(self, *, legacy: bool = False) -> dict[str, Any]:
        """The ranker config of layouts 1 (``legacy=False``) and 3 (``legacy=True`` spelling)."""
        src, cand = (
            ("source_max_length", "candidate_max_length")
            if legacy
            else ("source_maxlength", "candidate_maxlength")
        )
        data: dict[str, Any] = {
            "ranker_type": "pairranker",
            "model_type": "deberta" if "deberta" in self.backbone.model_type else "bert",
            "model_name": self.model_name,
            src: self.source_maxlength,
            cand: self.candidate_maxlength,
            "n_tasks": self.n_tasks,
            "drop_out": self.drop_out,
        }
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | os.PathLike[str]) -> PairRankerConfig:
        """Read the config of a local checkpoint directory in any of the three layouts."""
        path = Path(checkpoint_dir)
        layout = detect_layout(path)
        name = "ranker_config.json" if (path / "ranker_config.json").is_file() else "config.json"
        if layout == "hf":
            name = "config.json"
        source = str(path / name)
        data = read_json_object(path / name)
        try:
            if layout == "hf":
                return cls.from_hf_dict(data, source=source)
            return cls.from_ranker_dict(data, checkpoint_dir=path, layout=layout, source=source)
        except CheckpointError:
            raise
        except (TypeError, ValueError) as exc:  # a value transformers' config refuses
            raise CheckpointError(f"{source}: {exc}") from exc


# Bounds checked before anything is allocated: (minimum, maximum) of each integer setting. They
# are far above any real encoder and far below what would exhaust memory.
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "n_tasks": (1, 1024),
    "source_maxlength": (3, 1 << 20),
    "candidate_maxlength": (3, 1 << 20),
    "source_max_length": (3, 1 << 20),
    "candidate_max_length": (3, 1 << 20),
    "source_prefix_id": (0, 1 << 24),
    "cand1_prefix_id": (0, 1 << 24),
    "cand2_prefix_id": (0, 1 << 24),
    "cand_prefix_id": (0, 1 << 24),
    "hidden_size": (1, 1 << 16),
    "num_hidden_layers": (1, 512),
    "num_attention_heads": (1, 1024),
    "intermediate_size": (1, 1 << 18),
    "vocab_size": (1, 1 << 24),
    "max_position_embeddings": (0, 1 << 24),
    "type_vocab_size": (0, 1024),
    "position_buckets": (-1, 1 << 20),
    "max_relative_positions": (-1, 1 << 24),
}
_MAX_EMBEDDING_PARAMS = 1 << 33  # vocab_size x hidden_size: 8 G parameters (32 GiB in fp32)


def validate_config_dict(data: dict[str, Any], source: str) -> None:
    """Check the types and sizes of a checkpoint's config before anything is allocated.

    Args:
        data: The decoded ``config.json`` / ``ranker_config.json``.
        source: The file name used in errors.

    Raises:
        CheckpointError: naming ``source`` and the key, for a wrong type (a string, a float or a
            bool where an integer belongs, a non-number dropout) or an absurd size
            (``n_tasks=1e8``, ``hidden_size=10**9``...).
    """
    for key, (low, high) in _INT_BOUNDS.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(
                f"{source}: {key} must be an integer, got {type(value).__name__} {value!r:.40}"
            )
        if not low <= value <= high:
            raise CheckpointError(f"{source}: {key}={value} is outside [{low}, {high}]")
    for key in ("drop_out", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CheckpointError(f"{source}: {key} must be a number, got {value!r:.40}")
        if not 0.0 <= float(value) < 1.0:
            raise CheckpointError(f"{source}: {key}={value} is outside [0, 1)")
    for key in ("model_name", "model_type", "_name_or_path"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise CheckpointError(f"{source}: {key} must be a string, got {value!r:.40}")
    vocab, hidden = data.get("vocab_size"), data.get("hidden_size")
    if (
        isinstance(vocab, int)
        and isinstance(hidden, int)
        and vocab * hidden > _MAX_EMBEDDING_PARAMS
    ):
        raise CheckpointError(
            f"{source}: vocab_size x hidden_size = {vocab * hidden} parameters is too large"
        )
    heads = data.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        raise CheckpointError(
            f"{source}: hidden_size={hidden} is not a multiple of num_attention_heads={heads}"
        )


def _length(data: dict[str, Any], part: str, default: int) -> int:
    """Read ``{part}_maxlength`` or ``{part}_max_length``; refuse two different values."""
    a, b = data.get(f"{part}_maxlength"), data.get(f"{part}_max_length")
    if a is not None and b is not None and int(a) != int(b):
        raise CheckpointError(f"config has {part}_maxlength={a} and {part}_max_length={b}")
    value = a if a is not None else b
    value = default if value is None else int(value)
    if value < 3:
        raise CheckpointError(
            f"{part} length must be >= 3 tokens ([CLS] prefix ... [SEP]), got {value}"
        )
    return value


def _architecture_name(backbone: PretrainedConfig) -> str:
    names = {"deberta-v2": "DebertaV2", "deberta": "Deberta", "bert": "Bert", "roberta": "Roberta"}
    model_type = str(backbone.model_type)
    base = names.get(
        model_type, "".join(p.capitalize() for p in model_type.replace("_", "-").split("-"))
    )
    return f"{base}PairRM"


def backbone_config(
    model_name: str, *, checkpoint_dir: str | os.PathLike[str] | None = None
) -> PretrainedConfig:
    """The transformers config of a ranker config's backbone, without downloading weights."""
    from transformers import AutoConfig

    candidates = [Path(model_name)]
    if checkpoint_dir is not None and not Path(model_name).is_absolute():
        candidates.insert(0, Path(checkpoint_dir) / model_name)
    for local in candidates:
        if (local / "config.json").is_file():
            data = read_json_object(local / "config.json")
            validate_config_dict(data, str(local / "config.json"))
            model_type = data.pop("model_type", None)
            if not model_type:
                raise CheckpointError(f"{local / 'config.json'} has no 'model_type'")
            data.pop("transformers_version", None)
            return AutoConfig.for_model(model_type, **data)
    known = KNOWN_BACKBONES.get(model_name)
    if known is not None:
        data = dict(known)
        return AutoConfig.for_model(data.pop("model_type"), **data)
    try:
        return AutoConfig.from_pretrained(model_name, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot get the config of the backbone {model_name!r}: it is not a known backbone "
            f"({', '.join(KNOWN_BACKBONES)}), not a local directory with a config.json, "
            f"and the hub lookup failed: {exc}"
        ) from exc


def _gather_first(
    hidden: torch.Tensor, input_ids: torch.Tensor, token_id: int, name: str
) -> torch.Tensor:
    """Hidden state at the first position of ``token_id`` in each row."""
    hits = input_ids == token_id
    if not bool(hits.any(dim=1).all()):
        raise ValueError(f"every row of input_ids must contain {name} (id {token_id})")
    positions = hits.int().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]


class PairRankerModel(nn.Module):
    """The PairRanker network: ``pretrained_model`` (any ``AutoModel`` encoder) + ``head_layer``.

    ``head_layer = Sequential(Dropout(p), Linear(2H, H), Tanh(), Dropout(p), Linear(H, n_tasks))``;
    state-dict keys are ``pretrained_model.*`` and ``head_layer.{1,4}.*`` as in the published
    checkpoints.

    Example:
        .. code-block:: python

            from blender_core.encoding import PairEncoder
            from blender_core.modeling import PairRankerModel

            model, tokenizer = PairRankerModel.from_pretrained("llm-blender/PairRM")
            encoder = PairEncoder(tokenizer, model.config)
            batch = encoder.collate([encoder.encode_pair("Say hi", "hi!", "go away")])
            left, right = model(batch["input_ids"], batch["attention_mask"])
            logit = (left - right).mean(-1)  # > 0: "hi!" is better
    """

    def __init__(self, config: PairRankerConfig, *, init_backbone: bool = True) -> None:
        super().__init__()
        from transformers import AutoModel

        self.config = config
        if init_backbone:
            self.pretrained_model = AutoModel.from_config(config.backbone)
        else:
            from transformers.initialization import no_init_weights

            with no_init_weights():
                self.pretrained_model = AutoModel.from_config(config.backbone)
        hidden = config.hidden_size
        self.head_layer = nn.Sequential(
            nn.Dropout(config.drop_out),
            nn.Linear(2 * hidden, hidden),
            nn.Tanh(),
            nn.Dropout(config.drop_out),
            nn.Linear(hidden, config.n_tasks),
        )

    # ---- computation ----------------------------------------------------------------

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task scores ``(left, right)``, each ``[batch, n_tasks]``, for encoded pairs.

        ``input_ids`` must hold exactly one ``<|source|>``, ``<|candidate1|>`` and
        ``<|candidate2|>`` per row (what :mod:`blender_core.encoding` builds).
        ``logit(A, B) = (left - right).mean(-1)``; for training, the "instructgpt" loss is
        ``-logsigmoid((left - right) * sign(q_a - q_b))``.
        """
        source_id, cand1_id, cand2_id = self.config.prefix_ids
        hidden = self.pretrained_model(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        h_source = _gather_first(hidden, input_ids, source_id, "<|source|>")
        h_cand1 = _gather_first(hidden, input_ids, cand1_id, "<|candidate1|>")
        h_cand2 = _gather_first(hidden, input_ids, cand2_id, "<|candidate2|>")
        left = self.head_layer(torch.cat([h_source, h_cand1], dim=-1))
        right = self.head_layer(torch.cat([h_source, h_cand2], dim=-1))
        return left, right

    def pair_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``logit(A, B)`` per row: the mean over tasks of ``left - right``, in float32."""
        left, right = self(input_ids, attention_mask)
        return (left.float() - right.float()).mean(dim=-1)

    # ---- construction ---------------------------------------------------------------

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        source_maxlength: int = 128,
        candidate_maxlength: int = 128,
        n_tasks: int = 1,
        drop_out: float = 0.05,
        seed: int | None = None,
        **from_pretrained_kwargs: Any,
    ) -> tuple[PairRankerModel, PreTrainedTokenizerBase]:
        """A fresh ranker on a pretrained encoder, ready to train: ``(model, tokenizer)``.

        Loads the encoder's weights and tokenizer, appends the four prefix tokens as normal
        (not special) tokens, resizes the embeddings to ``len(tokenizer)`` and initialises the head
        (``seed`` makes the head and the new embedding rows reproducible).
        """
        from transformers import AutoModel, AutoTokenizer

        from_pretrained_kwargs = {**from_pretrained_kwargs, "trust_remote_code": False}
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **from_pretrained_kwargs)
        missing = [t for t in ADDED_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=False)
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise CheckpointError(
                f"the tokenizer of {name_or_path} has no [CLS]/[SEP] tokens: use an encoder "
                "(BERT, DeBERTa, RoBERTa, MiniLM, ...)"
            )
        if seed is not None:
            torch.manual_seed(seed)
        encoder = AutoModel.from_pretrained(str(name_or_path), **from_pretrained_kwargs)
        encoder.resize_token_embeddings(len(tokenizer))
        config = PairRankerConfig(
            backbone=encoder.config,
            model_name=str(name_or_path),
            n_tasks=n_tasks,
            drop_out=drop_out,
            source_maxlength=source_maxlength,
            candidate_maxlength=candidate_maxlength,
        )
        config.set_token_ids(tokenizer)
        model = cls(config, init_backbone=False)
        model.pretrained_model = encoder
        return model, tokenizer

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        source_maxlength: int | None = None,
        candidate_maxlength: int | None = None,
        **hub_kwargs: Any,
    ) -> tuple[PairRankerModel, PreTrainedTokenizerBase]:
        """Load a checkpoint in any published layout, strictly: ``(model, tokenizer)``, fp32, eval.

        Raises:
            CheckpointError: unknown layout, missing files, or weights that do not match the
                model (every missing and unexpected key is named).
        """
        path = resolve_checkpoint_dir(name_or_path, **hub_kwargs)
        config = PairRankerConfig.from_pretrained(path)
        if source_maxlength is not None:
            config.source_maxlength = int(source_maxlength)
        if candidate_maxlength is not None:
            config.candidate_maxlength = int(candidate_maxlength)
        if min(config.source_maxlength, config.candidate_maxlength) < 3:
            raise ValueError("source_maxlength and candidate_maxlength must be >= 3")
        tokenizer = load_tokenizer(path, config)
        state = normalise_keys(load_state_dict(path))
        emb_key = BACKBONE_PREFIX + "embeddings.word_embeddings.weight"
        if emb_key in state:
            # Published configs name the backbone's original vocabulary (128100): the checkpoint's
            # embedding matrix (128005 rows, resized by the reference) is the truth.
            config.backbone.vocab_size = int(state[emb_key].shape[0])
        model = cls(config, init_backbone=False)
        model.load_strict(state, source=str(path))
        model.eval()
        return model, tokenizer

    def load_strict(self, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
        """Load ``state`` refusing any missing or unexpected key (naming them) or shape mismatch."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        problems = []
        if missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        shapes = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in sorted(set(state) & set(expected))
            if tuple(state[k].shape) != tuple(expected[k].shape)
        ]
        if shapes:
            problems.append(f"shape mismatches: {'; '.join(shapes)}")
        if problems:
            raise CheckpointError(
                f"{source} does not match the PairRanker model: {' | '.join(problems)}"
            )
        self.load_state_dict(state, strict=True)

    def save_pretrained(
        self,
        path: str | os.PathLike[str],
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> Path:
        """Write the hf layout (``config.json`` + ``model.safetensors``) and the tokenizer."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_path(out / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        write_ranker_files(self, tokenizer, out)
        return out
