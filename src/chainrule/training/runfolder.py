"""The output folder of a training run: created or checked, locked, and cleared of an earlier run.

One run at a time writes into a folder: it holds a lock on the file ``.chainrule.lock`` there (an
``flock``, which the system releases when the process ends however it ends, so a lock left by a killed
run is taken over at once; the file names the holder's process id for the message a second run gets).
``--force`` removes only the files a run writes (:data:`RUN_FILES`, and a model card chainrule wrote),
and only when :meth:`RunFolder.clear_earlier_run` is called: after the new run's data are loaded and
checked, its model built and the free space measured, so that a typo in ``--dataset`` or a full disk
leaves the earlier run as it was. Temporary files of a write that a kill interrupted are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from chainrule.errors import ConfigError
from chainrule.training import card
from chainrule.training.checkpoint import NAME as CHECKPOINT
from chainrule.training.config import TrainConfig

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

#: The files a run writes into its folder (and the only ones --force removes).
RUN_FILES = (
    "model.npz",
    "metrics.json",
    CHECKPOINT,
    "learning_curves.png",
    "confusion_matrix.png",
    "first_layer_weights.png",
    "most_confident_errors.png",
    "report.html",
)
LOCK = ".chainrule.lock"
#: The temporary files of chainrule.archive.atomic_write (``.NAME.8 hex digits.tmp``).
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


class RunFolder:
    """A run's output folder, locked by this process until :meth:`release`."""

    def __init__(self, path: Path, created: bool, lock: int | None) -> None:
        self.path, self.created, self._lock = path, created, lock
        self.cleared = False  # whether clear_earlier_run has run

    @classmethod
    def open(cls, config: TrainConfig, resume: bool = False) -> RunFolder:
        """The folder of ``config.out`` (or a new one under ``runs/``), created if need be, locked, and
        checked: writable, and empty of other files unless ``config.force`` or ``resume``."""
        out, created = _make(config)
        try:
            lock = _lock(out)
        except BaseException:
            if created:  # only if empty: the run that holds the lock may have its lock file there
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        folder = cls(out, created, lock)
        try:
            folder._remove_temporary_files()
            others = [p.name for p in out.iterdir() if p.name != LOCK]
            if others and not (config.force or resume):
                raise ConfigError(
                    f"--out {out} exists and is not empty; choose another folder or pass --force "
                    "to overwrite the files of a run there"
                )
            probe = out / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            folder.release()
            raise ConfigError(f"cannot write to the output folder {out} ({err.strerror or err})") from None
        except BaseException:
            folder.release()
            raise
        return folder

    def earlier_run(self) -> list[Path]:
        """The files of an earlier run here: what :meth:`clear_earlier_run` removes."""
        files = [self.path / name for name in RUN_FILES]
        files += [self.path / card.NAME] if card.is_ours(self.path / card.NAME) else []  # a user's README stays
        return [path for path in files if os.path.lexists(path)]

    def clear_earlier_run(self) -> None:
        """Remove the files of an earlier run (``--force``), so that none is mixed with this run's (a stale
        checkpoint would resume the old run)."""
        for path in self.earlier_run():
            try:
                path.unlink()
            except OSError as err:
                raise ConfigError(f"--force: cannot remove {path} of the earlier run ({err.strerror or err})") from None
        self.cleared = True

    def release(self) -> None:
        """Give up the lock (and remove a folder created for a run that saved nothing: ``discard``)."""
        if self._lock is not None:
            if self.path.is_dir():
                Path(self.path / LOCK).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None

    def discard(self) -> None:
        """Remove the folder if this run created it; then release."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def _remove_temporary_files(self) -> None:
        for path in self.path.iterdir():
            if _TEMPORARY.match(path.name) or path.name == ".write-test":
                path.unlink(missing_ok=True)


def _make(config: TrainConfig) -> tuple[Path, bool]:
    """The folder and whether it was created now (by this process: two runs cannot both create it)."""
    if config.out is None:
        stem = Path("runs") / f"{Path(config.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        candidates = (stem if k == 1 else Path(f"{stem}-{k}") for k in range(1, 10_000))
    else:
        candidates = iter([Path(config.out)])
    for out in candidates:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                out.mkdir()
                return out, True
            except FileExistsError:
                if config.out is not None and out.is_dir():
                    return out, False
        except OSError as err:
            raise ConfigError(f"cannot write to the output folder {out} ({err.strerror or err})") from None
    raise ConfigError(f"no free folder name under {Path('runs')}; pass --out")


def _lock(out: Path) -> int | None:
    """Take the lock of ``out``, or a :class:`ConfigError` naming the process that holds it."""
    if fcntl is None:
        return None
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot write to the output folder {out} ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"--out {out}: another chainrule train (process {holder}) is writing there; wait for it to "
                "finish or choose another folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file that its last holder removed between our open and our lock
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)
