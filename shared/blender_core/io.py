"""Safe output files: atomic writes, strict JSON and early checks of output locations.

Everything the library and the ``blender`` command write (rankings, reports, tables, caches,
preference pairs) goes through here, so that a kill or an error never leaves a half-written file
behind and no output carries bare ``NaN``/``Infinity`` tokens that strict JSON readers reject.

Example:
    .. code-block:: python

        from blender_core.io import atomic_open, dumps_json

        with atomic_open("ranks.jsonl") as handle:  # appears whole, or not at all
            for row in rows:
                handle.write(dumps_json(row) + "\\n")
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "OutputPathError",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_format",
    "check_output_dir",
    "check_output_dir_creatable",
    "check_output_file",
    "dumps_json",
    "json_safe",
    "read_json_file",
]


class OutputPathError(ValueError):
    """An output location that cannot be written (missing or read-only folder, file in the way)."""


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` and tuples turned into lists.

    Mappings keep their keys (converted with ``str`` when they are not strings); other objects are
    returned unchanged, for ``json.dumps``' ``default`` to handle.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value``: ``NaN``/``Infinity`` become ``null``, never bare tokens.

    Args:
        value: Anything :func:`json.dumps` accepts.
        **kwargs: Passed to :func:`json.dumps` (``indent``, ``sort_keys``, ``default``...);
            ``ensure_ascii`` defaults to ``False`` and ``allow_nan`` is always ``False``.
    """
    kwargs.setdefault("ensure_ascii", False)
    kwargs["allow_nan"] = False
    return json.dumps(json_safe(value), **kwargs)


def check_output_dir(path: str | os.PathLike[str], *, create: bool = True) -> Path:
    """Check, before any work starts, that ``path`` can be used as an output folder.

    Args:
        path: The folder.
        create: Create it (and its parents) when missing.

    Returns:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        OutputPathError: A file is in the way, it cannot be created, or it is not writable.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{folder}: exists and is not a folder")
    if not folder.exists():
        if not create:
            raise OutputPathError(f"{folder}: no such folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"{folder}: cannot create the folder ({exc.strerror})") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{folder}: folder is not writable")
    return folder


def check_output_dir_creatable(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is a usable output folder or could be created, creating nothing.

    For commands that validate their input before touching the output location: call this
    first, then :func:`check_output_dir` (which creates the folder) once the input is good.

    Returns:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        OutputPathError: A file is in the way (at ``path`` or above it), or the nearest
            existing folder is not writable.
    """
    folder = Path(path)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = "" if probe == folder else f" ({probe} is a file)"
        raise OutputPathError(f"{folder}: exists and is not a folder{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "folder is not writable" if probe == folder else f"cannot create it in {probe}"
        raise OutputPathError(f"{folder}: {what} (not writable)")
    return folder


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work starts, that the file ``path`` can be written (its folder exists).

    Raises:
        OutputPathError: The folder is missing or not writable, or ``path`` is a folder.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"{target}: is a folder, expected a file name")
    parent = target.parent
    if not parent.is_dir():
        raise OutputPathError(f"{target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{target}: folder {parent} is not writable")
    return target


@contextlib.contextmanager
def _replaced_on_success(target: Path) -> Iterator[tuple[int, str]]:
    """A temporary file beside ``target`` (its descriptor and name) for the block to write and
    sync; renamed over ``target`` when the block ends normally, removed on an exception."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        yield fd, tmp_name
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears complete or not at all.

    Writes go to a temporary file in the same folder, which is flushed, synced and renamed over
    ``path`` when the block ends normally; on an exception (or a kill) the temporary file is
    removed and any previous ``path`` is left as it was.

    Args:
        path: The final file.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: Text encoding (ignored for ``"wb"``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with (
        _replaced_on_success(Path(path)) as (fd, _),
        open(fd, mode, encoding=None if "b" in mode else encoding) as handle,
    ):
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes files by name.

    For writers that take a file name rather than a handle (``safetensors``' ``save_file``): the
    block writes the yielded path, which is synced and renamed over ``path`` when the block ends
    normally, and removed on an exception, as with :func:`atomic_open`.
    """
    with _replaced_on_success(Path(path)) as (fd, tmp_name):
        os.close(fd)
        yield Path(tmp_name)
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def check_format(data: Any, expected: str, what: str) -> Mapping[str, Any]:
    """``data`` as a mapping whose ``"format"`` is ``expected``, the header of a saved file.

    Args:
        data: A file's JSON value.
        expected: The format string its writer puts in ``"format"``.
        what: Names the file in the error ("router" -> "not a router file ...").

    Raises:
        ValueError: ``data`` is not a mapping, or its format is another.
    """
    if not isinstance(data, Mapping) or data.get("format") != expected:
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"not a {what} file (format {found!r}, need {expected!r})")
    return data


def read_json_file(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON value in ``path``, a file that ``what`` names in the errors ("priors file").

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: It is not JSON.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{what} not found: {source}")
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not JSON: {exc}") from exc
