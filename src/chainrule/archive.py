"""Files of arrays: ``.npz`` archives written atomically and read without pickle, within bounds.

Model files and checkpoints are documents: nested dicts and lists of plain values (a format name and
version, a configuration, a history) and arrays (state dicts). :func:`save` writes such a document as one
``.npz``: each array as an entry named by its place (``model.0.W``, ``optimizer.state.0.exp_avg``) and
the rest as JSON in the entry ``meta``, where each array stands as ``{"$array": "its name"}``. :func:`load`
reads it back, refusing anything it would not write: Python objects (never unpickled), a declared
size beyond :data:`MAX_BYTES`, a damaged archive, arrays missing or unexpected, another format.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import DataError

#: The largest file accepted: far above any MLP this library trains, far below a memory bomb.
MAX_BYTES = 2 * 1024**3
#: What reading a damaged or crafted .npz can raise (zipfile: unsupported compression method ->
#: NotImplementedError, "encrypted" flag -> RuntimeError; found by fuzzing).
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    NotImplementedError,
    RuntimeError,
)
_REF = "$array"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it to ``path``: a crash
    leaves the old file or the new one, never half of one. The file gets the permissions of any new file
    (``0666`` less the process's umask), asked for when it is created."""
    path = Path(path)
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_npz(path: str | Path, what: str) -> dict[str, NDArray]:
    """Every array of the ``.npz`` at ``path``, read without pickle; ``what`` names the kind of file in
    the errors (``"chainrule checkpoint"``)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err})") from None
    if size > MAX_BYTES:
        raise DataError(f"{path}: {size} bytes is larger than any {what} ({MAX_BYTES} bytes at most)")
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_BYTES:
                raise DataError(f"{path}: declares {declared} bytes of arrays; refusing (at most {MAX_BYTES})")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except DataError:
        raise
    except ARCHIVE_ERRORS as err:
        reason = "it holds Python objects, which are never loaded" if "pickle" in str(err) else str(err)
        raise DataError(f"{path}: not a readable {what} ({reason})") from None


def save(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` (dicts, lists, JSON values and arrays) to ``path`` as one ``.npz``, atomically."""
    arrays: dict[str, NDArray] = {}
    meta = _pack(document, "", arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(
    path: str | Path,
    format: str,
    what: str,
    upgrade: Callable[[dict[str, Any], dict[str, NDArray]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The document written by :func:`save` at ``path``, whose ``format`` entry must be ``format``;
    ``what`` names the kind of file in the errors. ``upgrade(meta, arrays)`` may rewrite the JSON of an
    older version first; the caller checks the ``version``."""
    arrays = read_npz(path, what)
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except (KeyError, ValueError, TypeError, IndexError):
        raise DataError(f"{path}: not a {what} (no readable 'meta' record)") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != format:
        raise DataError(f"{path}: not a {what} (format {found!r})")
    if upgrade is not None:
        meta = upgrade(meta, arrays)
    used: set[str] = set()
    document = _unpack(meta, arrays, used, path)
    extra = sorted(set(arrays) - used)
    if extra:
        raise DataError(f"{path}: unexpected arrays {', '.join(extra[:5])}")
    return document


def require_finite(path: str | Path, arrays: dict[str, NDArray], prefix: str = "") -> None:
    """A :class:`DataError` naming the first of ``arrays`` that is not all floats, or holds NaN or inf."""
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise DataError(f"{path}: {prefix}{name} is not an array of floats")
        if not np.all(np.isfinite(value)):
            raise DataError(f"{path}: {prefix}{name} contains NaN or inf")


def _pack(value: Any, name: str, arrays: dict[str, NDArray]) -> Any:
    if isinstance(value, np.ndarray):
        if name in arrays:
            raise ValueError(f"two arrays named {name!r}")
        arrays[name] = value
        return {_REF: name}
    if isinstance(value, dict):
        return {str(k): _pack(v, f"{name}.{k}" if name else str(k), arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, f"{name}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unpack(value: Any, arrays: dict[str, NDArray], used: set[str], path) -> Any:
    if isinstance(value, dict):
        if set(value) == {_REF}:
            name = value[_REF]
            if not isinstance(name, str) or name not in arrays:
                raise DataError(f"{path}: missing array {name}")
            used.add(name)
            return arrays[name]
        return {k: _unpack(v, arrays, used, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, arrays, used, path) for v in value]
    return value
