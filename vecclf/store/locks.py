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


def take_file_lock(path: Path) -> int:
    """The store's single-writer lock (an exclusive ``flock`` on ``store.lock``, naming this process),
    refused at once with the holder named when another process has it."""
    lock_path = path / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLockedError(
            f"store {path} is open for writing by another process ({holder(path) or 'unknown process'}); "
            "stop it or open this store read-only"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}".encode())
    return fd


def unlock(fd: int | None) -> None:
    """Release a lock taken by :func:`take_file_lock`."""
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def holder(root: Path) -> str:
    """What the lock file says of the process that holds (or last held) the writer lock."""
    lock = root / LOCK_FILE
    return lock.read_text(errors="replace").strip() if lock.exists() else ""
