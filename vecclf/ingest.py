"""Adding to a store: decoded items are embedded in batches (cache first) and written with their labels.

Files decode in a background thread while the model embeds the previous batch; an input that cannot
be read or embedded is a failure of its own, and the rest are stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Limits
from .embed import Embedded, Embedder, Progress, embed_items
from .errors import InvalidInputError
from .inputs import (
    Failure,
    ImageItem,
    Item,
    TextItem,
    VideoItem,
    concept_folders,
    decode_ahead,
    decode_paths,
    decode_texts,
    read_text_table,
    shown,
    thumbnail_jpeg,
)
from .labels import check_concept_name
from .store import NewInput, Store

BATCH = 64  # inputs embedded and written together


def _concept(name: str, what: str) -> tuple[str, Failure | None]:
    """A concept name checked, or the failure its inputs get instead."""
    try:
        return check_concept_name(name), None
    except InvalidInputError as exc:
        return name, Failure(what, f"{what} cannot name a concept: {exc}", exc)


@dataclass
class AddReport:
    """What an add/import did: new inputs, duplicates of stored ones (their labels merged), failures by source,
    and embedding-cache use."""

    added: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    embedded: int = 0
    cached: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """Ids of the new top-level inputs (videos, images, texts; not frames)."""
        return [a["id"] for a in self.added]

    def merge(self, other: AddReport) -> None:
        """Fold another report into this one."""
        self.added += other.added
        self.duplicates += other.duplicates
        self.failures += other.failures
        self.embedded += other.embedded
        self.cached += other.cached

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "failures": [{"source": f.source, "reason": f.reason} for f in self.failures],
            "embedded": self.embedded,
            "cached": self.cached,
        }


def rows(embedded: Embedded, concepts: tuple[str, ...], negatives: tuple[str, ...], at: int) -> list[NewInput]:
    """The store rows of one embedded input: itself, and a video's frames after it (``at``: the position
    the input's row will have in its batch, which frames point at)."""
    it, space = embedded.item, embedded.space
    labelled: dict[str, Any] = {"source": it.source, "concepts": concepts, "negatives": negatives}
    if isinstance(it, TextItem):
        return [NewInput("text", space, it.content_hash, embedded.vector, text=it.text, **labelled)]
    if isinstance(it, ImageItem):
        return [
            NewInput("image", space, it.content_hash, embedded.vector, thumbnail=thumbnail_jpeg(it.image), **labelled)
        ]
    assert isinstance(it, VideoItem) and embedded.frames is not None
    video = NewInput(
        "video",
        space,
        it.content_hash,
        embedded.vector,
        metadata={"frames": len(it.frames)},
        thumbnail=thumbnail_jpeg(it.frames[0]),
        **labelled,
    )
    return [video] + [
        NewInput("frame", space, h, v, source=it.source, parent=at, frame_index=n, timestamp_s=t)
        for n, (h, v, t) in enumerate(zip(it.frame_hashes, embedded.frames, it.timestamps))
    ]


class Ingest:
    """Writes decoded inputs into ``store`` through ``embedder``."""

    def __init__(self, store: Store, embedder: Embedder, limits: Limits) -> None:
        self.store = store
        self.embedder = embedder
        self.limits = limits

    @property
    def draft(self) -> int | None:
        """The image side the embedder resizes to, so large JPEGs can decode at a reduced scale."""
        size = getattr(self.embedder, "input_size", None)
        return int(size) if size else None

    def add(
        self,
        items: Iterable[Item | Failure],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        progress: Progress | None = None,
        *,
        keep_duplicates: bool = False,
    ) -> AddReport:
        """Embed and store ``items`` labelled with ``concepts`` (and ``negatives``), :data:`BATCH` at a time.

        An input already stored (same content or same vector) is reported in ``duplicates`` and only gains
        the labels, unless ``keep_duplicates``.
        """
        pos = tuple(check_concept_name(c) for c in concepts)
        neg = tuple(check_concept_name(c) for c in negatives)
        if set(pos) & set(neg):
            raise InvalidInputError(f"concept(s) {sorted(set(pos) & set(neg))} given as both positive and negative")
        report = AddReport()
        batch: list[Item] = []

        def commit() -> None:
            if not batch:
                return
            done = embed_items(self.embedder, batch, cache=self.store.cached_vectors, progress=progress)
            report.embedded += done.computed
            report.cached += done.cached
            report.failures += done.failures
            new: list[NewInput] = []
            for embedded in done.embedded:
                new += rows(embedded, pos, neg, at=len(new))
            written = self.store.write(new, keep_duplicates=keep_duplicates)
            for n, (row, new_id) in enumerate(zip(new, written.ids)):
                if n in written.duplicates:
                    report.duplicates.append({"id": new_id, "kind": row.kind, "source": row.source})
                elif row.kind != "frame":
                    report.added.append({"id": new_id, "kind": row.kind, "source": row.source})
            batch.clear()

        for it in decode_ahead(items):
            if isinstance(it, Failure):
                report.failures.append(it)
                continue
            batch.append(it)
            if len(batch) >= BATCH:
                commit()
        commit()
        return report

    def import_path(
        self,
        path: str | Path,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        limit_per_concept: int | None = None,
        progress: Progress | None = None,
        keep_duplicates: bool = False,
    ) -> AddReport:
        """A folder (one subfolder per concept) or a CSV/JSONL text table with a label column."""
        p = Path(path)
        report = AddReport()
        if limit_per_concept is not None and limit_per_concept <= 0:
            raise InvalidInputError("limit per concept must be positive")
        if p.is_dir():
            for folder, found in concept_folders(p):
                files = [f for f in found if isinstance(f, Path)]
                skipped = [f for f in found if isinstance(f, Failure)]
                concept, bad = _concept(folder, f"folder {shown(p / folder)!r}")
                if bad is not None:  # every file of a folder that cannot name a concept is reported, none stored
                    report.failures += skipped + [Failure(shown(f), bad.reason, bad.error) for f in files]
                    continue
                picked = files[:limit_per_concept] if limit_per_concept else files
                lazy = itertools.chain(skipped, decode_paths(picked, limits=self.limits, draft=self.draft))
                report.merge(self.add(lazy, [concept], (), progress, keep_duplicates=keep_duplicates))  # decoded lazily
            return report
        table = read_text_table(p, text_column=text_column, label_column=label_column, limits=self.limits)
        groups: dict[str | None, list[tuple[int, str]]] = {}
        for n, text, label in table:
            groups.setdefault(label, []).append((n, text))
        name = shown(p)
        for label in sorted(groups, key=lambda x: (x is None, x or "")):
            chosen = groups[label][:limit_per_concept] if limit_per_concept else groups[label]
            concepts: list[str] = []
            if label is not None:
                concept, bad = _concept(label, "label")
                if bad is not None:  # every row with a label that cannot name a concept is reported, none stored
                    report.failures += [Failure(f"{name}:{n}", bad.reason, bad.error) for n, _ in chosen]
                    continue
                concepts = [concept]
            items = decode_texts(((f"{name}:{n}", text) for n, text in chosen), limits=self.limits)
            report.merge(self.add(items, concepts, (), progress, keep_duplicates=keep_duplicates))
        return report
