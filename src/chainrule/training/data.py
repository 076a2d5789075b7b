"""Datasets: the embedded 8×8 digits, MNIST and Fashion-MNIST (IDX files), any IDX folder, ``.npz``, ``.csv``.

MNIST-style data are looked up, in this order: ``--data-dir`` (the folder itself or its
``NAME`` subfolder), the folder named by ``$CHAINRULE_DATA_DIR`` (same), the system location that
Debian's ``dataset-fashion-mnist`` package uses (``/usr/share/datasets/NAME``), the user cache
(``$XDG_CACHE_HOME/chainrule/NAME``, by default ``~/.cache/chainrule/NAME``). If none has the files they
are downloaded from the upstream mirrors into the cache, with a progress bar, and verified against the
published MD5 checksums before use; a failed or interrupted download leaves no file behind.

Nothing is read or downloaded at import time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from chainrule.archive import MAX_BYTES, MAX_RATIO, memory_budget, open_regular, read_npz, too_large
from chainrule.errors import DataError
from chainrule.i18n import N_, _

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

#: The four files of an MNIST-style dataset, by role.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Remote:
    """Where a dataset is published, and the MD5 of each published ``.gz`` file."""

    mirrors: tuple[str, ...]
    md5: dict[str, str]
    classes: tuple[str, ...]


REMOTES = {
    "mnist": Remote(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        DIGIT_CLASSES,
    ),
    "fashion-mnist": Remote(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        FASHION_CLASSES,
    ),
}
DATASETS = ("digits", *REMOTES)


@dataclass
class Dataset:
    """Train and test arrays of raw features (``uint8`` pixels or floats) and integer labels."""

    name: str
    X_train: NDArray
    y_train: NDArray
    X_test: NDArray
    y_test: NDArray
    classes: tuple[str, ...]
    image_shape: tuple[int, int] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)
    #: Whether the labels were names (a CSV's ``setosa``): :func:`labels_for` then maps them to a model's
    #: classes by name, not by number.
    named: bool = False

    @property
    def features(self) -> int:
        return int(np.prod(self.X_train.shape[1:]))


# -- IDX ---------------------------------------------------------------------------------------------
_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> NDArray:
    """Read an IDX file (raw, or gzip-compressed: told by its first bytes, not its name).

    Checks the magic number (two zero bytes, a known type code, 1 to 4 dimensions), that every
    dimension is positive, and that the data hold exactly the declared number of values. The declared
    size is checked before anything is read for it: against the file's size (equal for a raw file; for a
    ``.gz``, at most what deflate can expand it to) and :func:`~chainrule.archive.memory_budget`.
    """
    path = Path(path)
    with open_regular(path, N_("an IDX file")) as raw:
        try:
            size = os.fstat(raw.fileno()).st_size
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw) if compressed else raw
            return _read_idx(f, path, size, compressed)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise DataError(_("{path}: cannot read it as an IDX file ({error})").format(path=path, error=err)) from None


def _read_idx(f, path: Path, size: int, compressed: bool) -> NDArray:
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(_("{path}: not an IDX file (only {size} bytes)").format(path=path, size=len(magic)))
    zero, type_code, ndim = magic[0:2], magic[2], magic[3]
    if zero != b"\x00\x00" or type_code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise DataError(
            _(
                "{path}: not an IDX file (magic number 0x{magic}; expected 0x000008NN with NN the number of "
                "dimensions, e.g. 0x00000803 for images)"
            ).format(path=path, magic=magic.hex())
        )
    dims = f.read(4 * ndim)
    header = 4 + 4 * ndim
    if len(dims) < 4 * ndim:
        raise DataError(
            _("{path}: truncated IDX header ({size} bytes, expected at least {header})").format(
                path=path, size=4 + len(dims), header=header
            )
        )
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize  # Python integers: a crafted header cannot overflow it
    if 0 in shape:
        raise DataError(_("{path}: implausible IDX dimensions {shape}").format(path=path, shape=shape))
    if not compressed and size - header != expected:
        raise DataError(_idx_size_mismatch(path, size - header, shape, expected))
    if compressed and expected > MAX_RATIO * size:
        raise DataError(
            _("{path}: the header {shape} declares {expected} bytes, more than a .gz of {size} bytes can hold").format(
                path=path, shape=shape, expected=expected, size=size
            )
        )
    if expected > memory_budget():
        raise DataError(too_large(path, expected))
    data = f.read(expected + 1)  # never more than declared, and one byte to tell trailing bytes
    if len(data) != expected:
        raise DataError(_idx_size_mismatch(path, len(data), shape, expected))
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _idx_size_mismatch(path: str | Path, found: int, shape: tuple, expected: int) -> str:
    """The message for IDX data of ``found`` bytes where the header declares ``expected`` (``found`` is at
    most one byte past it: what is read is never more than declared)."""
    if found < expected:
        message = _("{path}: IDX data of {found} bytes, but the header {shape} declares {expected} (truncated)")
    else:
        message = _(
            "{path}: IDX data of more than {expected} bytes, but the header {shape} declares {expected} "
            "(trailing bytes)"
        )
    return message.format(path=path, found=found, shape=shape, expected=expected)


def write_idx(path: str | Path, array: NDArray, compress: bool | None = None) -> None:
    """Write ``array`` (uint8) as an IDX file; gzip-compressed if ``compress`` or the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    opener = gzip.open if (compress if compress is not None else path.suffix == ".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def load_idx_folder(
    folder: str | Path,
    name: str | None = None,
    classes: tuple[str, ...] | None = None,
    splits: tuple[str, ...] = ("train", "test"),
) -> Dataset:
    """The MNIST-style IDX files of ``folder`` (each raw or ``.gz``): all four, or those of ``splits``
    (``("test",)`` for ``chainrule evaluate``: the split left out is empty)."""
    folder = Path(folder)
    roles = [role for role in IDX_FILES if role.split("_")[0] in splits]
    found = {role: _find_idx(folder, IDX_FILES[role]) for role in roles}
    missing = [IDX_FILES[r] for r, p in found.items() if p is None]
    if missing:
        raise DataError(_("{folder}: missing {files} (raw or .gz)").format(folder=folder, files=", ".join(missing)))
    arrays = {role: read_idx(path) for role, path in found.items()}
    for split in splits:
        images, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim < 2 or y.ndim != 1:
            raise DataError(
                _("{path}: expected images (n, rows, cols) and labels (n,), got {images} and {labels}").format(
                    path=found[f"{split}_images"], images=images.shape, labels=y.shape
                )
            )
        if len(images) != len(y):
            raise DataError(
                _("{folder}: {images} {split} images but {labels} {split} labels").format(
                    folder=folder, images=len(images), labels=len(y), split=split
                )
            )
        arrays[f"{split}_labels"] = labels(y, str(found[f"{split}_labels"]))
    some = arrays[f"{splits[0]}_images"]
    for split in {"train", "test"} - set(splits):
        arrays[f"{split}_images"] = some[:0]
        arrays[f"{split}_labels"] = np.zeros(0, np.int64)
    n_classes = len(class_names(arrays["train_labels"], arrays["test_labels"]))
    classes = classes if classes is not None and len(classes) >= n_classes else tuple(str(c) for c in range(n_classes))
    image_shape = tuple(some.shape[1:3]) if some.ndim == 3 else None
    return Dataset(
        name or folder.name,
        _rows(arrays["train_images"]),
        arrays["train_labels"],
        _rows(arrays["test_images"]),
        arrays["test_labels"],
        classes,
        image_shape,
        str(folder),
    )


