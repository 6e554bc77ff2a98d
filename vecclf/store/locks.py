"""Locks: the process-wide single-writer file lock, and a re-entrant readers-writer lock between threads."""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreLockedError

LOCK_FILE = "store.lock"


class RWLock:
    """Shared ``read()`` / exclusive ``write()`` blocks, both re-entrant within a thread.

    A thread holding the write lock may also read. A waiting writer stops *new* readers from
    entering (so writes are not starved), but a thread already reading may nest further reads.
    Upgrading (write while holding only a read) is not supported and raises.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._write_depth = 0
        self._writers_waiting = 0
        self._local = threading.local()

    def _read_depth(self) -> int:
        return int(getattr(self._local, "depth", 0))

    def held_for_write(self) -> bool:
        """True when the calling thread holds the write lock."""
        return self._writer == threading.get_ident()

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared for the block."""
        if self.held_for_write() or self._read_depth() > 0:
            self._local.depth = self._read_depth() + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively for the block."""
        me = threading.get_ident()
        if self._writer == me:
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
            return
        if self._read_depth() > 0:
            raise RuntimeError("cannot take the write lock while holding a read lock (no upgrades)")
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = me
            self._write_depth = 1
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._write_depth = 0
                self._cond.notify_all()


READERS_DIR = "store.readers"


def _me() -> str:
    command = " ".join(sys.argv).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return f"pid {os.getpid()}: {command[:200]}"  # argv may hold bytes that are not UTF-8


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def readers(root: Path) -> list[str]:
    """What the read-only processes that have the store open said of themselves (stale entries are skipped)."""
    out = []
    for entry in sorted((root / READERS_DIR).glob("*")) if (root / READERS_DIR).is_dir() else []:
        if entry.name.isdigit() and _alive(int(entry.name)):
            out.append(entry.read_text(errors="replace").strip())
    return out


def take_file_lock(path: Path, *, shared: bool = False) -> int | None:
    """The store's process lock on ``store.lock``: exclusive for the one writer (naming itself in the file), shared
    for read-only opens (each naming itself under ``store.readers/``), so that a refusal names who holds it."""
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if not shared:
            raise
        try:
            fd = os.open(lock_path, os.O_RDONLY)  # a read-only copy of a store: a shared lock still works
        except OSError:
            return None  # nothing to lock on a read-only medium without a lock file: nobody can write there
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if shared:
            raise StoreLockedError(
                f"store {path} is open for writing by another process ({holder(path) or 'unknown process'}); "
                "read it through that process (vecclf serve answers over HTTP) or wait until it ends"
            ) from None
        held = readers(path) or [holder(path) or "unknown process"]
        raise StoreLockedError(
            f"store {path} is open in another process ({'; '.join(held)[:400]}); stop it or open this store read-only"
        ) from None
    if shared:
        try:
            (path / READERS_DIR).mkdir(exist_ok=True)
            for entry in (path / READERS_DIR).glob("*"):  # notes of readers killed before they could tidy up
                if entry.name.isdigit() and not _alive(int(entry.name)):
                    entry.unlink(missing_ok=True)
            (path / READERS_DIR / str(os.getpid())).write_text(_me() + " (read-only)")
        except OSError:
            pass  # a read-only file system: the refusal will just name fewer holders
        return fd
    os.ftruncate(fd, 0)
    os.write(fd, _me().encode())
    return fd


def unlock(fd: int | None, root: Path | None = None) -> None:
    """Release a lock taken by :func:`take_file_lock` (a reader's note under ``root`` goes too)."""
    if fd is not None:
        if root is not None:
            (root / READERS_DIR / str(os.getpid())).unlink(missing_ok=True)
        os.close(fd)  # closing the descriptor releases the flock


def holder(root: Path) -> str:
    """What the lock file says of the process that holds (or last held) the writer lock."""
    lock = root / LOCK_FILE
    return lock.read_text(errors="replace").strip() if lock.exists() else ""
