"""Adding to a store: decoded items are embedded in batches (cache first) and written with their labels.

Files decode in a background thread while the model embeds the previous batch; an input that cannot
be read or embedded is a failure of its own, and the rest are stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Limits
from .embed import Embedded, Embedder, Progress, embed_items
from .errors import InvalidInputError, StoreError
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
from .store import NewInput, Store, Written

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
    embedding-cache use, and the store error that stopped it part way, if one did (what is listed was stored)."""

    added: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    embedded: int = 0
    cached: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

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
        self.error = self.error or other.error

    def stored(self, rows: Sequence[NewInput], written: Written) -> None:
        """Record what a store write of ``rows`` did: new top-level inputs, and duplicates of stored ones."""
        for n, (row, new_id) in enumerate(zip(rows, written.ids)):
            if n in written.duplicates:
                self.duplicates.append({"id": new_id, "kind": row.kind, "source": row.source})
            elif row.kind != "frame":
                self.added.append({"id": new_id, "kind": row.kind, "source": row.source})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "failures": [{"source": f.source, "reason": f.reason} for f in self.failures],
            "embedded": self.embedded,
            "cached": self.cached,
        } | ({"error": self.error} if self.error else {})


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


Labelled = tuple[Item | Failure, tuple[str, ...], tuple[str, ...]]
"""An input (or why it could not be read) with its positive and negative concepts."""


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
        the labels, unless ``keep_duplicates``. ``progress`` is told of each input done (stored or failed).
        """
        pos = tuple(check_concept_name(c) for c in concepts)
        neg = tuple(check_concept_name(c) for c in negatives)
        if set(pos) & set(neg):
            raise InvalidInputError(f"concept(s) {sorted(set(pos) & set(neg))} given as both positive and negative")
        return self.add_labelled(((it, pos, neg) for it in items), progress, keep_duplicates=keep_duplicates)

    def add_labelled(
        self, labelled: Iterable[Labelled], progress: Progress | None = None, *, keep_duplicates: bool = False
    ) -> AddReport:
        """Embed and store inputs that each carry their own (checked) concepts, :data:`BATCH` at a time
        whatever their labels. A store error part way (e.g. the disk is full) stops the work: the report
        keeps what was stored before it and names the error in ``error`` (an error before anything was
        stored raises)."""
        report = AddReport()
        batch: list[tuple[Item, tuple[str, ...], tuple[str, ...]]] = []

        def commit() -> None:
            if not batch:
                return
            items = [it for it, _, _ in batch]
            done = embed_items(self.embedder, items, cache=self.store.cached_vectors)
            report.embedded += done.computed
            report.cached += done.cached
            new: list[NewInput] = []
            for (_, pos, neg), result in zip(batch, done.per_input):
                if isinstance(result, Failure):
                    report.failures.append(result)
                    continue
                for embedded in result:
                    new += rows(embedded, pos, neg, at=len(new))
            report.stored(new, self.store.write(new, keep_duplicates=keep_duplicates))
            if progress is not None:
                progress(len(batch))
            batch.clear()

        try:
            for it, pos, neg in decode_ahead(labelled):
                if isinstance(it, Failure):
                    report.failures.append(it)
                    if progress is not None:
                        progress(1)
                    continue
                batch.append((it, pos, neg))
                if len(batch) >= BATCH:
                    commit()
            commit()
        except StoreError as exc:  # what was committed before stays committed, and the report says so
            if not (report.added or report.duplicates):
                raise
            report.error = str(exc)
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
        """A folder (one subfolder per concept) or a CSV/JSONL text table with a label column, written in
        batches of :data:`BATCH` across concepts. Every label is checked before the first write: the inputs of
        one that cannot name a concept are failures, the rest are stored."""
        if limit_per_concept is not None and limit_per_concept <= 0:
            raise InvalidInputError("limit per concept must be positive")
        return self.add_labelled(self.plan(path, text_column, label_column, limit_per_concept), progress,
                                 keep_duplicates=keep_duplicates)  # fmt: skip

    def plan(
        self,
        path: str | Path,
        text_column: str | None = None,
        label_column: str | None = None,
        limit_per_concept: int | None = None,
    ) -> Iterator[Labelled]:
        """The labelled inputs of a folder per concept or a table (decoded lazily; tables read and checked whole
        first, so their errors come before anything is stored)."""
        p = Path(path)
        if p.is_dir():
            return self._plan_folders(p, limit_per_concept)
        table = read_text_table(p, text_column=text_column, label_column=label_column, limits=self.limits)
        return self._plan_table(p, table, limit_per_concept)

    def _plan_folders(self, root: Path, limit: int | None) -> Iterator[Labelled]:
        for folder, found in concept_folders(root):
            files = [f for f in found if isinstance(f, Path)]
            for f in found:
                if isinstance(f, Failure):
                    yield f, (), ()
            concept, bad = _concept(folder, f"folder {shown(root / folder)!r}")
            if bad is not None:  # every file of a folder that cannot name a concept is reported, none stored
                for f in files:
                    yield Failure(shown(f), bad.reason, bad.error), (), ()
                continue
            for it in decode_paths(files[:limit] if limit else files, limits=self.limits, draft=self.draft):
                yield it, (concept,), ()

    def _plan_table(
        self, path: Path, table: list[tuple[int, str, str | None]], limit: int | None
    ) -> Iterator[Labelled]:
        name = shown(path)
        taken: dict[str | None, int] = {}
        checked: dict[str, tuple[str, Failure | None]] = {}
        for n, text, label in table:
            taken[label] = taken.get(label, 0) + 1
            if limit is not None and taken[label] > limit:
                continue
            concepts: tuple[str, ...] = ()
            if label is not None:
                if label not in checked:
                    checked[label] = _concept(label, "label")
                concept, bad = checked[label]
                if bad is not None:  # every row with a label that cannot name a concept is reported, none stored
                    yield Failure(f"{name}:{n}", bad.reason, bad.error), (), ()
                    continue
                concepts = (concept,)
            yield next(decode_texts([(f"{name}:{n}", text)], limits=self.limits)), concepts, ()
