"""The training pairs of a PairRanker run: a map-style data set and the ``Trainer``'s collator.

Example:
    .. code-block:: python

        from blender_core.training.ranker_data import PairCollator, PairDataset

        dataset = PairDataset(records, ["gpt4t_pref"], encoder, num_pairs=5, seed=42)
        batch = PairCollator(encoder)([dataset[0], dataset[1]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blender_core.data import MixRecord
from blender_core.training.pairs import CandidatePair, build_pairs

if TYPE_CHECKING:
    import torch

    from blender_core.encoding import PairEncoder

__all__ = ["PairCollator", "PairDataset"]


class PairDataset:
    """A ``torch`` map-style dataset of encoded training pairs, re-drawn each epoch.

    Items are ``{"input_ids": list[int], "scores_a": tuple, "scores_b": tuple}``. The pairs of
    epoch ``e`` are drawn with seed ``seed + e``, so a resumed run sees the same pairs.

    Args:
        records: The records to draw pairs from.
        metrics: The score names, one task of the ranker each.
        encoder: Encodes a record's source and two candidates as one pair.
        seed: The seed of epoch 0.
        **sampling: How pairs are chosen: the keywords of
            :func:`~blender_core.training.pairs.build_pairs` (``mode``, ``num_pairs``,
            ``include_ties``, ``min_gap``, ``swap``, ``dedupe``) with its defaults.
    """

    def __init__(
        self,
        records: Sequence[MixRecord],
        metrics: Sequence[str],
        encoder: PairEncoder,
        *,
        seed: int = 0,
        **sampling: Any,
    ) -> None:
        self.records = list(records)
        self.metrics = list(metrics)
        self.encoder = encoder
        self._options = sampling
        self.seed = seed
        self.epoch = 0
        self.pairs: list[CandidatePair] = self._draw(0)
        if not self.pairs:
            raise ValueError(
                "no training pairs: every record's candidates are tied (or duplicates); "
                "lower min_score_gap or set include_ties"
            )

    def _draw(self, epoch: int) -> list[CandidatePair]:
        return build_pairs(self.records, self.metrics, seed=self.seed + epoch, **self._options)

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairs of ``epoch`` (same count every epoch, different pairs and swaps)."""
        if epoch == self.epoch:
            return
        pairs = self._draw(epoch)
        if len(pairs) != len(self.pairs):  # pragma: no cover - sample sizes depend on data only
            raise RuntimeError("the number of pairs changed between epochs")
        self.pairs, self.epoch = pairs, epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_lengths(self) -> list[int]:
        """Tokens of each current pair as encoded (texts tokenised once, then cached)."""
        encoder = self.encoder
        texts = {r.source for r in self.records} | {
            c.text
            for p in self.pairs
            for c in (
                self.records[p.record_index].candidates[p.a],
                self.records[p.record_index].candidates[p.b],
            )
        }
        ids = dict(zip(texts, encoder.tokenize(list(texts)), strict=True))
        out = []
        for pair in self.pairs:
            record = self.records[pair.record_index]
            parts = encoder.part_lengths(
                len(ids[record.source]),
                len(ids[record.candidates[pair.a].text]),
                len(ids[record.candidates[pair.b].text]),
            )
            out.append(sum(parts))
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        record = self.records[pair.record_index]
        ids = self.encoder.encode_pair(
            record.source, record.candidates[pair.a].text, record.candidates[pair.b].text
        )
        return {"input_ids": ids, "scores_a": pair.scores_a, "scores_b": pair.scores_b}


class PairCollator:
    """Pads encoded pairs at the end and stacks their scores: the ``Trainer``'s data collator."""

    def __init__(self, encoder: PairEncoder, *, pad_to_multiple_of: int | None = None) -> None:
        self.encoder = encoder
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        batch = self.encoder.collate(
            [f["input_ids"] for f in features], pad_to_multiple_of=self.pad_to_multiple_of
        )
        batch["scores_a"] = torch.tensor([f["scores_a"] for f in features], dtype=torch.float32)
        batch["scores_b"] = torch.tensor([f["scores_b"] for f in features], dtype=torch.float32)
        return batch
