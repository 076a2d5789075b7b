"""The output folder of a training run: created or checked, locked, and cleared of an earlier run.

One run at a time writes into a folder: it holds a lock on the file ``.chainrule.lock`` there (an
``flock``, which the system releases when the process ends however it ends, so a lock left by a killed
run is taken over at once; the file names the holder's process id for the message a second run gets).
``--force`` moves aside only the files a run writes (:data:`RUN_FILES`, and a model card chainrule
wrote), and only when :meth:`RunFolder.clear_earlier_run` is called: after the new run's data are loaded
and checked, its model built and the free space measured, so that a typo in ``--dataset`` or a full disk
leaves the earlier run as it was. They are deleted once the new run has written its first checkpoint, and
put back if it fails or is killed before (by the next run that opens the folder). Temporary files of a
write that a kill interrupted are removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import time
from pathlib import Path

from chainrule.errors import ConfigError
from chainrule.i18n import _
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
#: Where ``--force`` keeps an earlier run's files until the new run's first checkpoint.
EARLIER = ".chainrule-earlier-run"
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
            if (out / CHECKPOINT).exists():  # a run killed between its first checkpoint and keep_new_run
                shutil.rmtree(out / EARLIER, ignore_errors=True)
            else:  # a run killed before its first checkpoint: the earlier run comes back
                folder._restore_earlier_run()
            others = [p.name for p in out.iterdir() if p.name != LOCK]
            if others and not (config.force or resume):
                raise ConfigError(
                    _(
                        "--out {out} exists and is not empty; choose another folder or pass --force to overwrite "
                        "the files of a run there"
                    ).format(out=out)
                )
            probe = out / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            folder.release()
            raise _cannot_write(out, err) from None
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
        """Move the files of an earlier run (``--force``) out of the way, so that none is mixed with this
        run's (a stale checkpoint would resume the old run): into the hidden folder :data:`EARLIER`, where
        they stay until this run's first checkpoint is written (:meth:`keep_new_run`); a run that fails or
        is killed before that gets them back (:meth:`discard`, or the next :meth:`open`)."""
        aside = self.path / EARLIER
        for path in self.earlier_run():
            try:
                if path.is_dir() and not path.is_symlink():  # not a run's file: a folder is never removed
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
                aside.mkdir(exist_ok=True)
                path.rename(aside / path.name)
            except OSError as err:
                self._restore_earlier_run()
                raise ConfigError(
                    _("--force: cannot remove {path} of the earlier run ({reason})").format(
                        path=path, reason=err.strerror or err
                    )
                ) from None
        self.cleared = True

    def keep_new_run(self) -> None:
        """This run has written its first checkpoint: the earlier run's files are deleted for good."""
        if self.cleared:
            shutil.rmtree(self.path / EARLIER, ignore_errors=True)

    def release(self) -> None:
        """Give up the lock (and remove a folder created for a run that saved nothing: ``discard``). The lock
        file is removed only while it is still this process's (the same file, not one a later run made)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.path / LOCK).st_ino == os.fstat(self._lock).st_ino:
                    (self.path / LOCK).unlink()
            os.close(self._lock)
            self._lock = None

    def discard(self) -> bool:
        """Remove the folder if this run created it, or else give back the files of the earlier run that
        ``--force`` moved aside; then release. Whether an earlier run was given back."""
        restored = False
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            restored = self._restore_earlier_run()
        self.release()
        return restored

    def _restore_earlier_run(self) -> bool:
        """The files of an earlier run moved aside, back in place of any of this run's (whether there were)."""
        aside = self.path / EARLIER
        if not aside.is_dir():
            return False
        for path in aside.iterdir():
            path.replace(self.path / path.name)
        aside.rmdir()
        return True

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
            raise ConfigError(_("--out {out} exists and is not a folder").format(out=out))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                out.mkdir()
                return out, True
            except FileExistsError:
                if config.out is not None and out.is_dir():
                    return out, False
        except OSError as err:
            raise _cannot_write(out, err) from None
    raise ConfigError(_("no free folder name under {folder}; pass --out").format(folder=Path("runs")))


def _cannot_write(out: Path, err: OSError) -> ConfigError:
    return ConfigError(
        _("cannot write to the output folder {out} ({reason})").format(out=out, reason=err.strerror or err)
    )


def _lock(out: Path) -> int | None:
    """Take the lock of ``out``, or a :class:`ConfigError` naming the process that holds it."""
    if fcntl is None:
        return None
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _cannot_write(out, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                _(
                    "--out {out}: another chainrule train (process {holder}) is writing there; wait for it to "
                    "finish or choose another folder"
                ).format(out=out, holder=holder)
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
