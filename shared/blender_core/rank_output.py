"""Outputs of a data-set ranking run: resumable, atomic, JSONL or Parquet.

Both engines of ``blender rank`` (one process, or Ray Data) hand their results to a
:class:`RankOutput`. Each finished record is appended to a hidden checkpoint next to the output
(``.<name>.partial.jsonl``, one complete JSON line per record, flushed per batch); when the run
ends the final files are assembled from it and renamed into place, so an output appears complete
or not at all. A rerun with the same output skips the records already done, by record id: those
in a finished output (its rows are carried over) and those in a checkpoint left by a killed or
failed run. Record ids must therefore be unique; a repeated id is an error, never a duplicate row.

Example:
    .. code-block:: python

        with RankOutput("ranked.parquet", pairs_out="prefs.jsonl", strategy="max_logits") as sink:
            for record in records:
                if record.id in sink.done_ids:
                    continue
                ranking = ranker.rank(record.instruction, record.texts)
                sink.add(ranking_row(record.id, ranking, record.models, "max_logits"), pairs)
            sink.commit()
        sink.finish()
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from blender_core.io import OutputPathError, atomic_open, check_output_file, dumps_json
from blender_core.preferences import PAIR_FIELDS
from blender_core.ranking import Ranking

__all__ = [
    "RANK_FIELDS",
    "OutputFormat",
    "RankOutput",
    "output_format",
    "ranking_row",
]

#: Fields of every ranking row, in output order (the same for both engines).
RANK_FIELDS = ("id", "order", "ranks", "scores", "best", "best_model", "strategy")

OutputFormat = Literal["jsonl", "parquet"]

_FORMATS: dict[str, OutputFormat] = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_PARQUET_CHUNK = 4096


def output_format(path: str | os.PathLike[str]) -> OutputFormat:
    """``"jsonl"`` or ``"parquet"`` from the file suffix (``.jsonl``/``.json``/``.parquet``).

    Raises:
        OutputPathError: Any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise OutputPathError(f"{path}: unknown output format: name it *.jsonl or *.parquet")
    return _FORMATS[suffix]


def ranking_row(
    record_id: str, ranking: Ranking, models: Sequence[str], strategy: str
) -> dict[str, Any]:
    """The output row of one ranked record (fields :data:`RANK_FIELDS`)."""
    return {
        "id": record_id,
        "order": list(ranking.order),
        "ranks": list(ranking.ranks),
        "scores": list(ranking.scores),
        "best": ranking.best,
        "best_model": models[ranking.best],
        "strategy": strategy,
    }


