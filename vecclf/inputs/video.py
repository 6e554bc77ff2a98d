"""Videos: frames sampled at a rate (PyAV), within the byte, pixel and frame limits."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from PIL import Image

from ..config import Limits
from ..errors import InvalidInputError, LimitExceededError
from .items import VideoItem, sha256_hex, shown


def decode_video(path: Path, *, limits: Limits, fps: float | None = None, source: str | None = None) -> VideoItem:
    """Sample frames from a video file at ``fps`` frames per second (first frame always kept); ``source`` names
    it in the item and in errors (default: its path)."""
    import av  # deferred: PyAV pulls in FFmpeg, needed only for video

    source = source or shown(path)
    rate = fps if fps is not None else limits.video_fps
    if not (rate > 0 and math.isfinite(rate)):
        raise InvalidInputError(f"video frame rate must be a positive number, got {rate}")
    if not path.is_file():  # PyAV would read a device or FIFO without end: only files are videos
        raise InvalidInputError(f"{source}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InvalidInputError(f"{source}: empty file (0 bytes)")
    if size > limits.max_video_bytes:
        raise LimitExceededError(f"{source}: {size} bytes exceeds the video limit of {limits.max_video_bytes}")
    hasher, seen = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            seen += len(chunk)
            if seen > limits.max_video_bytes:  # it grew while being read
                raise LimitExceededError(f"{source}: more than {limits.max_video_bytes} bytes, the limit for a video")
            hasher.update(chunk)
    frames: list[Image.Image] = []
    stamps: list[float] = []
    next_t = 0.0
    try:
        with av.open(str(path)) as container:
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
    frame_hashes = [sha256_hex(hasher.hexdigest().encode() + f":{t}".encode()) for t in stamps]
    return VideoItem(
        source=source, content_hash=hasher.hexdigest(), frames=frames, timestamps=stamps, frame_hashes=frame_hashes
    )
