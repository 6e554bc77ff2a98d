"""Turning paths, bytes, PIL images, text and video into decoded items, within limits.

Nothing here embeds or stores: it only decodes and validates. Bad items become
:class:`Failure` records (named by source) so one corrupt file never sinks a batch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import queue
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Limits
from .errors import InvalidInputError, LimitExceededError, NotFoundError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg"})
TEXT_SUFFIXES = frozenset({".txt"})
T = TypeVar("T")
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any PIL mode (CMYK, 16-bit, float, palette, alpha) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(data: bytes, *, source: str, limits: Limits, draft: int | None = None) -> ImageItem:
    """Decode image bytes into an :class:`ImageItem`, enforcing byte and pixel limits.

    Animated images contribute their first frame; EXIF orientation is applied. ``draft``: the
    smallest side the embedder needs; a JPEG much larger than that is decoded at 1/2, 1/4 or
    1/8 scale by the JPEG decoder itself (never below ``draft``), which is several times faster.
    """
    if len(data) == 0:
        raise InvalidInputError(f"{source}: empty file (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise LimitExceededError(
            f"{source}: {len(data)} bytes exceeds the image limit of {limits.max_image_bytes} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise LimitExceededError(
                    f"{source}: {width}x{height} pixels exceeds the limit of {limits.max_image_pixels} pixels"
                )
            img.seek(0)
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
            rgb = _to_rgb(ImageOps.exif_transpose(img) or img)
    except LimitExceededError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(f"{source}: image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InvalidInputError(f"{source}: not a recognised image file") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"{source}: corrupt or truncated image ({exc})") from exc
    return ImageItem(source=source, image=rgb, content_hash=_sha256(data))


def thumbnail_jpeg(image: Image.Image, size: int = 128) -> bytes:
    """A JPEG of ``image`` at most ``size`` pixels on a side."""
    small = image.copy()
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.convert("RGB").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def image_from_pil(img: Image.Image, *, source: str, limits: Limits) -> ImageItem:
    """Wrap an in-memory PIL image; its hash covers the decoded pixels."""
    if img.width * img.height > limits.max_image_pixels:
        raise LimitExceededError(f"{source}: {img.width}x{img.height} pixels exceeds the limit")
    rgb = _to_rgb(img)
    return ImageItem(source=source, image=rgb, content_hash=_sha256(rgb.tobytes() + repr(rgb.size).encode()))


def make_text(text: str, *, source: str = "<text>", limits: Limits | None = None) -> TextItem:
    """Validate a text input: non-empty after stripping, no NUL, within the length limit."""
    limits = limits or Limits()
    if not isinstance(text, str):
        raise InvalidInputError(f"{source}: text must be a string, got {type(text).__name__}")
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInputError(f"{source}: empty text")
    if "\x00" in cleaned:
        raise InvalidInputError(f"{source}: text contains a NUL character")
    if len(cleaned) > limits.max_text_chars:
        raise LimitExceededError(f"{source}: text of {len(cleaned)} characters exceeds {limits.max_text_chars}")
    return TextItem(source=source, text=cleaned, content_hash=_sha256(cleaned.encode("utf-8")))


def decode_video(path: Path, *, limits: Limits, fps: float | None = None) -> VideoItem:
    """Sample frames from a video file at ``fps`` frames per second (first frame always kept)."""
    import av  # deferred: PyAV pulls in FFmpeg, needed only for video

    source = str(path)
    rate = fps if fps is not None else limits.video_fps
    if rate <= 0:
        raise InvalidInputError(f"video frame rate must be positive, got {rate}")
    size = path.stat().st_size
    if size == 0:
        raise InvalidInputError(f"{source}: empty file (0 bytes)")
    if size > limits.max_video_bytes:
        raise LimitExceededError(f"{source}: {size} bytes exceeds the video limit of {limits.max_video_bytes}")
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(chunk)
    frames: list[Image.Image] = []
    stamps: list[float] = []
    next_t = 0.0
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise InvalidInputError(f"{source}: no video stream")
            stream = container.streams.video[0]
            if stream.width * stream.height > limits.max_image_pixels:
                raise LimitExceededError(f"{source}: frame size {stream.width}x{stream.height} exceeds the pixel limit")
            for index, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
                if t + 1e-6 < next_t:
                    continue
                frames.append(frame.to_image().convert("RGB"))
                stamps.append(round(t, 3))
                next_t = t + 1.0 / rate
                if len(frames) >= limits.max_video_frames:
                    break
    except (InvalidInputError, LimitExceededError):
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{source}: cannot decode video ({exc})") from exc
    if not frames:
        raise InvalidInputError(f"{source}: video has no decodable frames")
    frame_hashes = [_sha256(hasher.hexdigest().encode() + f":{t}".encode()) for t in stamps]
    return VideoItem(
        source=source, content_hash=hasher.hexdigest(), frames=frames, timestamps=stamps, frame_hashes=frame_hashes
    )


def _check_path(path: Path) -> Path:
    if "\x00" in str(path):
        raise InvalidInputError("path contains a NUL character")
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or directory")
    return path


def load_media(
    obj: MediaLike, *, limits: Limits, source: str | None = None, draft: int | None = None
) -> ImageItem | VideoItem:
    """Decode one image or video given as a path, raw bytes or a PIL image (``draft``: see :func:`decode_image`)."""
    if isinstance(obj, Image.Image):
        return image_from_pil(obj, source=source or "<image>", limits=limits)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return decode_image(bytes(obj), source=source or "<bytes>", limits=limits, draft=draft)
    path = _check_path(Path(obj))
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a directory (use add/import on folders)")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return decode_video(path, limits=limits)
    size = path.stat().st_size
    if size > limits.max_image_bytes:
        raise LimitExceededError(f"{path}: {size} bytes exceeds the image limit of {limits.max_image_bytes} bytes")
    return decode_image(path.read_bytes(), source=source or str(path), limits=limits, draft=draft)


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
                yield Failure(str(here / name), f"symlink leaves {root}: not followed")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES:
                continue
            if _leaves(path, real_root):
                yield Failure(str(path), f"symlink leaves {root}: not read")
            elif path.is_file():
                yield path


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path | Failure]:
    """Expand folders (see :func:`walk_folder`) into their image/video/text files; keep files as given."""
    for raw in paths:
        try:
            path = _check_path(Path(raw))
        except (InvalidInputError, NotFoundError) as exc:
            yield Failure(str(raw), str(exc), exc)
            continue
        if path.is_dir():
            yield from walk_folder(path)
        else:
            yield path


def concept_folders(root: Path) -> list[tuple[str, list[Path | Failure]]]:
    """List ``(concept, files)`` for a folder holding one subfolder per concept (see :func:`walk_folder`)."""
    root = _check_path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a directory")
    out: list[tuple[str, list[Path | Failure]]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _leaves(sub, root.resolve()):
            out.append((sub.name, [Failure(str(sub), f"symlink leaves {root}: not followed")]))
            continue
        files = list(walk_folder(sub))
        if files:
            out.append((sub.name, files))
    if not any(isinstance(f, Path) for _, files in out for f in files):
        raise InvalidInputError(f"{root}: no concept subfolders with images, videos or .txt files")
    return out


def read_text_lines(path: Path) -> list[str]:
    """One text per non-empty line of a ``.txt`` file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_text_table(
    path: Path, *, text_column: str | None = None, label_column: str | None = None
) -> list[tuple[str, str | None]]:
    """Read ``(text, label)`` rows from CSV or JSONL.

    Columns default to the first of ``text``/``sentence``/``utterance`` and of
    ``label``/``category``/``concept``/``intent``; a missing label column gives ``None`` labels.
    """
    path = _check_path(path)
    suffix = path.suffix.lower()
    rows: list[dict[str, object]]
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        elif suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise InvalidInputError(f"{path}:{n}: expected a JSON object per line")
                rows.append(obj)
        else:
            raise InvalidInputError(f"{path}: unsupported table type {suffix!r} (use .csv or .jsonl)")
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: cannot parse ({exc})") from exc
    if not rows:
        raise InvalidInputError(f"{path}: no rows")
    columns = list(rows[0].keys())
    text_col = text_column or _pick(columns, ("text", "sentence", "utterance", "query"))
    label_col = label_column or _pick(columns, ("label", "category", "concept", "intent", "class"))
    if text_col is None or text_col not in columns:
        raise InvalidInputError(f"{path}: text column {text_column or 'text'!r} not found; columns are {columns}")
    if label_column is not None and label_column not in columns:
        raise InvalidInputError(f"{path}: label column {label_column!r} not found; columns are {columns}")
    out: list[tuple[str, str | None]] = []
    for row in rows:
        label = row.get(label_col) if label_col else None
        out.append((str(row.get(text_col) or ""), str(label) if label not in (None, "") else None))
    return out


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def decode_paths(
    paths: Iterable[str | Path], *, limits: Limits, draft: int | None = None
) -> Iterator[ImageItem | TextItem | VideoItem | Failure]:
    """Files and folders (expanded, see :func:`expand_paths`) as decoded items; ``.txt`` files give one text
    per line. What cannot be read becomes a :class:`Failure` naming it."""
    for p in expand_paths(paths):
        if isinstance(p, Failure):
            yield p
            continue
        try:
            if p.suffix.lower() in TEXT_SUFFIXES:
                for n, line in enumerate(read_text_lines(p), start=1):
                    yield make_text(line, source=f"{p}:{n}", limits=limits)
            else:
                yield load_media(p, limits=limits, draft=draft)
        except (InvalidInputError, NotFoundError, OSError, UnicodeDecodeError) as exc:
            yield Failure(str(p), str(exc), exc)


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


def decode_texts(texts: Iterable[tuple[str, str]], *, limits: Limits) -> Iterator[TextItem | Failure]:
    """``(source, text)`` pairs as text items, or failures naming the source."""
    for source, text in texts:
        try:
            yield make_text(text, source=source, limits=limits)
        except InvalidInputError as exc:
            yield Failure(source, str(exc), exc)


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
