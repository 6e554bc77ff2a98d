"""Decoded inputs to vectors: one model call per modality for a whole batch, the cache consulted first.

Adding, predicting and the HTTP micro-batcher all embed through :func:`embed_items`. Each input is
first prepared by the embedder (a photo may become its faces, a video its frames); an input that
cannot be embedded becomes a :class:`~vecclf.inputs.Failure` of its own and never sinks the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError, VecclfError
from ..inputs import Failure, ImageItem, Item, TextItem, VideoItem
from .base import Embedder, Progress

Cache = Callable[[str, Sequence[str]], Mapping[str, np.ndarray]]
"""``cache(space, content hashes) -> {hash: vector}`` for vectors computed before."""


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """A video's vector: the L2-normalised mean of its frame vectors."""
    pooled = frames.mean(axis=0)
    return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Embedded:
    """One prepared item and its vector (a video's is pooled; ``frames`` holds its frame vectors)."""

    item: Item
    space: str
    vector: np.ndarray
    frames: np.ndarray | None = None


@dataclass
class Embedding:
    """What :func:`embed_items` made: per input, its embedded items or why it failed; cache use."""

    per_input: list[list[Embedded] | Failure]
    computed: int = 0
    cached: int = 0
    failures: list[Failure] = field(init=False)

    def __post_init__(self) -> None:
        self.failures = [r for r in self.per_input if isinstance(r, Failure)]

    @property
    def embedded(self) -> list[Embedded]:
        """Every embedded item, in input order."""
        return [e for r in self.per_input if not isinstance(r, Failure) for e in r]


Key = tuple[str, str]  # (space, content hash)


def _jobs(embedder: Embedder, item: Item) -> list[tuple[Key, Any]]:
    if isinstance(item, TextItem):
        return [((embedder.space_of("text"), item.content_hash), item.text)]
    if isinstance(item, ImageItem):
        return [((embedder.space_of("image"), item.content_hash), item.image)]
    space = embedder.space_of("frame")
    return [((space, h), f) for h, f in zip(item.frame_hashes, item.frames)]


def _failure(source: str, exc: Exception) -> Failure:
    if isinstance(exc, VecclfError):
        return Failure(source, str(exc), exc)
    return Failure(source, f"cannot embed this input ({type(exc).__name__}: {exc})", exc)


def _run(
    fn: Callable[[Sequence[Any], Progress | None], np.ndarray],
    keys: list[Key],
    payloads: list[Any],
    progress: Progress | None,
) -> tuple[dict[Key, np.ndarray], dict[Key, Exception]]:
    """``fn`` over every payload in one call; when that call fails, halves are retried so that only the
    payloads that fail alone are lost (a model-level error such as missing weights still raises)."""
    done = 0

    def count(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(n)

    try:
        out = fn(payloads, count)
        return dict(zip(keys, out)), {}
    except VecclfError as exc:
        if not isinstance(exc, InvalidInputError):
            raise
        error: Exception = exc
    except Exception as exc:  # one odd input (or a batch too large for the device): isolate it
        error = exc
    if len(payloads) == 1:
        return {}, {keys[0]: error}
    mid = len(payloads) // 2
    vectors, failed = _run(fn, keys[:mid], payloads[:mid], None)
    more, more_failed = _run(fn, keys[mid:], payloads[mid:], None)
    vectors.update(more)
    failed.update(more_failed)
    if progress is not None and len(payloads) > done:
        progress(len(payloads) - done)
    return vectors, failed


def embed_items(
    embedder: Embedder,
    items: Sequence[Item],
    *,
    split: bool = False,
    cache: Cache | None = None,
    progress: Progress | None = None,
) -> Embedding:
    """Embed decoded items: every text in one model call, every image and video frame in another.

    ``split``: one result per subject of an input (every face of a photo, every frame of a video) instead
    of one per input. ``cache``: vectors computed before are reused, not embedded again.
    """
    prepared: list[list[Item] | Failure] = []
    jobs: dict[Key, Any] = {}
    for item in items:
        try:
            parts = embedder.prepare(item, split=split)
            for part in parts:
                jobs.update(_jobs(embedder, part))
            prepared.append(parts)
        except InvalidInputError as exc:
            prepared.append(Failure(item.source, str(exc), exc))
    vectors: dict[Key, np.ndarray] = {}
    if cache is not None:
        for space in sorted({s for s, _ in jobs}):
            found = cache(space, [h for s, h in jobs if s == space])
            vectors.update({(space, h): v for h, v in found.items()})
    todo = [key for key in jobs if key not in vectors]
    failed: dict[Key, Exception] = {}
    for is_text, fn in ((True, embedder.embed_texts), (False, embedder.embed_images)):
        keys = [key for key in todo if isinstance(jobs[key], str) == is_text]
        if keys:
            got, errors = _run(fn, keys, [jobs[k] for k in keys], progress)
            vectors.update(got)
            failed.update(errors)
    per_input: list[list[Embedded] | Failure] = []
    for item, prep in zip(items, prepared):
        if isinstance(prep, Failure):
            per_input.append(prep)
            continue
        lost = [failed[key] for part in prep for key, _ in _jobs(embedder, part) if key in failed]
        if lost:
            per_input.append(_failure(item.source, lost[0]))
            continue
        out = []
        for part in prep:
            part_keys = [key for key, _ in _jobs(embedder, part)]
            if isinstance(part, VideoItem):
                frames = np.stack([vectors[k] for k in part_keys])
                out.append(Embedded(part, embedder.space_of("video"), pool_frames(frames), frames))
            else:
                out.append(Embedded(part, part_keys[0][0], vectors[part_keys[0]]))
        per_input.append(out)
    return Embedding(per_input, computed=len(todo) - len(failed), cached=len(jobs) - len(todo))
