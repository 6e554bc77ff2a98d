"""Paths and folders: walked without leaving them, decoded (ahead, in a background thread) into items."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from ..config import Limits
from ..errors import InvalidInputError, NotFoundError
from .images import decode_image, image_from_pil
from .items import (
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    VIDEO_SUFFIXES,
    Failure,
    ImageItem,
    MediaLike,
    TextItem,
    VideoItem,
    check_path,
    read_bounded,
    shown,
)
from .texts import decode_texts, read_text_table, text_file_items
from .video import decode_video

T = TypeVar("T")


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:  # "[Errno 13] Permission denied: '/long/path'" -> the cause
        return exc.strerror
    return str(exc)


def load_media(
    obj: MediaLike, *, limits: Limits, source: str | None = None, draft: int | None = None
) -> ImageItem | VideoItem:
    """Decode one image or video given as a path, raw bytes or a PIL image (``draft``: see :func:`decode_image`)."""
    if isinstance(obj, Image.Image):
        return image_from_pil(obj, source=source or "<image>", limits=limits)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return decode_image(bytes(obj), source=source or "<bytes>", limits=limits, draft=draft)
    path = check_path(Path(obj))
    if path.is_dir():
        raise InvalidInputError(f"{shown(path)}: is a directory (use add/import on folders)")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return decode_video(path, limits=limits, source=source or shown(path.absolute()))
    data = read_bounded(path, limits.max_image_bytes, "an image")
    return decode_image(data, source=source or shown(path.absolute()), limits=limits, draft=draft)


MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES | TEXT_SUFFIXES


def _leaves(path: Path, real_root: Path) -> bool:
    """True for a symlink whose target lies outside ``real_root`` (an already resolved folder)."""
    return path.is_symlink() and not path.resolve().is_relative_to(real_root)


def walk_folder(root: Path) -> Iterator[Path | Failure]:
    """Media files under ``root`` (recursively, sorted, hidden names skipped).

    Nothing outside ``root`` is read: a symlink that leaves it becomes a :class:`Failure`;
    symlinked folders that stay inside are skipped (their files are reached by their real path).
    """
    real_root = root.resolve()
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        for name in sorted(dirs):
            if _leaves(here / name, real_root):
                yield Failure(shown(here / name), f"symlink leaves {shown(root)}: not followed")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES:
                continue
            if _leaves(path, real_root):
                yield Failure(shown(path), f"symlink leaves {shown(root)}: not read")
            elif path.is_file():
                yield path


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path | Failure]:
    """Expand folders (see :func:`walk_folder`) into their image/video/text files; keep files as given."""
    for raw in paths:
        try:
            path = check_path(Path(raw))
        except (InvalidInputError, NotFoundError) as exc:
            yield Failure(shown(raw), str(exc), exc)
            continue
        if path.is_dir():
            yield from walk_folder(path)
        else:
            yield path


def concept_folders(root: Path) -> list[tuple[str, list[Path | Failure]]]:
    """List ``(concept, files)`` for a folder holding one subfolder per concept (see :func:`walk_folder`)."""
    root = check_path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{shown(root)}: not a directory")
    out: list[tuple[str, list[Path | Failure]]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _leaves(sub, root.resolve()):
            out.append((sub.name, [Failure(shown(sub), f"symlink leaves {shown(root)}: not followed")]))
            continue
        files = list(walk_folder(sub))
        if files:
            out.append((sub.name, files))
    if not any(isinstance(f, Path) for _, files in out for f in files):
        raise InvalidInputError(f"{shown(root)}: no concept subfolders with images, videos or .txt files")
    return out


def decode_paths(
    paths: Iterable[str | Path],
    *,
    limits: Limits,
    draft: int | None = None,
    tables: bool = False,
    text_column: str | None = None,
) -> Iterator[ImageItem | TextItem | VideoItem | Failure]:
    """Files and folders (expanded, see :func:`expand_paths`) as decoded items, named by absolute path;
    ``.txt`` files give one text per line, and with ``tables`` a CSV/JSONL file gives one per row (its
    ``text_column``; sources ``FILE:LINE``). What cannot be read becomes a :class:`Failure` naming it."""
    for p in expand_paths(paths):
        if isinstance(p, Failure):
            yield p
            continue
        p = p.absolute()
        suffix = p.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            yield from text_file_items(p, limits=limits)
            continue
        if tables and suffix in TABLE_SUFFIXES:
            try:
                rows = read_text_table(p, text_column=text_column, limits=limits)
            except (InvalidInputError, OSError) as exc:
                yield Failure(shown(p), _reason(exc), exc)
                continue
            yield from decode_texts(((f"{shown(p)}:{n}", text) for n, text, _ in rows), limits=limits)
            continue
        try:
            yield load_media(p, limits=limits, draft=draft)
        except (InvalidInputError, NotFoundError, OSError) as exc:
            yield Failure(shown(p), _reason(exc), exc)


def count_inputs(paths: Iterable[str | Path], *, tables: bool = False, max_bytes: int = 256 * 1024 * 1024) -> int:
    """About how many items :func:`decode_paths` gives for ``paths`` (a line of a ``.txt`` file, a row of a
    table, a file; an unreadable path counts once): a total for progress, found without decoding anything."""
    total = 0
    for p in expand_paths(paths):
        suffix = p.suffix.lower() if isinstance(p, Path) else ""
        lines = 1
        if isinstance(p, Path) and (suffix in TEXT_SUFFIXES or (tables and suffix in TABLE_SUFFIXES)):
            try:  # regular files within the read limit only: a FIFO or a device is never read twice
                if p.is_file() and p.stat().st_size <= max_bytes:
                    with p.open("rb") as f:
                        lines = sum(1 for line in f if line.strip())
            except OSError:
                pass
            total += max(1, lines - (suffix == ".csv"))  # a CSV's header is no row
        else:
            total += 1
    return total


def decode_media(
    media: Sequence[MediaLike], *, limits: Limits, draft: int | None = None
) -> Iterator[ImageItem | TextItem | VideoItem | Failure]:
    """Paths, folders, bytes and PIL images as decoded items (in-memory ones named ``<input N>``)."""
    yield from decode_paths([m for m in media if isinstance(m, (str, Path))], limits=limits, draft=draft)
    for n, obj in enumerate(m for m in media if not isinstance(m, (str, Path))):
        try:
            yield load_media(obj, limits=limits, source=f"<input {n}>", draft=draft)
        except InvalidInputError as exc:
            yield Failure(f"<input {n}>", str(exc), exc)


def decode_ahead(items: Iterable[T], ahead: int = 32) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``ahead`` items early.

    Files are read and decoded while the model embeds the previous batch: PIL, PyAV and torch
    release the GIL, so the two overlap. Errors raised while iterating surface here, in order.
    """
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer went away

    def work() -> None:
        try:
            for it in items:
                if not put(("item", it)):
                    return
            put(("done", None))
        except BaseException as exc:
            put(("error", exc))

    worker = threading.Thread(target=work, name="vecclf-decode", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "item":
                yield value
            elif kind == "done":
                return
            else:
                raise value
    finally:
        stop.set()
