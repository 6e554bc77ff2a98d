"""What decoding produces: image, text and video items, and failures that name their source."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import InvalidInputError, LimitExceededError, NotFoundError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg"})
TEXT_SUFFIXES = frozenset({".txt"})
TABLE_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson"})

MediaLike = str | Path | bytes | Image.Image


@dataclass(frozen=True)
class ImageItem:
    """A decoded RGB image and the hash of its source bytes."""

    source: str
    image: Image.Image
    content_hash: str


@dataclass(frozen=True)
class TextItem:
    """A non-empty text."""

    source: str
    text: str
    content_hash: str


@dataclass(frozen=True)
class VideoItem:
    """Frames sampled from a video, with their timestamps (seconds) and frame hashes."""

    source: str
    content_hash: str
    frames: list[Image.Image] = field(repr=False)
    timestamps: list[float]
    frame_hashes: list[str]


Item = ImageItem | TextItem | VideoItem


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, and why (``error``: the typed error behind it, when there is one)."""

    source: str
    reason: str
    error: Exception | None = field(default=None, compare=False, repr=False)


def sha256_hex(data: bytes) -> str:
    """Content hash of bytes (the embedding cache's key)."""
    return hashlib.sha256(data).hexdigest()


def shown(path: str | Path) -> str:
    """A path as text that is valid UTF-8 whatever bytes the file system holds (undecodable ones as ``\\xNN``)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """A file's bytes, refused once more than ``limit`` arrive (the size a file system reports is not trusted:
    devices and FIFOs report none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once, even with no writer yet
    os.set_blocking(fd, True)  # then reads wait for data, and end at once when no writer is left
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise LimitExceededError(f"{shown(path)}: more than {limit} bytes, the limit for {what}")
    return data


def check_path(path: Path) -> Path:
    """``path`` if it names something that exists (and holds no NUL byte), else a typed error."""
    if "\x00" in str(path):
        raise InvalidInputError("path contains a NUL character")
    if not path.exists():
        raise NotFoundError(f"{shown(path)}: no such file or directory")
    return path