def _schema(kind: Literal["rank", "pairs"]) -> Any:
    import pyarrow as pa

    if kind == "rank":
        return pa.schema(
            [
                ("id", pa.string()),
                ("order", pa.list_(pa.int64())),
                ("ranks", pa.list_(pa.int64())),
                ("scores", pa.list_(pa.float64())),
                ("best", pa.int64()),
                ("best_model", pa.string()),
                ("strategy", pa.string()),
            ]
        )
    return pa.schema(
        [(name, pa.float64() if name.startswith("score_") else pa.string()) for name in PAIR_FIELDS]
    )


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a finished output file written by :class:`RankOutput` (JSONL or Parquet)."""
    if output_format(path) == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_CHUNK):
            yield from batch.to_pylist()
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise OutputPathError(
                    f"{path}:{number}: existing output is not valid JSON ({exc.msg}); "
                    "move it away or rerun with --no-resume"
                ) from exc


def _write_rows(path: Path, rows: Iterable[dict[str, Any]], kind: Literal["rank", "pairs"]) -> int:
    """Write ``rows`` to ``path`` atomically in the format its suffix names; return the count."""
    count = 0
    if output_format(path) == "jsonl":
        with atomic_open(path) as handle:
            for row in rows:
                handle.write(dumps_json(row) + "\n")
                count += 1
        return count
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(kind)
    with atomic_open(path, "wb") as handle:
        writer = pq.ParquetWriter(pa.PythonFile(handle, mode="w"), schema)
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append(row)
            count += 1
            if len(chunk) >= _PARQUET_CHUNK:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk or count == 0:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
        writer.close()
    return count


class RankOutput:
    """The ranking output (and optional preference-pair output) of one run, with resume.

    Args:
        out: The ranking output (``*.jsonl`` or ``*.parquet``), or ``None`` for JSON lines on
            stdout (no resume then).
        pairs_out: The preference-pair output (``*.jsonl`` or ``*.parquet``), or ``None``.
        strategy: The run's ranking strategy; a resumed output made with another one is an error.
        resume: Skip the records already in ``out`` or in its checkpoint (default). ``False``
            starts over and replaces both outputs.
        stdout: Where ``out=None`` writes (default: :data:`sys.stdout`).

    Raises:
        OutputPathError: An output cannot be written, or the files to resume from disagree with
            this run (another strategy, pairs missing for records already done).
    """

    def __init__(
        self,
        out: str | os.PathLike[str] | None,
        *,
        pairs_out: str | os.PathLike[str] | None = None,
        strategy: str,
        resume: bool = True,
        stdout: IO[str] | None = None,
    ) -> None:
        self.out = check_output_file(out) if out is not None else None
        self.pairs_out = check_output_file(pairs_out) if pairs_out is not None else None
        for path in (self.out, self.pairs_out):
            if path is not None:
                output_format(path)
        if self.out is not None and self.out == self.pairs_out:
            raise OutputPathError(f"{self.out}: the ranking and pair outputs must differ")
        self.strategy = strategy
        self._stdout = stdout if stdout is not None else sys.stdout
        anchor = self.out or self.pairs_out
        self.checkpoint = anchor.parent / f".{anchor.name}.partial.jsonl" if anchor else None
        resume = resume and self.out is not None
        self.done_ids: set[str] = set()
        self._carried = 0
        self._carry_out = False
        if resume:
            self._load_resume_state()
        elif self.checkpoint is not None:
            with contextlib.suppress(FileNotFoundError):
                self.checkpoint.unlink()
        self.resumed = len(self.done_ids)
        self._new = 0
        self._handle: IO[str] | None = None
        if self.checkpoint is not None:
            self._handle = self.checkpoint.open("a", encoding="utf-8")

    # ---- resume ---------------------------------------------------------------------------

    def _check_strategy(self, row: dict[str, Any], where: str) -> None:
        if row.get("strategy") != self.strategy:
            raise OutputPathError(
                f"{where}: ranked with strategy {row.get('strategy')!r}, this run uses "
                f"{self.strategy!r}; rerun with that strategy or with --no-resume"
            )

    def _load_resume_state(self) -> None:
        assert self.out is not None and self.checkpoint is not None
        if self.out.exists():
            for row in _read_rows(self.out):
                self._check_strategy(row, str(self.out))
                self.done_ids.add(str(row["id"]))
            self._carry_out = True
            self._carried = len(self.done_ids)
            if self._carried and self.pairs_out is not None and not self.pairs_out.exists():
                raise OutputPathError(
                    f"{self.pairs_out}: missing, but {self.out} already holds {self._carried} "
                    "records; their pairs cannot be recovered: rerun with --no-resume"
                )
        if self.checkpoint.exists():
            kept: list[str] = []
            with self.checkpoint.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a line torn by a kill: that record is redone
                    if self.pairs_out is not None and "pairs" not in entry:
                        raise OutputPathError(
                            f"{self.checkpoint}: was written without --pairs-out; "
                            "rerun without it or with --no-resume"
                        )
                    self._check_strategy(entry["row"], str(self.checkpoint))
                    if str(entry["row"]["id"]) not in self.done_ids:
                        self.done_ids.add(str(entry["row"]["id"]))
                        kept.append(line if line.endswith("\n") else line + "\n")
            # Rewrite without a torn tail so that appends start on a fresh line.
            with atomic_open(self.checkpoint) as handle:
                handle.writelines(kept)

    # ---- writing --------------------------------------------------------------------------

    def add(self, row: dict[str, Any], pairs: Sequence[dict[str, Any]] | None = None) -> None:
        """Record one finished record: its ranking row and, with ``pairs_out``, its pairs.

        Raises:
            ValueError: The record id was already done in this run or a resumed one.
        """
        record_id = str(row["id"])
        if record_id in self.done_ids:
            raise ValueError(
                f"duplicate record id {record_id!r}: ids must be unique (resume goes by id)"
            )
        self.done_ids.add(record_id)
        self._new += 1
        if self.out is None:
            self._stdout.write(dumps_json(row) + "\n")
        entry: dict[str, Any] = {"row": row}
        if self.pairs_out is not None:
            entry["pairs"] = list(pairs or [])
        if self._handle is not None:
            self._handle.write(dumps_json(entry) + "\n")

    def commit(self) -> None:
        """Flush the checkpoint to disk (call once per batch: what is committed survives a kill)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        if self.out is None:
            self._stdout.flush()

    @property
    def added(self) -> int:
        """Records added in this run (not counting resumed ones)."""
        return self._new

    def _entries(self) -> Iterator[dict[str, Any]]:
        assert self.checkpoint is not None
        with self.checkpoint.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)

    def finish(self) -> tuple[int, int]:
        """Assemble the final outputs atomically and drop the checkpoint.

        Returns:
            ``(records, pairs)`` written in total (resumed ones included).
        """
        self._close_handle()
        if self.checkpoint is None:
            return self._new, 0
        self.checkpoint.touch()
        records = 0
        if self.out is not None:
            carried = _read_rows(self.out) if self._carry_out else iter(())

            def rank_rows() -> Iterator[dict[str, Any]]:
                yield from carried
                for entry in self._entries():
                    yield entry["row"]

            records = _write_rows(self.out, rank_rows(), "rank")
        else:
            records = self._new
        pairs = 0
        if self.pairs_out is not None:
            pairs_carried = (
                _read_rows(self.pairs_out)
                if self._carry_out and self._carried and self.pairs_out.exists()
                else iter(())
            )

            def pair_rows() -> Iterator[dict[str, Any]]:
                yield from pairs_carried
                for entry in self._entries():
                    yield from entry["pairs"]

            pairs = _write_rows(self.pairs_out, pair_rows(), "pairs")
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint.unlink()
        return records, pairs

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        """Close the checkpoint; an empty one is removed (a failed run leaves no clutter)."""
        self._close_handle()
        checkpoint = self.checkpoint
        if checkpoint is not None and checkpoint.exists() and checkpoint.stat().st_size == 0:
            checkpoint.unlink()

    def __enter__(self) -> RankOutput:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            with contextlib.suppress(OSError):
                self.commit()
        self.close()
