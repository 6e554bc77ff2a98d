"""What every embedder is: the :class:`Embedder` protocol, a base class with its defaults, shared helpers.

Every embedder returns L2-normalised float32 rows. An embedder whose image and text towers share one
space (CLIP) is *joint*; otherwise images (and video frames) and texts live in separate spaces and
may not be compared with each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ..errors import ModalityError
from ..inputs import ImageItem, Item, VideoItem

Progress = Callable[[int], None]


@runtime_checkable
class Embedder(Protocol):
    """What the rest of vecclf needs from an embedding model."""

    name: str
    modalities: frozenset[str]
    joint: bool

    @property
    def dim(self) -> int:
        """Dimension of the image space (equal to the text one when ``joint``)."""

    @property
    def spec(self) -> dict[str, Any]:
        """How to load this embedder again (may contain local paths)."""

    @property
    def identity(self) -> dict[str, Any]:
        """What the vectors mean: stores refuse vectors from a different identity."""

    def spaces(self) -> dict[str, int]:
        """Space name -> dimension."""

    def space_of(self, modality: str) -> str:
        """The space an input of ``modality`` ('image', 'video', 'frame', 'text') is embedded into."""

    def prepare(self, item: Item, *, split: bool = False) -> list[Item]:
        """What this embedder embeds of an input: usually the input itself; ``split`` asks for one item per
        subject (every face of a photo, every sampled frame of a video). Raises a :class:`VecclfError`
        when the input has nothing to embed (a photo without a face)."""

    def embed_images(self, images: Sequence[Image.Image], progress: Progress | None = None) -> np.ndarray:
        """Embed RGB images into ``(n, dim)`` normalised float32."""

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed texts into ``(n, text dim)`` normalised float32."""


def frames_of(video: VideoItem) -> list[Item]:
    """A video's sampled frames as images; sources end in ``#t=SECONDS`` (a media fragment)."""
    return [
        ImageItem(source=f"{video.source}#t={t:g}", image=frame, content_hash=h)
        for frame, t, h in zip(video.frames, video.timestamps, video.frame_hashes)
    ]


class BaseEmbedder:
    """Defaults shared by the built-in embedders: spaces by modality and item preparation."""

    joint: bool
    modalities: frozenset[str]

    def space_of(self, modality: str) -> str:
        """``joint`` for every modality of a joint embedder; else ``image`` (images, videos, frames) or ``text``."""
        family = "text" if modality == "text" else "image"
        if family not in self.modalities:
            raise ModalityError(f"this embedder has no {family} tower")
        return "joint" if self.joint else family

    def prepare(self, item: Item, *, split: bool = False) -> list[Item]:
        """The item itself; with ``split``, a video becomes its sampled frames."""
        if split and isinstance(item, VideoItem):
            return frames_of(item)
        return [item]


def pick_device(requested: str | None = None) -> str:
    """``requested`` if given, else cuda, then mps, then cpu."""
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


CPU_IMAGE_BATCH = 4
"""Images per forward pass on a CPU. Large batches overflow the CPU's caches: on 2 cores MobileNetV2 ran 50
images/s in batches of 4 and 17.5 in batches of 64, ViT-B-32 15.0 and 12.6 (GPUs want large batches)."""


def image_batch(device: str, requested: int | None) -> int:
    """Images per forward pass: as requested, else small on a CPU and 64 on an accelerator."""
    if requested is not None:
        if requested <= 0:
            raise ValueError(f"batch size must be positive, got {requested}")
        return requested
    return CPU_IMAGE_BATCH if device == "cpu" else 64


MAX_ASPECT = 4.0
"""Longest over shortest side an image keeps before the image towers see it (see :func:`bounded_aspect`)."""


def bounded_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """``image``, its long side centre-cropped to ``max_aspect`` times the short one.

    The towers scale the short side to their input size and keep the centre, so this changes nothing they
    see, but an image one pixel wide and 40 million tall would otherwise be scaled to gigabytes first.
    """
    w, h = image.size
    short = max(1, min(w, h))
    if max(w, h) <= max_aspect * short:
        return image
    keep = int(max_aspect * short)
    if w > h:
        left = (w - keep) // 2
        return image.crop((left, 0, left + keep, h))
    top = (h - keep) // 2
    return image.crop((0, top, w, top + keep))


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as contiguous float32 (norms computed in float64)."""
    wide = np.asarray(x, dtype=np.float64)  # float32 squares can underflow or overflow
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    np.maximum(norms, 1e-300, out=norms)
    return np.ascontiguousarray(wide / norms, dtype=np.float32)


def batched(
    items: Sequence[Any],
    batch_size: int,
    fn: Callable[[Sequence[Any]], np.ndarray],
    dim: int,
    progress: Progress | None,
) -> np.ndarray:
    """``fn`` over chunks of ``batch_size`` items, results concatenated and normalised."""
    if len(items) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out.append(fn(chunk))
        if progress is not None:
            progress(len(chunk))
    return normalise(np.concatenate(out, axis=0))


def file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first and last MiB: cheap, and changes when the weights do."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (1 << 21):
            fh.seek(-(1 << 20), 2)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
