"""One run at a time in a run folder: the lock `train` holds on its --out while it runs.

    lock = RunLock("out/run")
    note = lock.acquire()      # UsageError naming the holder's PID if another run holds it
    ...                        # train, save checkpoints
    lock.release()

RUN/.lock holds who has the lock (PID, host, start time) for the messages; the lock itself is the
kernel's (flock on that file), so it ends with its process however that ends: a run killed by SIGKILL
leaves the file but not the lock, and the next run takes it over and says so. A second run on the
folder (a new one, --resume or --overwrite) is refused while the first lives.

Under mpiexec rank 0, the one rank that writes the folder, holds it. Worker processes never hold it:
the descriptor is not inherited (Python opens files non-inheritable, and workers start with close_fds).
On a file system without locks (ENOLCK: some network file systems) the run goes on unlocked, said; on
a system without fcntl (Windows) there is no lock.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import UsageError
from .files import file_mode

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

__all__ = ["RunLock", "LOCK_FILE"]

LOCK_FILE = ".lock"


class RunLock:
    """The lock on one run folder (`out`), taken by acquire() and given back by release()."""

    def __init__(self, out: str | os.PathLike, name: str = "--out"):
        self.out, self.name = Path(out), name  # name: how messages call the folder
        self.path = self.out / LOCK_FILE
        self.fd: int | None = None
        self.made: Path | None = None  # the first folder acquire() created, removed again if left empty

    def acquire(self, create: bool = True) -> str:
        """Take the lock, making the folder if needed (and `create`); return a note worth showing ("" if none).

        Raises UsageError naming the run that holds it. Where there is no folder (and none can be made),
        returns "" without a lock: nothing can be written there, and preparing or loading the run says why."""
        if fcntl is None:
            return ""
        try:
            self.made = _make_folders(self.out) if create else None
        except OSError:
            return ""
        if not self.out.is_dir() or (self.out / "manifest.json").exists():
            return ""  # no folder; or one checkpoint of a run, not a run folder (refused, and no lock file in it)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            except OSError as e:  # a read-only folder or file system, no inode left, ...
                raise UsageError(f"{self.name} {self.out} cannot be written: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise UsageError(f"{self.name} {self.out} is in use by another run ({_who(holder)}); wait for it to "
                                 f"end, or give another {self.name}") from None
            except OSError as e:  # ENOLCK, EOPNOTSUPP: this file system has no locks
                os.close(fd)
                return f"{self.name} {self.out} cannot be locked ({e.strerror}): make sure no other run writes there"
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed it as we opened it (release): lock the file now there
        self.fd, previous = fd, _read(fd)
        _write(fd, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        if previous:  # a holder that never released it: killed
            return f"{self.name} {self.out} was locked by {_who(previous)}, which has ended without unlocking it " \
                   "(killed?): taking it over"
        return ""

    def release(self) -> None:
        """Give the lock back (remove .lock, and the folders acquire() made if they are still empty)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a run waiting on this file sees it gone and retries
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        folder = self.out
        while self.made is not None and folder != self.made.parent:
            try:
                os.rmdir(folder)  # only an empty one: a run that wrote nothing (its data check failed)
            except OSError:
                break
            folder = folder.parent


def _make_folders(out: Path) -> Path | None:
    """Make `out` and its missing parents; return the first one made (None if `out` existed)."""
    first = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)
    out.mkdir(parents=True, exist_ok=True)
    return first


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read(fd: int) -> dict:
    """Who holds (or held) the lock, as the file says; {} if it says nothing readable."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, holder: dict) -> None:
    try:
        data = json.dumps(holder).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:  # a full disk: the lock holds all the same, only its messages say less
        pass


def _who(holder: dict) -> str:
    if "pid" not in holder:
        return "a process that did not say which"
    return f"PID {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
