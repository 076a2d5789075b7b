"""Files of arrays: ``.npz`` archives written atomically and read without pickle, within bounds.

Model files and checkpoints are documents: nested dicts and lists of plain values (a format name and
version, a configuration, a history) and arrays (state dicts). :func:`save` writes such a document as one
``.npz``: each array as an entry named by its place (``model.0.W``, ``optimizer.state.0.exp_avg``) and
the rest as JSON in the entry ``meta``, where each array stands as ``{"$array": "its name"}``. :func:`load`
reads it back, refusing anything it would not write: Python objects (never unpickled), a declared
size beyond :data:`MAX_BYTES`, a damaged archive, arrays missing or unexpected, another format.

A path ending in ``.safetensors`` is written as a `safetensors <https://huggingface.co/docs/safetensors>`_
file instead: the same arrays under the same names, the JSON in its metadata (``"meta"``), so that other
tools read the arrays and chainrule reads the whole document. :func:`load` tells the two by their first
bytes. Reading and writing safetensors needs the ``safetensors`` package (``chainrule[safetensors]``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from chainrule.errors import DataError, WriteError, need
from chainrule.i18n import N_, _

#: The largest file accepted: far above any MLP this library trains, far below a memory bomb.
MAX_BYTES = 2 * 1024**3
#: The most a deflate stream can expand (zlib's limit is about 1032:1): a compressed file that declares
#: more than this many times its own size is crafted or damaged, and is refused before it is expanded.
MAX_RATIO = 1040
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
#: The deepest nesting read from a text file (TOML, or the JSON inside a model file): arrays, tables and
#: dotted keys together. A problem file nests three or four deep; a parser walking 10,000 (or a dotted key
#: of 10,000 parts, which Python's TOML reader takes quadratic time and memory for) is a bomb.
MAX_NESTING = 64
#: What is not structure in TOML or JSON: strings (basic, literal, multi-line) and comments.
_STRINGS = re.compile(r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*', re.DOTALL)
#: A dotted key (``a.b."c"``) once the strings are blanked: its parts are the dots plus one.
_DOTTED = re.compile(r"[\w-]+(?:[ \t]*\.[ \t]*[\w-]+)+")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it to ``path``: a crash
    leaves the old file or the new one, never half of one. The file gets the permissions of any new file
    (``0666`` less the process's umask), asked for when it is created."""
    path = Path(path)
    while True:
        stem = path.name.encode()[:200].decode(errors="ignore")  # a name of 255 bytes has no room for more
        temp = path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise _cannot_write(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except WriteError:
        raise
    except OSError as err:
        raise _cannot_write(path, err) from None
    finally:
        temp.unlink(missing_ok=True)


def _cannot_write(path: Path, err: OSError) -> WriteError:
    if path.is_dir():
        reason = _("a folder is there")
    elif not path.parent.is_dir():
        reason = _("no folder {folder}").format(folder=path.parent)
    else:
        reason = err.strerror or str(err)
    error = WriteError(_("cannot write {path}: {reason}").format(path=path, reason=reason))
    error.errno = err.errno
    return error


def nesting(text: str) -> int:
    """How deep ``text`` (TOML or JSON) nests: the most brackets and braces open at once, or the most parts
    of a dotted key, whichever is more; counted in one pass over the text, before any parser sees it."""
    bare = _STRINGS.sub(lambda m: "s" if m.group().startswith(("'", '"')) else "", text)
    opened = np.frombuffer(bare.encode("ascii", errors="replace"), np.uint8)
    steps = np.isin(opened, (ord("["), ord("{"))).astype(np.int32) - np.isin(opened, (ord("]"), ord("}")))
    depth = int(np.cumsum(steps, dtype=np.int32).max(initial=0))
    dotted = max((m.group().count(".") + 1 for m in _DOTTED.finditer(bare)), default=0)
    return max(depth, dotted)


def memory_budget() -> int:
    """The most bytes that what one file declares may take in memory: :data:`MAX_BYTES`, or less on a
    machine with less memory (a quarter of its physical memory, or half of this process's address-space
    limit where one is set): a declared size beyond it is refused before anything is allocated."""
    budget = MAX_BYTES
    unknown = (ImportError, OSError, ValueError, AttributeError)  # the system cannot say: the bound stays
    with contextlib.suppress(*unknown):
        budget = min(budget, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    with contextlib.suppress(*unknown):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            budget = min(budget, limit // 2)
    return max(budget, 0)


def open_regular(
    path: str | Path, what: str, error: Callable[[str], Exception] = DataError, max_bytes: int | None = None
) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file of at most ``max_bytes`` (default:
    :data:`MAX_BYTES`); otherwise ``error(message)`` naming the file, what it is, and ``what`` was expected.
    A FIFO is opened without waiting for a writer and a device is never read: chainrule reads files only."""
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(_("{path}: no such file").format(path=path)) from None
    except OSError as err:
        raise error(_("{path}: cannot read it ({reason})").format(path=path, reason=err.strerror or err)) from None
    mode, size = os.fstat(fd).st_mode, os.fstat(fd).st_size
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = (
            _("a folder")
            if stat.S_ISDIR(mode)
            else _("a FIFO")
            if stat.S_ISFIFO(mode)
            else _("a device")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else _("not a regular file")
        )
        raise error(_("{path}: {kind}; expected {what}, a regular file").format(path=path, kind=kind, what=_(what)))
    if size > limit:
        os.close(fd)
        raise error(
            _("{path}: {size}; {what} of at most {limit} is read on this machine").format(
                path=path, size=_amount(size), what=_(what), limit=_amount(limit)
            )
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_npz(path: str | Path, what: str) -> dict[str, NDArray]:
    """Every array of the ``.npz`` at ``path``, read without pickle; ``what`` names the kind of file in
    the errors (``"chainrule checkpoint"``).

    Nothing is allocated for what the file only declares: the sizes its zip directory gives are checked
    against the file's own size and :func:`memory_budget`, and each array's header against the bytes its
    entry holds, before the array is read."""
    path = Path(path)
    with open_regular(path, _a(what)) as f:
        compressed = os.fstat(f.fileno()).st_size
        try:
            with zipfile.ZipFile(f) as archive:
                arrays = {}
                for info in zip_entries(archive, path, compressed):
                    name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    with archive.open(info) as member:
                        arrays[name] = _read_npy(member, info.file_size, path, name)
                return arrays
        except DataError:
            raise
        except ARCHIVE_ERRORS as err:
            raise DataError(
                _("{path}: not a readable {what} ({error})").format(path=path, what=_(what), error=err)
            ) from None


def zip_entries(archive: zipfile.ZipFile, path: str | Path, size: int) -> list[zipfile.ZipInfo]:
    """The entries of the zip ``archive`` (a file of ``size`` bytes at ``path``), once the sizes its
    directory declares are found possible for its size (deflate expands at most :data:`MAX_RATIO` times)
    and within :func:`memory_budget`: a zip bomb is refused before anything is expanded."""
    infos = archive.infolist()
    declared = sum(info.file_size for info in infos)
    if declared > MAX_RATIO * size + 2**20:
        raise DataError(
            _("{path}: declares {declared} bytes of data in a file of {size}; refusing").format(
                path=path, declared=declared, size=size
            )
        )
    if declared > memory_budget():
        raise DataError(too_large(path, declared))
    return infos


def read_npy(path: str | Path, what: str = N_(".npy array")) -> NDArray:
    """The array of the ``.npy`` file at ``path``, read without pickle and within the bounds of
    :func:`read_npz`; ``what`` names the kind of file in the errors (``".npy array"``)."""
    with open_regular(path, _a(what)) as f:
        try:
            return _read_npy(f, os.fstat(f.fileno()).st_size, path, "")
        except DataError:
            raise
        except ARCHIVE_ERRORS as err:
            raise DataError(
                _("{path}: not a readable {what} ({error})").format(path=path, what=_(what), error=err)
            ) from None


def unreadable(path: str | Path, what: str, err: BaseException) -> str:
    """The message for a file that is not a readable ``what`` (a kind of file marked with ``N_``)."""
    return _("{path}: not a readable {what} ({error})").format(path=path, what=_(what), error=err)


def _a(what: str) -> str:
    """``what`` (a kind of file, marked with ``N_``) with its article, in the language in effect."""
    return _("a {what}").format(what=_(what))


def too_large(path: str | Path, declared: int) -> str:
    """The message for a file that declares more than :func:`memory_budget`."""
    return _(
        "{path}: declares {declared} of data, more than the {budget} that one file may take on this machine; refusing"
    ).format(path=path, declared=_amount(declared), budget=_amount(memory_budget()))


def _amount(size: int) -> str:
    return _("{size:.1f} MB").format(size=size / 2**20) if size >= 2**20 else _("{size} bytes").format(size=size)


def _read_npy(f: BinaryIO, size: int, path: str | Path, name: str) -> NDArray:
    """One ``.npy`` of ``size`` bytes from ``f``: its header is checked (no Python objects; a shape whose
    bytes are those that follow) before its data are read."""
    where = f"{path}: {name}" if name else str(path)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise DataError(
            _("{where}: a .npy of version {version}, which chainrule does not read").format(
                where=where, version=version
            )
        )
    if dtype.hasobject:
        raise DataError(_("{where}: it holds Python objects, which are never loaded").format(where=where))
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != size - f.tell():
        raise DataError(
            _("{where}: its header declares shape {shape} of {dtype}, but the file holds {size} bytes").format(
                where=where, shape=shape, dtype=dtype, size=size - f.tell()
            )
        )
    if nbytes > memory_budget():
        raise DataError(too_large(where, nbytes))
    data = bytearray(nbytes)
    view, filled = memoryview(data), 0
    while filled < nbytes:
        got = f.readinto(view[filled:])
        if not got:
            raise DataError(_("{where}: truncated array data").format(where=where))
        filled += got
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_safetensors(path: str | Path, what: str) -> tuple[dict[str, NDArray], dict[str, str]]:
    """The arrays and the metadata of the safetensors file at ``path``, within the bounds :func:`read_npz`
    keeps for an ``.npz``."""
    path = Path(path)
    open_regular(path, _a(what)).close()
    safetensors = need("safetensors", "safetensors", f"reading {path.name}")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as err:
        raise DataError(
            _("{path}: not a readable {what} ({error})").format(path=path, what=_(what), error=err)
        ) from None


def save(path: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` (dicts, lists, JSON values and arrays) to ``path`` atomically: one ``.npz``, or a
    safetensors file if ``path`` ends in ``.safetensors``."""
    arrays: dict[str, NDArray] = {}
    meta = json.dumps(_pack(document, "", arrays))
    if Path(path).suffix == ".safetensors":
        write_safetensors(path, arrays, {"format": "np", "meta": meta})
    else:
        arrays["meta"] = np.array(meta)
        atomic_write(path, lambda f: np.savez(f, **arrays))


def write_safetensors(path: str | Path, arrays: dict[str, NDArray], metadata: dict[str, str]) -> None:
    """``arrays`` and the text ``metadata`` as a safetensors file at ``path``, written atomically."""
    safetensors = need("safetensors.numpy", "safetensors", f"writing {Path(path).name}")
    blob = safetensors.save({name: np.ascontiguousarray(a) for name, a in arrays.items()}, metadata=metadata)
    atomic_write(path, lambda f: f.write(blob))


def load(
    path: str | Path,
    format: str,
    what: str,
    upgrade: Callable[[dict[str, Any], dict[str, NDArray]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The document written by :func:`save` at ``path``, whose ``format`` entry must be ``format``;
    ``what`` names the kind of file in the errors. ``upgrade(meta, arrays)`` may rewrite the JSON of an
    older version first; the caller checks the ``version``."""
    if _is_zip(path, what):
        arrays = read_npz(path, what)
        meta_text = arrays.pop("meta", None)
    else:
        arrays, metadata = read_safetensors(path, what)
        meta_text = metadata.get("meta")
        if meta_text is None and metadata.get("format") == "pt":
            raise DataError(
                _("{path}: a PyTorch state dict, not a {what}; `chainrule import` reads it back").format(
                    path=path, what=_(what)
                )
            )
    text = str(meta_text[()]) if isinstance(meta_text, np.ndarray) and meta_text.ndim == 0 else meta_text
    if isinstance(text, str) and nesting(text) > MAX_NESTING:
        raise DataError(
            _("{path}: its 'meta' record nests more than {most} deep; not a {what}").format(
                path=path, most=MAX_NESTING, what=_(what)
            )
        )
    try:
        meta = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        raise DataError(_("{path}: not a {what} (no readable 'meta' record)").format(path=path, what=_(what))) from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != format:
        raise DataError(_("{path}: not a {what} (format {found!r})").format(path=path, what=_(what), found=found))
    if upgrade is not None:
        meta = upgrade(meta, arrays)
    used: set[str] = set()
    document = _unpack(meta, arrays, used, path)
    extra = sorted(set(arrays) - used)
    if extra:
        raise DataError(_("{path}: unexpected arrays {names}").format(path=path, names=", ".join(extra[:5])))
    return document


def _is_zip(path: Path, what: str) -> bool:
    """Whether the file at ``path`` starts as a zip archive (an ``.npz``) does."""
    with open_regular(path, _a(what)) as f:
        try:
            return f.read(4) == b"PK\x03\x04"
        except OSError as err:
            raise DataError(
                _("{path}: cannot read it ({reason})").format(path=path, reason=err.strerror or err)
            ) from None


def require_finite(path: str | Path, arrays: dict[str, NDArray], prefix: str = "") -> None:
    """A :class:`DataError` naming the first of ``arrays`` that is not all floats, or holds NaN or inf."""
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise DataError(_("{path}: {name} is not an array of floats").format(path=path, name=prefix + name))
        if not np.all(np.isfinite(value)):
            raise DataError(_("{path}: {name} contains NaN or inf").format(path=path, name=prefix + name))


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
                raise DataError(_("{path}: missing array {name}").format(path=path, name=name))
            used.add(name)
            return arrays[name]
        return {k: _unpack(v, arrays, used, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, arrays, used, path) for v in value]
    return value
