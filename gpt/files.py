"""Writing files safely: a file appears whole or not at all, on disk, with the usual permissions."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "fsync", "file_mode", "sha256"]


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) on a temp file in path's folder, fsync it, rename it over `path`, fsync the folder.

    A crash at any moment leaves the old file or the new one, complete (the data reaches the disk before the
    rename that publishes it, the rename before we return). The file gets the usual permissions (0666 minus
    the umask), although safetensors writes 0600."""
    path = Path(path)
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync(path.parent)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's contents to disk (a folder's: the names of what it holds)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_mode() -> int:
    """Permissions of a new file under the current umask (mkstemp and safetensors make 0600 files)."""
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return 0o666 & ~mask


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
