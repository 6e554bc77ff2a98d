"""The store facade: a DuckDB catalogue (the truth, vectors included) and FAISS indexes derived from it.

:class:`Store` owns the locks and the order of every write: the DuckDB transaction first (which bumps
the space's generation), then the in-memory FAISS index. Index files are saved on :meth:`Store.flush`
/ ``close`` with their generation and checksum, so a stale, torn or missing file is rebuilt from
DuckDB on the next open instead of answering wrongly. Beside the index it keeps what a prediction
needs in memory (label views, input records), which is safe because one process is the only writer.

The module is past 400 lines because it lists every operation a store offers; each one is a lock, calls
into the catalogue, the indexes and the memory, and the bookkeeping between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import (
    ConflictError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
    ReadOnlyError,
    StoreCorruptError,
    StoreError,
    StoreNotFoundError,
)
from ..labels import LabelView, check_concept_name, check_ids
from . import index as kinds
from . import schema
from .catalogue import Catalogue
from .locks import RWLock, holder, take_file_lock, unlock
from .memory import Memory
from .records import ConceptInfo, InputRecord, Marks, NewInput, SpaceState
from .vectors import SpaceIndex, VectorReader

DB_FILE = "store.duckdb"


INPUT_KINDS = ("image", "text", "video")
"""Kinds of top-level inputs (a video's sampled frames are stored as ``frame`` rows under it)."""
SAME_VECTOR = 1 - 1e-6
"""Cosine similarity from which two vectors are the same example (a duplicate)."""


VECTOR_CHECK_ROWS = 1024
"""Writes of up to this many new top-level inputs are searched for stored twins by vector."""


@dataclass(frozen=True)
class Written:
    """What :meth:`Store.write` did: each item's id (a duplicate's is the stored input it duplicates; a frame of
    a duplicate video, -1) and which items were duplicates (position -> stored id)."""

    ids: list[int]
    duplicates: dict[int, int]


def _reparented(item: NewInput, at: dict[int, int]) -> NewInput:
    """``item`` with its parent renumbered to the parent's position among the inputs actually written."""
    if item.parent is None or at.get(item.parent) == item.parent:
        return item
    return dataclasses.replace(item, parent=at[item.parent])


def _identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """A vecclf store directory. Open with :meth:`create` or :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, catalogue: Catalogue, lock: RWLock, *, read_only: bool, lock_fd: int | None) -> None:
        self.path = path
        self.read_only = read_only
        self._db = catalogue
        self._lock = lock
        self._lock_fd = lock_fd
        self._load_lock = threading.Lock()
        self._indexes: dict[str, SpaceIndex] = {}
        self._dirty: set[str] = set()
        self._memory = Memory()
        self._closed = False
        with catalogue.errors():
            meta = catalogue.meta()
        self.spec: dict[str, Any] = json.loads(meta["embedder_spec"])
        self.identity: dict[str, Any] = json.loads(meta["embedder_identity"])
        self.spaces: dict[str, int] = json.loads(meta["spaces"])
        self.schema_version = int(meta["schema_version"])
        self.index_kind: str = meta.get("index_kind", "auto")  # stores made before the choice existed: auto
        self._model_key = _identity_key(self.identity)
        self._user_thresholds: dict[str, float] | None = None

    # ----------------------------------------------------------------- open/close
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        spec: dict[str, Any],
        identity: dict[str, Any],
        spaces: dict[str, int],
        index: str = "auto",
    ) -> Store:
        """Create a new store at ``path`` (an empty or missing directory) for one embedder.

        ``index`` chooses the FAISS index kind (see :mod:`vecclf.store.index`); the vectors in DuckDB stay exact.
        """
        root = Path(path)
        kinds.check_kind(index)
        if (root / DB_FILE).exists():
            raise ConflictError(f"a store already exists at {root}")
        root.mkdir(parents=True, exist_ok=True)
        fd = take_file_lock(root)
        try:
            con = Catalogue.connect(root / DB_FILE, read_only=False, holder=lambda: holder(root))
            Catalogue.initialise(con, spec=spec, identity=identity, spaces=spaces, index=index)
        except BaseException:
            unlock(fd)
            raise
        lock = RWLock()
        return cls(root, Catalogue(root / DB_FILE, con, writing=lock.held_for_write), lock, read_only=False, lock_fd=fd)

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Store:
        """Open an existing store; read-write opens take the single-writer lock."""
        root = Path(path)
        db = root / DB_FILE
        if not db.is_file():
            raise StoreNotFoundError(f"no vecclf store at {root} (create one with `vecclf init`)")
        fd = take_file_lock(root, shared=read_only)
        try:
            con = Catalogue.connect(db, read_only=read_only, holder=lambda: holder(root))
            lock = RWLock()
            try:
                store = cls(
                    root, Catalogue(db, con, writing=lock.held_for_write), lock, read_only=read_only, lock_fd=fd
                )
            except (StoreError, KeyError, ValueError) as exc:
                con.close()
                raise StoreCorruptError(f"{db} is not a readable vecclf store: {exc}") from exc
        except BaseException:
            unlock(fd, root if read_only else None)
            raise
        if store.schema_version > schema.SCHEMA_VERSION:
            store.close()
            raise StoreError(
                f"{db} has schema version {store.schema_version}; this vecclf reads up to {schema.SCHEMA_VERSION}"
            )
        if store.schema_version < schema.SCHEMA_VERSION:
            if read_only:
                store.close()
                raise StoreError(f"{db} has schema version {store.schema_version}; open it read-write once to migrate")
            with store._mutating():
                store._db.migrate(store.schema_version)
            store.schema_version = schema.SCHEMA_VERSION
        return store

    def flush(self) -> None:
        """Save every changed FAISS index atomically and record its generation and checksum."""
        with self._write():
            if self.read_only:
                return
            for space in sorted(self._dirty):
                held = self._indexes[space]
                if held.outgrown(self.index_kind):
                    held = self._indexes[space] = self._build(space)
                record = held.save(self._index_path(space))
                self._db.set_meta(f"faiss:{space}", json.dumps({"generation": self._db.generation(space), **record}))
            self._dirty.clear()

    def close(self) -> None:
        """Flush and release the database and the writer lock. Safe to call twice."""
        with self._write():
            if self._closed:
                return
            try:
                self.flush()
            finally:
                self._closed = True
                self._db.close()
                unlock(self._lock_fd, self.path if self.read_only else None)
                self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self) -> None:
        """Drop what is kept in memory (label views, input records, generations); the next reads go to disk."""
        with self._write():
            self._memory.forget()
            self._db.forget()
            self._user_thresholds = None

    # ----------------------------------------------------------------- locking
    def reading(self) -> AbstractContextManager[None]:
        """Hold a consistent view across several reads (writers wait until the block ends)."""
        return self._read()

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock.read(), self._db.errors():
            if self._closed:
                raise StoreError("store is closed")
            yield

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock.write(), self._db.errors():
            yield

    @contextmanager
    def _mutating(self, *, keeps_thresholds: bool = False) -> Iterator[None]:
        """Exclusive access for a change, refused at once on a read-only store (``keeps_thresholds``: the change
        cannot set, rename or delete a user's threshold, so the ones read stay valid)."""
        with self._write():
            if self.read_only:
                raise ReadOnlyError(f"store {self.path} is open read-only")
            if self._closed:
                raise StoreError("store is closed")
            try:
                yield
            finally:
                if not keeps_thresholds:
                    self._user_thresholds = None

    # ----------------------------------------------------------------- indexes
    def _index_path(self, space: str) -> Path:
        return self.path / f"faiss-{space}.index"

    def _check_space(self, space: str) -> int:
        if space not in self.spaces:
            raise InvalidInputError(f"space {space!r} not in this store (has {sorted(self.spaces)})")
        return self.spaces[space]

    def _reader(self, space: str) -> VectorReader:
        dim = self.spaces[space]

        def read(ids: Sequence[int] | None = None, after: int = 0) -> tuple[np.ndarray, np.ndarray]:
            return self._db.vectors(space, dim, ids, after=after)

        return read

    def _index(self, space: str) -> SpaceIndex:
        """The space's index: loaded if its file matches DuckDB, else rebuilt from DuckDB."""
        held = self._indexes.get(space)
        if held is not None:
            return held
        with self._load_lock:  # readers may race to load: one loads, the others reuse it
            held = self._indexes.get(space)
            if held is None:
                dim = self._check_space(space)
                raw = self._db.meta_value(f"faiss:{space}")
                record = json.loads(raw) if raw else {}
                if record.get("generation") == self._db.generation(space):
                    count = self._db.vector_count(space)
                    held = SpaceIndex.load(
                        self._index_path(space), record, count=count, dim=dim, read=self._reader(space)
                    )
                if held is None:
                    held = self._build(space)
                self._indexes[space] = held
            return held

    def _build(self, space: str) -> SpaceIndex:
        self._dirty.add(space)
        return SpaceIndex.build(self.index_kind, self.spaces[space], self._reader(space))

    # ----------------------------------------------------------------- writes
    def add(self, items: Sequence[NewInput], *, keep_duplicates: bool = False) -> list[int]:
        """Add inputs with their vectors and labels in one transaction; returns each item's id (a duplicate's
        is the stored input it duplicates; see :meth:`write`)."""
        return self.write(items, keep_duplicates=keep_duplicates).ids

    def write(self, items: Sequence[NewInput], *, keep_duplicates: bool = False) -> Written:
        """Add inputs with their vectors and labels in one transaction.

        An input that duplicates a stored one (the same content hash, or the same vector, in the same space),
        or an earlier one of the batch, is not stored again unless ``keep_duplicates``: its labels are merged
        into the stored input's. A video's frames go with it.
        """
        if not items:
            return Written([], {})
        with self._mutating(keeps_thresholds=True):  # concepts it creates have none
            marks_of = [self._checked(it, len(items)) for it in items]
            for space in {it.space for it in items}:
                self._index(space)  # load before writing so the in-memory index stays in step
            twins = {} if keep_duplicates else self._duplicates(items)
            for i, j in twins.items():
                if j < 0:  # a repeat within the batch: its labels go to the first occurrence
                    marks_of[-j - 1] = {**marks_of[-j - 1], **marks_of[i]}
            fresh = [
                i for i, it in enumerate(items) if i not in twins and (it.parent is None or it.parent not in twins)
            ]
            merged = self._merged_labels(
                {j: marks_of[i] for i, j in twins.items() if j >= 0}
            )  # labels that duplicates bring to stored inputs
            at = {i: n for n, i in enumerate(fresh)}
            new = [_reparented(items[i], at) for i in fresh]
            new_marks = [marks_of[i] for i in fresh]
            ids: list[int] = []
            with self._db.transaction():
                staged: list[tuple[str, list[int], np.ndarray, np.ndarray]] = []
                before: dict[str, int] = {}
                earlier = False
                if new:
                    ids, staged, before, earlier = self._insert(new, new_marks)
                if merged:
                    for name, by_positive in merged.items():
                        cid = self._db.concept_ids([name], create=True)[name]
                        for positive, targets in by_positive.items():
                            self._db.set_labels(sorted(targets), cid, positive)
                    self._db.bump({s for s in self._db.spaces_of(sorted(self._targets(merged))).values()})
            for space, idx, space_ids, vecs in staged:
                self._indexes[space].add(space_ids, vecs)
                self._dirty.add(space)
                self._memory.hashes_added(space, [new[i].content_hash for i in idx])
                after = self._db.generation(space)
                self._memory.added(space, before[space], after, new, idx, ids, new_marks, relabels_older=earlier)
            if merged:
                self._memory.relabelled()
            else:
                self._memory.remember_added(new, ids, new_marks)
            out = [0] * len(items)
            for n, i in enumerate(fresh):
                out[i] = ids[n]
            for i, j in twins.items():  # stored twins first: a repeat within the batch may point at one
                if j >= 0:
                    out[i] = j
            resolved = {i: (j if j >= 0 else out[-j - 1]) for i, j in twins.items()}
            for i, it in enumerate(items):
                if i in resolved:
                    out[i] = resolved[i]
                elif it.parent is not None and it.parent in resolved:
                    out[i] = -1  # a frame of a duplicate video: not stored
            return Written(out, {i: resolved[i] for i in sorted(resolved)})

    def _insert(
        self, items: Sequence[NewInput], marks_of: Sequence[Marks]
    ) -> tuple[list[int], list[tuple[str, list[int], np.ndarray, np.ndarray]], dict[str, int], bool]:
        """Rows, labels and vectors into the catalogue (inside the caller's transaction)."""
        by_space: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            by_space.setdefault(it.space, []).append(i)
        known = self._memory.classes(by_space)
        ids, created = self._db.insert(items, marks_of)
        # concepts that become classes here but already had (negative) labels: views are rebuilt
        positives = {n for marks in marks_of for n, pos in marks.items() if pos}
        old = [self._db.concepts_by_name()[n] for n in positives - known - created]
        earlier = bool(old) and self._db.labels_before(old, min(ids))
        staged = []
        for space, idx in by_space.items():
            vecs = np.stack([np.asarray(items[i].vector, dtype=np.float32) for i in idx])
            space_ids = np.array([ids[i] for i in idx], dtype=np.int64)
            self._db.insert_vectors(space, space_ids, vecs)
            staged.append((space, idx, space_ids, vecs))
        before = {space: self._db.generation(space) for space in by_space}
        self._db.bump(by_space)
        return ids, staged, before, earlier

    def _duplicates(self, items: Sequence[NewInput]) -> dict[int, int]:
        """Top-level items that duplicate a stored input (-> its id) or an earlier item of the batch
        (-> ``-1 - its position``): the same space and content hash, or the same vector (searched in the index
        for writes of up to :data:`VECTOR_CHECK_ROWS` inputs, as every add of files is; a bulk write of more
        precomputed vectors is checked by content hash and within itself, since searching each of its vectors
        would make loading N vectors cost N² multiply-adds)."""
        out: dict[int, int] = {}
        first: dict[tuple[str, str], int] = {}
        first_vector: dict[tuple[str, bytes], int] = {}
        tops = [i for i, it in enumerate(items) if it.parent is None and it.kind != "frame"]
        for i in tops:
            it = items[i]
            vec = np.asarray(it.vector, dtype=np.float32).tobytes()
            j = first.get((it.space, it.content_hash), first_vector.get((it.space, vec)))
            if j is not None:
                out[i] = -1 - j
            else:
                first[(it.space, it.content_hash)] = first_vector[(it.space, vec)] = i
        by_space: dict[str, list[int]] = {}
        for i in tops:
            if i not in out:
                by_space.setdefault(items[i].space, []).append(i)
        for space, idx in by_space.items():
            hashes = [items[i].content_hash for i in idx]
            kept = self._memory.hash_filter(space)
            asked = kept.may_hold(hashes) if kept is not None else hashes
            stored = self._db.top_level_by_hash(space, asked) if asked else {}
            out.update({i: stored[items[i].content_hash] for i in idx if items[i].content_hash in stored})
            rest = [i for i in idx if i not in out]
            held = self._indexes[space]
            if not rest or held.ntotal == 0 or len(rest) > VECTOR_CHECK_ROWS:
                continue
            sims, found = held.nearest_copies(np.stack([np.asarray(items[i].vector, np.float32) for i in rest]))
            hits = {int(f) for f, s in zip(found[:, 0], sims[:, 0]) if f >= 0 and s >= SAME_VECTOR}
            tops_found = self._db.top_level(sorted(hits)) if hits else set()
            for i, f, sim in zip(rest, found[:, 0], sims[:, 0]):
                if sim >= SAME_VECTOR and int(f) in tops_found:
                    out[i] = int(f)
        return out

    def _merged_labels(self, wanted: dict[int, Marks]) -> dict[str, dict[bool, set[int]]]:
        """Of the labels duplicates bring (stored id -> labels), those the stored inputs do not have yet:
        concept -> positive -> stored ids."""
        merged_per_id: dict[int, Marks] = {}
        for target, marks in wanted.items():
            merged_per_id.setdefault(target, {}).update(marks)
        have = self._db.labels_of(sorted(merged_per_id)) if merged_per_id else {}
        out: dict[str, dict[bool, set[int]]] = {}
        for target, marks in merged_per_id.items():
            for name, positive in marks.items():
                if have.get(target, {}).get(name) != positive:
                    out.setdefault(name, {}).setdefault(positive, set()).add(target)
        return out

    @staticmethod
    def _targets(merged: dict[str, dict[bool, set[int]]]) -> set[int]:
        return {t for by_positive in merged.values() for targets in by_positive.values() for t in targets}

    def _checked(self, it: NewInput, n_items: int) -> Marks:
        """Validate one new input; returns its labels with normalised names."""
        dim = self._check_space(it.space)
        vec = np.asarray(it.vector)
        if vec.shape != (dim,):
            raise ModelMismatchError(f"vector of shape {vec.shape} does not fit space {it.space!r} of dim {dim}")
        if not np.isfinite(vec).all():
            raise InvalidInputError("vector contains NaN or Inf")
        if it.parent is not None and not (0 <= it.parent < n_items):
            raise InvalidInputError("frame parent index out of range")
        positives = {check_concept_name(n) for n in it.concepts}
        negatives = {check_concept_name(n) for n in it.negatives}
        if positives & negatives:
            raise InvalidInputError(f"concept(s) {sorted(positives & negatives)} given as both positive and negative")
        return {**dict.fromkeys(sorted(negatives), False), **dict.fromkeys(sorted(positives), True)}

    def delete(self, ids: Sequence[int]) -> list[int]:
        """Delete inputs (a video takes its frames with it). All ids must exist; returns every id removed."""
        wanted = sorted(set(check_ids(ids)))
        if not wanted:
            return []
        with self._mutating():
            present, rows = self._db.with_frames(wanted)
            missing = [i for i in wanted if i not in present]
            if missing:
                raise NotFoundError(f"no input with id {', '.join(map(str, missing))}")
            by_space: dict[str, list[int]] = {}
            for i, space in rows:
                by_space.setdefault(space, []).append(i)
            for space in by_space:
                self._index(space)
            all_ids = [i for i, _ in rows]
            with self._db.transaction():
                self._db.delete(all_ids, by_space, self._model_key)
                self._db.bump(by_space)
            for space, space_ids in by_space.items():
                self._indexes[space].remove(np.array(space_ids, dtype=np.int64))
                self._dirty.add(space)
            self._memory.removed(by_space)
            return all_ids

    def label(self, ids: Sequence[int], concept: str, *, positive: bool = True) -> None:
        """Label existing inputs with a concept (created if new), replacing any earlier label for it."""
        name = check_concept_name(concept)
        ids = check_ids(ids)
        with self._mutating():
            spaces = self._db.spaces_of(ids)
            missing = sorted(set(ids) - spaces.keys())
            if missing:
                raise NotFoundError(f"no input with id {', '.join(map(str, missing))}")
            with self._db.transaction():
                cid = self._db.concept_ids([name], create=True)[name]
                self._db.set_labels(ids, cid, positive)
                self._db.bump(set(spaces.values()))
            self._memory.relabelled()

    def create_concepts(self, names: Sequence[str]) -> None:
        """Create concepts (no labels yet); existing names are left as they are."""
        clean = [check_concept_name(n) for n in names]
        with self._mutating():
            with self._db.transaction():
                self._db.concept_ids(clean, create=True)
                self._db.bump(self.spaces)

    def rename_concept(self, old: str, new: str) -> None:
        """Rename a concept; fails if ``new`` already exists."""
        old_n, new_n = check_concept_name(old), check_concept_name(new)
        with self._mutating():
            cid = self._db.concept_ids([old_n], create=False)[old_n]
            if old_n == new_n:
                return
            if new_n in self._db.concepts_by_name():
                raise ConflictError(f"concept {new_n!r} already exists")
            with self._db.transaction():
                self._db.rename_concept(cid, new_n)
                self._db.bump(self.spaces)
            self._memory.relabelled()

    def set_threshold(self, name: str, value: float | None) -> None:
        """Set a concept's open-set threshold (a similarity in [-1, 1]), or with None learn it from the examples."""
        clean = check_concept_name(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
                raise InvalidInputError(f"a threshold is a similarity between -1 and 1, got {value!r}")
            value = float(value)
        with self._mutating():
            cid = self._db.concept_ids([clean], create=False)[clean]
            with self._db.transaction():
                self._db.set_concept_threshold(cid, value)
                self._db.bump(self.spaces)

    def concept_thresholds(self) -> dict[str, float]:
        """The thresholds users set (concept -> similarity); other concepts' are learned."""
        with self._read():
            if self._user_thresholds is None:  # read on every prediction: kept until the next change
                self._user_thresholds = self._db.concept_thresholds()
            return dict(self._user_thresholds)

    def delete_concept(self, name: str, *, with_inputs: bool = False) -> dict[str, int]:
        """Remove a concept and its labels; its inputs stay, unless ``with_inputs`` (then the inputs labelled with
        it go too, videos with their frames). Returns ``labels_removed``, ``inputs_deleted`` and
        ``left_unlabelled`` (inputs that kept no label at all)."""
        clean = check_concept_name(name)
        with self._mutating():
            cid = self._db.concept_ids([clean], create=False)[clean]
            members: list[int] = []
            if with_inputs:
                members = [int(i) for s in self.spaces for i in self._db.member_ids(s, clean)]
                members = sorted(self._db.top_level(members)) if members else []
            left = 0 if with_inputs else self._db.unlabelled_after(cid)
            deleted = self.delete(members) if members else []
            with self._db.transaction():
                n = self._db.delete_concept(cid)
                self._db.bump(self.spaces)
            self._memory.relabelled()
            return {"labels_removed": n, "inputs_deleted": len(deleted), "left_unlabelled": left}

    def save_head(self, space: str, generation: int, meta: str, arrays: dict[str, np.ndarray]) -> None:
        """Persist a trained head for ``space`` (replacing the previous one)."""
        with self._mutating():
            self._check_space(space)
            self._db.save_head(space, generation, meta, arrays)

    def list_inputs(
        self,
        *,
        concept: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
        after: int = 0,
    ) -> tuple[list[InputRecord], int]:
        """Top-level inputs (videos, images, texts; not frames) in id order: those positively labelled with
        ``concept`` and of ``kind``, past id ``after`` (a cursor) and ``offset``; and how many match in all."""
        if kind is not None and kind not in INPUT_KINDS:
            raise InvalidInputError(f"kind must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")
        for value, what in ((limit, "limit"), (offset, "offset"), (after, "cursor")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(f"{what} must be a non-negative integer, got {value!r}")
        with self._read():
            cid = None
            if concept is not None:
                name = check_concept_name(concept)
                cid = self._db.concept_ids([name], create=False)[name]
            ids, total = self._db.list_inputs(concept_id=cid, kind=kind, limit=limit, offset=offset, after=after)
            return self.get(ids), total

    # ----------------------------------------------------------------- reads
    def concepts(self) -> list[ConceptInfo]:
        """All concepts with their positive and negative label counts, by name."""
        with self._read():
            return self._db.concept_counts()

    def get(self, ids: Sequence[int]) -> list[InputRecord]:
        """Stored inputs by id, in the order asked; unknown ids raise :class:`NotFoundError`."""
        ids = check_ids(ids)
        found = self.shared_records(ids)
        return [found[i].copy() for i in ids]  # callers may change the lists without changing what is remembered

    def shared_records(self, ids: Iterable[int]) -> dict[int, InputRecord]:
        """The records of ``ids`` (ints, as an index returns them) by id, *shared* with the store's memory: read
        them, never change their label lists (:meth:`get` hands out copies). Unknown ids raise
        :class:`NotFoundError`. The batch prediction path reads its neighbours' evidence here, without a copy."""
        wanted = set(ids)
        if not wanted:
            return {}
        with self._read():
            found = self._memory.records(wanted)
            if len(found) < len(wanted):
                fetched = self._db.records(sorted(wanted - found.keys()))
                self._memory.remember(fetched.values())
                found.update(fetched)
        if len(found) < len(wanted):
            raise NotFoundError(f"no input with id {', '.join(map(str, sorted(wanted - found.keys())))}")
        return found

    def vector(self, input_id: int) -> tuple[str, np.ndarray]:
        """``(space, vector)`` of one stored input, read back from the FAISS index."""
        with self._read():  # one view: the input cannot be deleted between the lookup and the read-back
            (rec,) = self.get([input_id])
            return rec.space, self._index(rec.space).reconstruct(input_id)

    def vectors(self, space: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of a space, sorted by id (all of them, or those asked for that exist).

        Exact float32 copies: from memory when an exact copy of every asked vector is held, else from DuckDB.
        """
        with self._read():
            dim = self._check_space(space)
            if ids is not None and space in self._indexes:
                wanted = np.unique(np.asarray(ids, dtype=np.int64))
                held = self._indexes[space].exact_copies(wanted)
                if held is not None:
                    return wanted, held
            return self._db.vectors(space, dim, ids)

    def stored_vectors(self, space: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`vectors`, always read from DuckDB (the truth the in-memory copies are checked against)."""
        with self._read():
            return self._db.vectors(space, self._check_space(space), ids)

    def stored_label_view(self, space: str) -> LabelView:
        """:meth:`label_view`, always read afresh from DuckDB (what in-place extended views must equal)."""
        with self._read():
            self._check_space(space)
            return self._db.label_view(space)

    def space_index(self, space: str) -> SpaceIndex:
        """The space's FAISS index as held in memory (loaded or rebuilt on first use); for inspection."""
        with self._read():
            self._check_space(space)
            return self._index(space)

    def count(self, space: str | None = None) -> int:
        """Number of stored vectors (in one space, or all)."""
        with self._read():
            spaces = [space] if space else list(self.spaces)
            return sum(self._index(s).ntotal for s in spaces)

    def concept_member_ids(self, space: str, concept: str) -> np.ndarray:
        """Ids in ``space`` positively labelled with ``concept`` (frames through their video)."""
        name = check_concept_name(concept)
        with self._read():
            self._db.concept_ids([name], create=False)
            return self._db.member_ids(space, name)

    def search(
        self, space: str, queries: np.ndarray, k: int, *, restrict_to: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product neighbours; ``restrict_to`` filters ids *before* ranking.

        Returns ``(similarities, ids)`` with FAISS's ``-1`` padding kept (callers strip it).
        """
        dim = self._check_space(space)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != dim:
            raise InvalidInputError(f"query vectors must have shape (n, {dim}), got {q.shape}")
        if k <= 0:
            raise InvalidInputError(f"k must be positive, got {k}")
        with self._read():
            held = self._index(space)
            if held.ntotal == 0:
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
            k_eff = max(1, min(k, held.ntotal))
            if restrict_to is None:
                return held.search(q, k_eff)
            subset = [int(i) for i in restrict_to]
            return held.search_among(q, k_eff, np.asarray(subset, np.int64), lambda: self.vectors(space, subset))

    def warm(self) -> None:
        """Load now what the first read or write would otherwise load on its path: every space's index and
        label view, DuckDB's id indexes and, for writes, each space's content-hash filter and a rolled-back
        rehearsal of an add (``vecclf serve`` calls this in the background as it starts)."""
        if not self.read_only:
            with self._write():
                self._db.rehearse_write(self.spaces)  # first: its rollback drops what the catalogue remembers
        with self._read():
            self._db.warm(self.spaces)
        for space in self.spaces:
            with self._read():
                self._index(space)
                self.label_view(space)
                if not self.read_only:
                    self._memory.make_room(space)
                    self._memory.keep_hashes(space, self._db.content_hashes(space))

    def label_view(self, space: str) -> LabelView:
        """Current labels of ``space`` as arrays (kept until the next write)."""
        with self._read():
            self._check_space(space)
            return self._memory.view(space, self._db.generation(space), lambda: self._db.label_view(space))

    def state(self, space: str) -> SpaceState:
        """Generation, label view, vector count and head generation of ``space``, read together."""
        with self._read():
            self._check_space(space)
            generation = self._db.generation(space)
            view = self._memory.view(space, generation, lambda: self._db.label_view(space))
            return SpaceState(space, generation, view, self._index(space).ntotal, self._db.head_generation(space))

    def generation(self, space: str) -> int:
        """The space's write counter (bumped by every add, delete, label or concept change)."""
        with self._read():
            self._check_space(space)
            return self._db.generation(space)

    def cached_vectors(self, space: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors already computed by this store's embedder for these content hashes.

        Stored inputs are their own cache; a cache table keeps the vectors of deleted inputs.
        """
        if not hashes:
            return {}
        with self._read():
            return self._db.cached_vectors(space, self._check_space(space), hashes, self._model_key)

    def thumbnail(self, input_id: int) -> bytes | None:
        """The stored JPEG thumbnail of an input, or None (texts have none)."""
        (input_id,) = check_ids([input_id])
        with self._read():
            return self._db.thumbnail(input_id)

    def head_generation(self, space: str) -> int | None:
        """The generation the stored head of ``space`` was trained at, or None (no weights read)."""
        with self._read():
            return self._db.head_generation(space)

    def load_head(self, space: str) -> tuple[int, str, dict[str, np.ndarray], str] | None:
        """``(generation, meta JSON, arrays, trained_at)`` of the stored head, or None."""
        with self._read():
            return self._db.load_head(space)

    def export_rows(self, space: str, after: int = 0, limit: int = 10_000) -> pa.Table:
        """A page of a space's inputs with labels, thumbnails and vectors, for an export (id order, past ``after``)."""
        with self._read():
            self._check_space(space)
            return self._db.export_rows(space, after, limit)

    def export_concepts(self) -> pa.Table:
        """Every concept (``name``, ``threshold``), for an export."""
        with self._read():
            return self._db.export_concepts()

    def info(self) -> dict[str, Any]:
        """A summary: path, embedder, schema version, counts per space and kind, concepts."""
        with self._read():
            kinds_count, n_concepts = self._db.counts()
            spaces: dict[str, dict[str, Any]] = {}
            for space, dim in self.spaces.items():
                entry: dict[str, Any] = {
                    "dim": dim,
                    "vectors": self._db.vector_count(space),
                    "generation": self._db.generation(space),
                    "cached_vectors": self._db.cache_count(space),  # kept from deleted inputs
                }
                held = self._indexes.get(space)
                if held is not None:
                    entry["index"] = held.kind
                    if held.untrained is not None:  # searched exactly beside the IVF cells until retrained
                        entry["untrained_vectors"] = held.untrained
                spaces[space] = entry
        return {
            "path": str(self.path.resolve()),
            "schema_version": self.schema_version,
            "embedder": self.identity,
            "spaces": spaces,
            "inputs": kinds_count,
            "concepts": n_concepts,
            "index_kind": self.index_kind,
            "read_only": self.read_only,
        }