def _rows(array: NDArray) -> NDArray:
    """``array`` as one row per example (not ``reshape(n, -1)``: zero examples cannot say the width)."""
    return array.reshape(len(array), math.prod(array.shape[1:]))


def _find_idx(folder: Path, base: str) -> Path | None:
    for candidate in (folder / f"{base}.gz", folder / base):
        if candidate.is_file():
            return candidate
    return None


# -- where datasets are found ------------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chainrule"


def search_path(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The folders where dataset ``name`` is looked for, in order."""
    places: list[Path] = []
    for root in (data_dir, os.environ.get("CHAINRULE_DATA_DIR")):
        if root:
            places += [Path(root), Path(root) / name]
    places.append(Path("/usr/share/datasets") / name)
    places.append(cache_dir() / name)
    return places


def locate(name: str, data_dir: str | Path | None = None, splits: tuple[str, ...] = ("train", "test")) -> Path | None:
    """The first folder of :func:`search_path` that holds the files of ``name`` for ``splits``."""
    for folder in search_path(name, data_dir):
        if all(_find_idx(folder, base) for role, base in IDX_FILES.items() if role.split("_")[0] in splits):
            return folder
    return None


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
    splits: tuple[str, ...] = ("train", "test"),
    label: str | int | None = None,
) -> Dataset:
    """A dataset by name (``digits``, ``mnist``, ``fashion-mnist``) or by path (a folder of IDX files,
    an ``.npz`` or a ``.csv`` file), checked by :func:`check_dataset`. ``splits=("test",)`` is enough for
    a folder of IDX files that holds only the test set (as ``chainrule evaluate`` needs). ``label`` names
    the label column of a ``.csv`` (see :func:`load_csv`)."""
    return check_dataset(_load(name, data_dir, download, progress, splits, label), splits)


def _load(name: str, data_dir, download: bool, progress: bool, splits: tuple[str, ...], label) -> Dataset:
    if name == "digits":
        return load_digits()
    if name in REMOTES:
        folder = locate(name, data_dir, splits)
        if folder is None:
            if not download:
                raise DataError(_not_found(name, data_dir))
            folder = download_dataset(name, progress=progress, data_dir=data_dir)
        return load_idx_folder(folder, name, REMOTES[name].classes, _splits(folder, splits))
    path = Path(name)
    if path.is_dir():
        return load_idx_folder(path, splits=_splits(path, splits))
    if path.suffix == ".npz" and path.exists():
        return load_npz(path)
    if path.suffix == ".csv" and path.exists():
        return load_csv(path, label=label)
    raise DataError(
        _("unknown dataset {name!r}: expected one of {names}, a folder of IDX files, an .npz or a .csv file").format(
            name=name, names=", ".join(DATASETS)
        )
    )


def _splits(folder: Path, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The splits to read from an IDX folder: those ``wanted`` (whose files must be there) and any other
    whose two files are there."""
    complete = [
        s for s in ("train", "test") if all(_find_idx(folder, IDX_FILES[f"{s}_{k}"]) for k in ("images", "labels"))
    ]
    return tuple(s for s in ("train", "test") if s in wanted or s in complete)


def _not_found(name: str, data_dir) -> str:
    places = ", ".join(str(p) for p in search_path(name, data_dir))
    return _(
        "dataset {name!r} not found; looked in {places}. Put the four IDX files (e.g. {example}) in one of them "
        "or pass --data-dir; the download from the published mirrors failed or was not tried"
    ).format(name=name, places=places, example=f"{IDX_FILES['train_images']}.gz")


# -- download ------------------------------------------------------------------------------------------
def download_dataset(
    name: str,
    *,
    progress: bool = True,
    mirrors: tuple[str, ...] | None = None,
    data_dir: str | Path | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download the four files of ``name`` into the cache and verify their MD5; returns the folder.

    Each file is written to a temporary file beside its destination and renamed into place only after
    its checksum matched, so an interrupted or corrupted download leaves nothing behind.
    """
    remote = REMOTES[name]
    mirrors = mirrors or tuple(filter(None, os.environ.get("CHAINRULE_MIRRORS", "").split())) or remote.mirrors
    folder = cache_dir() / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            _("cannot create the cache folder {folder} ({error}); {not_found}").format(
                folder=folder, error=err, not_found=_not_found(name, data_dir)
            )
        ) from None
    for role, base in IDX_FILES.items():
        target = folder / f"{base}.gz"
        if target.is_file():
            continue
        errors = []
        for mirror in mirrors:
            try:
                _fetch(mirror + f"{base}.gz", target, remote.md5[role], progress, timeout)
                break
            except DataError as err:
                errors.append(str(err))
        else:
            raise DataError(
                _("could not download {file} ({errors}). {not_found}").format(
                    file=f"{base}.gz", errors="; ".join(errors), not_found=_not_found(name, data_dir)
                )
            )
    return folder


def _fetch(url: str, target: Path, md5: str, progress: bool, timeout: float) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, f"downloading {target.name}", progress)
            received = 0
            try:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
            if total is not None and received != total:
                raise DataError(
                    _("{url}: interrupted after {received} of {total} bytes").format(
                        url=url, received=received, total=total
                    )
                )
        if digest.hexdigest() != md5:
            raise DataError(
                _("{url}: checksum mismatch (MD5 {got}, published {published})").format(
                    url=url, got=digest.hexdigest(), published=md5
                )
            )
        os.replace(temp, target)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataError(f"{url}: {getattr(err, 'reason', err)}") from None
    finally:
        temp.unlink(missing_ok=True)


def _progress_bar(total: int | None, description: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # the library works without the [train] extra; the bar is a nicety
        enabled = False
    if not enabled:
        return _NoBar()
    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# -- the embedded digits, .npz and .csv ---------------------------------------------------------------
#: The embedded digits: see the README there for their source and licence (CC BY 4.0).
DIGITS = Path(__file__).resolve().parent / "digits"


def load_digits() -> Dataset:
    """The 1,797 8×8 digits that ship with chainrule (pixels 0–16; the copy scikit-learn ships, of the UCI
    optical digits, CC BY 4.0), split 80/20 with a fixed seed (the same test set whatever the training
    seed)."""
    images = read_idx(DIGITS / "digits-images.idx.gz")
    y = labels(read_idx(DIGITS / "digits-labels.idx.gz"), str(DIGITS / "digits-labels.idx.gz"))
    X = _rows(images).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[: len(X) // 5], order[len(X) // 5 :]
    return Dataset("digits", X[train], y[train], X[test], y[test], DIGIT_CLASSES, (8, 8), str(DIGITS))


def load_npz(path: str | Path) -> Dataset:
    """An ``.npz`` with arrays ``X_train``, ``y_train``, ``X_test``, ``y_test`` (or ``x_...``), read
    without pickle."""
    path = Path(path)
    arrays = read_npz(path, N_(".npz dataset"))
    get = {}
    for key in ("X_train", "y_train", "X_test", "y_test"):
        value = arrays.get(key, arrays.get(key.lower()))
        if value is None:
            raise DataError(
                _("{path}: missing array {name!r} (found {found})").format(
                    path=path, name=key, found=", ".join(arrays) or "-"
                )
            )
        get[key] = value
    for split in ("train", "test"):
        X, y = get[f"X_{split}"], get[f"y_{split}"]
        if X.ndim < 2 or y.ndim != 1 or len(X) != len(y):
            raise DataError(
                _("{path}: X_{split} has shape {x} but y_{split} has shape {y}").format(
                    path=path, split=split, x=X.shape, y=y.shape
                )
            )
    image_shape = tuple(get["X_train"].shape[1:3]) if get["X_train"].ndim == 3 else None
    y_train, y_test = labels(get["y_train"], f"{path}: y_train"), labels(get["y_test"], f"{path}: y_test")
    return Dataset(
        path.stem,
        _rows(get["X_train"]),
        y_train,
        _rows(get["X_test"]),
        y_test,
        class_names(y_train, y_test),
        image_shape,
        str(path),
    )


#: The most memory a CSV takes per byte of its text, read as :func:`load_csv` reads it (a row ``0,1`` of 4
#: bytes: 8 bytes of float64 feature, its float32 copy, its train or test copy, an int64 label and its
#: copy): the file's size times this must fit in :func:`~chainrule.archive.memory_budget`.
CSV_GROWTH = 16


def load_csv(path: str | Path, test_fraction: float = 0.2, label: str | int | None = None) -> Dataset:
    """A ``.csv`` of numbers and one label column, split into train and test with a fixed seed. The label
    column is the first unless ``label`` names it (by its header, or its number from 0); labels are class
    numbers, or names (``setosa``), which become the class names in sorted order. A header line is
    recognised by its not being numbers; a byte-order mark is ignored. The file is read in one pass per
    column kind, without a copy of its text: what it takes in memory is bounded by its size
    (:data:`CSV_GROWTH`)."""
    path = Path(path)
    with (
        open_regular(path, N_("a .csv file"), max_bytes=min(MAX_BYTES, memory_budget() // CSV_GROWTH)) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig") as text,
    ):
        try:
            skip, first = 0, []
            for line in text:
                skip += 1
                if line.strip():
                    first = [cell.strip() for cell in line.split(",")]
                    break
            header = bool(first) and not all(_number(cell) for cell in first)
            column = _label_column(path, first, header, label)
            others = [k for k in range(len(first)) if k != column]
            skip -= not header

            def column_of(usecols, dtype, converters=None):
                text.seek(0)
                with warnings.catch_warnings():  # no rows: said below, as one line
                    warnings.simplefilter("ignore", UserWarning)
                    return np.loadtxt(
                        text, delimiter=",", skiprows=skip, usecols=usecols, dtype=dtype, converters=converters, ndmin=2
                    )

            X = column_of(others, np.float64) if others else np.zeros((0, 0))
            where = _("{path}: the labels (column {column})").format(
                path=path, column=first[column] if header else column
            )
            classes, index = None, {}
            try:
                numbers = column_of([column], np.float64)[:, 0]
            except ValueError:  # names, not numbers: each numbered as it first comes, then in sorted order
                codes = column_of([column], np.int64, {column: lambda name: _class_of(name, index, where)})[:, 0]
                classes = tuple(sorted(index))
                rank = {name: k for k, name in enumerate(classes)}
                y = np.array([rank[name] for name in index], np.int64)[codes]
        except DataError:
            raise
        except (OSError, UnicodeDecodeError, ValueError) as err:
            if isinstance(err.__cause__, DataError):
                raise err.__cause__ from None
            raise DataError(
                _("{path}: not a CSV of numbers and labels ({error})").format(path=path, error=err)
            ) from None
    if len(X) < 2 or not others:
        raise DataError(
            _("{path}: expected rows of a label and at least one feature, got {rows} rows").format(
                path=path, rows=len(X)
            )
        )
    if classes is None:
        y = labels(numbers, where)
    X = features(X, _("{path}: the features").format(path=path)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    n_test = max(1, int(len(X) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset(
        path.stem, X[train], y[train], X[test], y[test], classes or class_names(y), None, str(path), named=bool(classes)
    )


def _class_of(name: str, index: dict[str, int], where: str) -> int:
    """The number of the class ``name`` in ``index``, a new one if need be, up to :data:`MAX_CLASSES`."""
    name = name.strip()
    if name not in index:
        if len(index) >= MAX_CLASSES:
            raise DataError(
                _("{where}: more than {most} different labels; {most} classes at most").format(
                    where=where, most=MAX_CLASSES
                )
            )
        index[name] = len(index)
    return index[name]


def _label_column(path: Path, first: list[str], header: bool, label: str | int | None) -> int:
    """The index of the label column: the first, or the one ``label`` names (a header or a number)."""
    if label is None:
        return 0
    if header and str(label) in first:
        return first.index(str(label))
    if (isinstance(label, int) or (str(label).isascii() and str(label).isdigit())) and int(label) < len(first):
        return int(label)
    if header:
        message = _("{path}: no label column {label!r}; the columns are {columns}")
    else:
        message = _("{path}: no label column {label!r}; the columns are 0 to {last}")
    raise DataError(message.format(path=path, label=label, columns=", ".join(first), last=len(first) - 1))


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


#: The largest side of an image a dataset or model may have (a picture for predict is made at this size).
MAX_IMAGE_SIDE = 4096
#: The most classes a dataset or model may have: far beyond any MNIST-style task, far below a one-hot
#: target or a confusion matrix that would not fit in memory.
MAX_CLASSES = 10_000


def labels(y: NDArray, where: str) -> NDArray:
    """``y`` as class indices (int64), if every value is an integer in ``[0, MAX_CLASSES)``: the one
    check of labels, whatever file they come from; else a :class:`DataError` naming ``where`` and the
    first bad value."""
    values = np.asarray(y)
    if values.dtype.kind not in "iuf" or values.ndim != 1:
        raise DataError(
            _("{where}: expected a vector of integer class labels, got {dtype} of shape {shape}").format(
                where=where, dtype=values.dtype, shape=values.shape
            )
        )
    bad = ~np.isfinite(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    with np.errstate(invalid="ignore"):
        bad |= (values < 0) | (values >= MAX_CLASSES)
        if values.dtype.kind == "f":
            bad |= values != np.round(values)
    if np.any(bad):
        first = int(np.argmax(bad))
        raise DataError(
            _("{where}: labels must be integers from 0 to {last}; row {row} holds {value!r}").format(
                where=where, last=MAX_CLASSES - 1, row=first, value=values[first].item()
            )
        )
    return values.astype(np.int64)


def features(X: NDArray, where: str) -> NDArray:
    """``X`` if it holds finite real numbers in rows; else a :class:`DataError` naming ``where``."""
    if X.dtype.kind not in "uif":
        raise DataError(_("{where}: expected real numbers, got {dtype}").format(where=where, dtype=X.dtype))
    if X.dtype.kind == "f" and not np.all(np.isfinite(X)):
        rows = np.unique(np.argwhere(~np.isfinite(X.reshape(len(X), -1)))[:, 0])
        raise DataError(
            _("{where} contains NaN or inf (rows {rows}); refusing it").format(
                where=where, rows=f"{rows[:5].tolist()}{'…' if len(rows) > 5 else ''}"
            )
        )
    return X


def class_names(*splits: NDArray) -> tuple[str, ...]:
    """``"0"``, ``"1"``, ... up to the largest label of any split."""
    return tuple(str(c) for c in range(int(max(y.max(initial=0) for y in splits)) + 1))


def check_dataset(dataset: Dataset, splits: tuple[str, ...] = ("train", "test")) -> Dataset:
    """The checks every dataset passes, wherever it came from: features real and finite, one row width
    for train and test, labels valid (:func:`labels`) and within the class names; the ``splits`` used
    not empty."""
    if dataset.image_shape is not None and not all(0 < side <= MAX_IMAGE_SIDE for side in dataset.image_shape):
        rows, columns = dataset.image_shape
        raise DataError(
            _("{dataset}: images of {rows}×{columns} pixels; a model takes images of at most {most} on a side").format(
                dataset=dataset.name, rows=rows, columns=columns, most=MAX_IMAGE_SIDE
            )
        )
    width = None
    for split in ("train", "test"):
        X, y = getattr(dataset, f"X_{split}"), getattr(dataset, f"y_{split}")
        features(X, f"{dataset.name}: X_{split}")
        labels(y, f"{dataset.name}: y_{split}")
        if X.ndim != 2 or (len(X) == 0 and split in splits) or X.shape[1] == 0:
            raise DataError(
                _(
                    "{dataset}: X_{split} must be a non-empty table of rows of at least one feature, got shape {shape}"
                ).format(dataset=dataset.name, split=split, shape=X.shape)
            )
        if width is not None and X.shape[1] != width:
            raise DataError(
                _("{dataset}: test rows of {test} features, but train rows of {train}").format(
                    dataset=dataset.name, test=X.shape[1], train=width
                )
            )
        width = X.shape[1]
        if len(y) and y.max() >= len(dataset.classes):
            raise DataError(
                _("{dataset}: label {label} in y_{split}, but only {classes} classes").format(
                    dataset=dataset.name, label=int(y.max()), split=split, classes=len(dataset.classes)
                )
            )
    return dataset


def check_memory(dataset: Dataset, dtype, one_hot: int = 0, splits: tuple[str, ...] = ("train", "test")) -> None:
    """Refuse a dataset that would take more than :func:`~chainrule.archive.memory_budget` once used: not
    the bytes its files held (pixels of one byte) but what training (``splits`` train and test) or
    evaluating (``("test",)``) makes of them: every row as ``dtype``, and ``one_hot`` numbers a row for the
    targets of a regression loss."""
    dtype = np.dtype(dtype)
    rows = sum(len(getattr(dataset, f"X_{split}")) for split in splits)
    needed, budget = rows * (dataset.features + one_hot) * dtype.itemsize, memory_budget()
    if needed <= budget:
        return
    if "train" not in splits:
        message = _(
            "{dataset}: evaluating on it takes about {needed:.0f} MB ({rows} rows of {features} features as "
            "{dtype}), more than the {budget:.0f} MB this machine allows; use fewer rows"
        )
    elif one_hot:
        message = _(
            "{dataset}: training on it takes about {needed:.0f} MB ({rows} rows of {features} features as "
            "{dtype} and one-hot targets of {classes} classes), more than the {budget:.0f} MB this machine "
            "allows; use fewer rows or classes"
        )
    else:
        message = _(
            "{dataset}: training on it takes about {needed:.0f} MB ({rows} rows of {features} features as "
            "{dtype}), more than the {budget:.0f} MB this machine allows; use fewer rows"
        )
    values = {"rows": rows, "features": dataset.features, "dtype": dtype, "classes": one_hot}
    raise DataError(message.format(dataset=dataset.name, needed=needed / 2**20, budget=budget / 2**20, **values))


def labels_for(dataset: Dataset, classes: tuple[str, ...]) -> NDArray:
    """The test labels of ``dataset`` as indices into a model's ``classes``: by name where the dataset's
    labels are names (a CSV's test file need not hold every class, nor in the model's order), by number
    otherwise; a label the model does not know is a :class:`DataError`."""
    y = dataset.y_test
    known = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    if dataset.named:
        index = {name: k for k, name in enumerate(classes)}
        mapping = np.array([index.get(name, -1) for name in dataset.classes], np.int64)
        mapped = mapping[y]
        if np.any(mapped < 0):
            name = dataset.classes[int(y[np.argmax(mapped < 0)])]
            raise DataError(
                _("{dataset}: the test set has label {label}, but the model knows {classes} classes ({known})").format(
                    dataset=dataset.name, label=f"{name!r:.80}", classes=len(classes), known=known
                )
            )
        return mapped
    if len(y) and y.max() >= len(classes):
        raise DataError(
            _("{dataset}: the test set has label {label}, but the model knows {classes} classes ({known})").format(
                dataset=dataset.name, label=int(y.max()), classes=len(classes), known=known
            )
        )
    return y


def describe(data_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """``(name, where it is or how it would be got)`` for every named dataset: ``chainrule datasets``."""
    rows = [("digits", _("embedded in chainrule ({folder})").format(folder=DIGITS))]
    for name, remote in REMOTES.items():
        folder = locate(name, data_dir)
        test_only = None if folder else locate(name, data_dir, ("test",))
        rows.append(
            (
                name,
                str(folder)
                if folder
                else _("{folder} (the test set only: evaluate reads it, train needs the train files too)").format(
                    folder=test_only
                )
                if test_only
                else _("not found (looked in {places}); will be downloaded from {mirror} into {folder}").format(
                    places=", ".join(map(str, search_path(name, data_dir))),
                    mirror=remote.mirrors[0],
                    folder=cache_dir() / name,
                ),
            )
        )
    return rows
