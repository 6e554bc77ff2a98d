"""The store: a DuckDB catalogue (the truth, vectors included) and FAISS indexes derived from it.

One FAISS index per embedding space, keyed by the input ids (its kind: :mod:`vecclf._index`).
Every write commits to DuckDB first and bumps the space's generation; the index file is
saved (temp file, fsync, ``os.replace``) on :meth:`Store.flush`/``close`` together with
its generation and checksum, so a stale, torn or missing file is rebuilt from DuckDB on
the next open instead of answering wrongly.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sys
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import faiss
import numpy as np
import pyarrow as pa

from . import _index, _sql
from ._locks import RWLock
from .errors import (
    ConflictError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
    ReadOnlyError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownConceptError,
)

DB_FILE = "store.duckdb"
LOCK_FILE = "store.lock"
RESERVED_CONCEPTS = frozenset({"unknown"})
MAX_CONCEPT_CHARS = 200


@dataclass(frozen=True)
class NewInput:
    """One row to add. ``parent`` is the index, within the same batch, of a frame's video."""

    kind: str
    space: str
    content_hash: str
    vector: np.ndarray
    source: str | None = None
    text: str | None = None
    parent: int | None = None
    frame_index: int | None = None
    timestamp_s: float | None = None
    metadata: dict[str, Any] | None = None
    concepts: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    thumbnail: bytes | None = None  # small JPEG shown beside results


@dataclass(frozen=True)
class InputRecord:
    """A stored input as read back from the catalogue."""

    id: int
    kind: str
    space: str
    source: str | None
    text: str | None
    parent_id: int | None
    frame_index: int | None
    timestamp_s: float | None
    concepts: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ConceptInfo:
    """A concept and how many inputs are labelled with it."""

    name: str
    positives: int
    negatives: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "positives": self.positives, "negatives": self.negatives}


def locate(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``wanted`` ids in the ascending ``sorted_ids`` and which of them are there at all.

    Positions of absent ids are meaningless (in range, so they can still index); ``-1`` is never found.
    """
    wanted = np.asarray(wanted, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.zeros(wanted.shape, dtype=np.int64), np.zeros(wanted.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    return pos, (wanted >= 0) & (sorted_ids[pos] == wanted)


@dataclass
class _Room:
    """Buffers a label view's arrays are leading slices of, with spare room for later adds."""

    ids: np.ndarray
    roots: np.ndarray
    label_roots: np.ndarray
    matrix: np.ndarray

    @classmethod
    def around(cls, view: LabelView, n_ids: int, n_rows: int, n_classes: int) -> _Room:
        """New buffers holding ``view``'s arrays, with room for ``n_ids`` ids, ``n_rows`` rows, ``n_classes`` classes."""
        room = cls(
            np.zeros(n_ids + max(1024, n_ids // 4), np.int64),
            np.zeros(n_ids + max(1024, n_ids // 4), np.int64),
            np.zeros(n_rows + max(1024, n_rows // 4), np.int64),
            np.zeros((n_rows + max(1024, n_rows // 4), n_classes + 16), np.int8),
        )
        room.ids[: len(view.ids)] = view.ids
        room.roots[: len(view.roots)] = view.roots
        room.label_roots[: len(view.label_roots)] = view.label_roots
        room.matrix[: view.matrix.shape[0], : view.matrix.shape[1]] = view.matrix
        return room

    def fits(self, n_ids: int, n_rows: int, n_classes: int) -> bool:
        return len(self.ids) >= n_ids and len(self.label_roots) >= n_rows and self.matrix.shape[1] >= n_classes


@dataclass(frozen=True)
class LabelView:
    """Labels of one space as arrays, for vectorised k-NN voting.

    ``ids``/``roots`` are aligned and sorted by id (a frame's root is its video);
    ``matrix[r, c]`` is +1/-1/0 for labelled root ``label_roots[r]`` and ``classes[c]``.
    """

    generation: int
    ids: np.ndarray
    roots: np.ndarray
    classes: list[str]
    label_roots: np.ndarray
    matrix: np.ndarray
    # This view is the one at `base_generation` plus adds; `changed_at` holds the generation at which each
    # class last gained labels since then, so caches derived per class (open-set thresholds) recompute just
    # the classes changed since they were computed. A full rebuild is its own base.
    base_generation: int = -1
    changed_at: Mapping[str, int] = field(default_factory=dict)
    # Classes that first appeared in an add have no rows before the one it started at (labels on older
    # inputs force a full re-read), so their members are found without scanning every row.
    first_rows: Mapping[str, int] = field(default_factory=dict)
    # Whether several ids share a root (frames of a video): computed when not given.
    frames: bool | None = None
    # Buffers the arrays above are leading slices of: adds write new ids, rows and concept columns in place
    # instead of copying N-sized arrays; only the newest view is ever extended, past every older view's end.
    room: _Room | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.frames is None:
            object.__setattr__(self, "frames", bool(len(self.ids) and not np.array_equal(self.ids, self.roots)))

    def with_added(
        self, generation: int, ids: np.ndarray, roots: np.ndarray, labels: dict[int, dict[str, bool]]
    ) -> LabelView:
        """This view plus new inputs (ids above every stored one) and their labels ``{root: {concept: positive}}``.

        New concepts are appended after the existing ones (a full rebuild lists them sorted).
        """
        known = set(self.classes)
        classes = self.classes + sorted({c for m in labels.values() for c, pos in m.items() if pos} - known)
        col = {c: j for j, c in enumerate(classes)}
        rows = sorted(r for r, marks in labels.items() if any(c in col for c in marks))
        n_ids, n_old, n_new = len(self.ids) + len(ids), len(self.label_roots), len(self.label_roots) + len(rows)
        room = self.room
        if room is None or not room.fits(n_ids, n_new, len(classes)):
            room = _Room.around(self, n_ids, n_new, len(classes))
        room.ids[len(self.ids) : n_ids] = ids
        room.roots[len(self.ids) : n_ids] = roots
        room.label_roots[n_old:n_new] = rows
        for n, r in enumerate(rows):
            for c, pos in labels[r].items():
                if c in col:
                    room.matrix[n_old + n, col[c]] = 1 if pos else -1
        touched = {c for r in rows for c in labels[r] if c in col}
        return LabelView(
            generation=generation,
            ids=room.ids[:n_ids],
            roots=room.roots[:n_ids],
            classes=classes,
            label_roots=room.label_roots[:n_new],
            matrix=room.matrix[:n_new, : len(classes)],
            base_generation=self.base_generation if self.base_generation >= 0 else self.generation,
            changed_at={**self.changed_at, **dict.fromkeys(touched, generation)},
            first_rows={**self.first_rows, **dict.fromkeys(classes[len(self.classes) :], n_old)},
            frames=bool(self.frames or not np.array_equal(ids, roots)),
            room=room,
        )

    def members(self, column: int) -> np.ndarray:
        """Label roots positively labelled with ``classes[column]``, ascending."""
        start = self.first_rows.get(self.classes[column], 0)
        return self.label_roots[start:][self.matrix[start:, column] > 0]

    def changed_since(self, generation: int) -> set[str] | None:
        """Classes whose labels changed after ``generation``, or None when this view cannot tell."""
        if self.base_generation < 0 or generation < self.base_generation:
            return None
        return {c for c, g in self.changed_at.items() if g > generation}

    @property
    def has_frames(self) -> bool:
        """True when several ids share a root, so neighbours must be de-duplicated."""
        return bool(self.frames)

    def rows_for(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map neighbour ids (``-1`` = padding) to ``(root ids, label rows)``; ``-1`` where unknown/unlabelled."""
        flat = np.asarray(ids, dtype=np.int64).ravel()
        roots = np.full(flat.shape, -1, dtype=np.int64)
        pos, found = locate(self.ids, flat)
        roots[found] = self.roots[pos[found]]
        rows = np.full(flat.shape, -1, dtype=np.int64)
        lpos, ok = locate(self.label_roots, roots)
        rows[ok] = lpos[ok]
        return roots.reshape(np.shape(ids)), rows.reshape(np.shape(ids))


def check_concept_name(name: str) -> str:
    """Validate and normalise (NFC, stripped) a concept name."""
    if not isinstance(name, str):
        raise InvalidInputError(f"concept name must be a string, got {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise InvalidInputError("concept name is empty")
    if len(clean) > MAX_CONCEPT_CHARS:
        raise InvalidInputError(f"concept name longer than {MAX_CONCEPT_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in clean):
        raise InvalidInputError(f"concept name {clean!r} contains control characters")
    if clean.lower() in RESERVED_CONCEPTS:
        raise InvalidInputError(f"concept name {clean!r} is reserved (predictions use it for open-set answers)")
    return clean


MAX_ID = 2**63 - 1


def check_ids(ids: Iterable[Any]) -> list[int]:
    """Validate input ids: integers in ``1..2**63-1`` (FAISS and DuckDB use int64)."""
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise InvalidInputError(f"input ids must be integers, got {i!r}")
        if not 1 <= int(i) <= MAX_ID:
            raise InvalidInputError(f"input id {i} is out of range (1..{MAX_ID})")
        out.append(int(i))
    return out


def _identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _vector_table(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    return pa.table({"id": pa.array(ids, pa.int64()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})


RECORD_CACHE_SIZE = 20_000  # input records a store remembers (about 10 MB)


def _copy_record(r: InputRecord) -> InputRecord:
    # spelled out: dataclasses.replace took ~20 us a record, 10% of a 1,000-query batch prediction
    return InputRecord(
        r.id,
        r.kind,
        r.space,
        r.source,
        r.text,
        r.parent_id,
        r.frame_index,
        r.timestamp_s,
        list(r.concepts),
        list(r.negatives),
    )


def _new_records(items: Sequence[NewInput], ids: list[int], marks_of: list[dict[str, bool]]) -> list[InputRecord]:
    """The records ``Store.get`` would read back for just-added items (a frame carries its video's labels)."""
    out = []
    for i, (it, input_id) in enumerate(zip(items, ids)):
        marks = marks_of[it.parent if it.parent is not None else i]
        out.append(
            InputRecord(
                input_id,
                it.kind,
                it.space,
                it.source,
                it.text,
                ids[it.parent] if it.parent is not None else None,
                None if it.frame_index is None else int(it.frame_index),
                None if it.timestamp_s is None else float(it.timestamp_s),
                sorted(n for n, pos in marks.items() if pos),
                sorted(n for n, pos in marks.items() if not pos),
            )
        )
    return out


_NO_VIEW = LabelView(
    -1, np.zeros(0, np.int64), np.zeros(0, np.int64), [], np.zeros(0, np.int64), np.zeros((0, 0), np.int8)
)


class Store:
    """A vecclf store directory. Open with :meth:`create` or :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, *, read_only: bool, lock_fd: int | None) -> None:
        self.path = path
        self.read_only = read_only
        self._con = con
        self._lock_fd = lock_fd
        self._lock = RWLock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._load_lock = threading.Lock()
        self._indexes: dict[str, faiss.Index] = {}
        # IVF spaces: the vectors added since the cells were trained (also in the IVF), searched exactly too,
        # and the last id the cells were trained with
        self._fresh: dict[str, faiss.Index] = {}
        self._trained: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._views: dict[str, LabelView] = {}
        # Recently read or added inputs: evidence lookups stay in memory. Adds only put new records here; any
        # write that relabels or removes inputs empties it.
        self._records: dict[int, InputRecord] = {}
        meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        self.spec: dict[str, Any] = json.loads(meta["embedder_spec"])
        self.identity: dict[str, Any] = json.loads(meta["embedder_identity"])
        self.spaces: dict[str, int] = json.loads(meta["spaces"])
        self.schema_version = int(meta["schema_version"])
        self.index_kind: str = meta.get("index_kind", "auto")  # stores made before the choice existed: auto
        self._gens: dict[str, int] = {}
        self._concept_map: dict[str, int] | None = None  # name -> id, like _gens valid while this is the only writer
        self._model_key = _identity_key(self.identity)

    # ----------------------------------------------------------------- open/close
    @staticmethod
    def _take_file_lock(path: Path) -> int:
        lock_path = path / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_path.read_text(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise StoreLockedError(
                f"store {path} is open for writing by another process ({holder}); stop it or open this store read-only"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}".encode())
        return fd

    @staticmethod
    def _unlock(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

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

        ``index`` chooses the FAISS index kind (see :mod:`vecclf._index`); the vectors in DuckDB stay exact.
        """
        root = Path(path)
        _index.check_kind(index)
        if (root / DB_FILE).exists():
            raise ConflictError(f"a store already exists at {root}")
        root.mkdir(parents=True, exist_ok=True)
        fd = cls._take_file_lock(root)
        try:
            con = duckdb.connect(str(root / DB_FILE))
            con.execute("BEGIN")
            for stmt in _sql.BASE_DDL:
                con.execute(stmt)
            for space, dim in spaces.items():
                for stmt in _sql.space_ddl(space, dim):
                    con.execute(stmt)
            meta = {
                "schema_version": str(_sql.SCHEMA_VERSION),
                "embedder_spec": json.dumps(spec, sort_keys=True),
                "embedder_identity": json.dumps(identity, sort_keys=True),
                "spaces": json.dumps(spaces, sort_keys=True),
                "index_kind": index,
                **{f"gen:{s}": "0" for s in spaces},
            }
            con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            con.execute("COMMIT")
        except BaseException:
            cls._unlock(fd)
            raise
        return cls(root, con, read_only=False, lock_fd=fd)

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Store:
        """Open an existing store; read-write opens take the single-writer lock."""
        root = Path(path)
        db = root / DB_FILE
        if not db.is_file():
            raise StoreNotFoundError(f"no vecclf store at {root} (create one with `vecclf init`)")
        fd = None if read_only else cls._take_file_lock(root)
        try:
            try:
                con = duckdb.connect(str(db), read_only=read_only)
            except duckdb.Error as exc:
                if "could not set lock" in str(exc).lower() or "conflicting lock" in str(exc).lower():
                    holder = (
                        (root / LOCK_FILE).read_text(errors="replace").strip() if (root / LOCK_FILE).exists() else ""
                    )
                    raise StoreLockedError(f"store {root} is locked by another process ({holder or exc})") from exc
                raise StoreCorruptError(f"cannot open store database {db}: {exc}") from exc
            try:
                store = cls(root, con, read_only=read_only, lock_fd=fd)
            except (duckdb.Error, KeyError, json.JSONDecodeError) as exc:
                con.close()
                raise StoreCorruptError(f"{db} is not a readable vecclf store: {exc}") from exc
        except BaseException:
            cls._unlock(fd)
            raise
        if store.schema_version > _sql.SCHEMA_VERSION:
            store.close()
            raise StoreError(
                f"{db} has schema version {store.schema_version}; this vecclf reads up to {_sql.SCHEMA_VERSION}"
            )
        if store.schema_version < _sql.SCHEMA_VERSION:
            if read_only:
                store.close()
                raise StoreError(f"{db} has schema version {store.schema_version}; open it read-write once to migrate")
            store._migrate()
        return store

    def _migrate(self) -> None:
        """Apply ``_sql.MIGRATIONS`` in one transaction, up to ``SCHEMA_VERSION``."""
        with self._transaction() as con:
            for version in range(self.schema_version, _sql.SCHEMA_VERSION):
                for stmt in _sql.MIGRATIONS[version]:
                    con.execute(stmt)
            self._set_meta("schema_version", str(_sql.SCHEMA_VERSION))
        self.schema_version = _sql.SCHEMA_VERSION

    def flush(self) -> None:
        """Save every changed FAISS index atomically and record its generation and checksum."""
        with self._write():
            if self.read_only:
                return
            for space in sorted(self._dirty):
                index = self._indexes[space]
                fresh = self._fresh.get(space)
                if _index.resolve(self.index_kind, index.ntotal) != _index.kind_of(index) or (
                    fresh is not None and fresh.ntotal > _index.FRESH_MAX
                ):
                    # grew past a threshold (auto: flat -> ivf; sq8 and ivf need enough vectors to train),
                    # or too much was added since the IVF cells were trained
                    index = self._indexes[space] = self._rebuild(space)
                final = self._index_path(space)
                tmp = final.with_suffix(".tmp")
                try:
                    faiss.write_index(index, str(tmp))
                    with tmp.open("rb+") as fh:
                        os.fsync(fh.fileno())
                    os.replace(tmp, final)
                except (OSError, RuntimeError) as exc:  # faiss reports a failed write (e.g. disk full) as RuntimeError
                    tmp.unlink(missing_ok=True)
                    raise StoreError(
                        f"could not save the index {final}: {exc}. Nothing stored is lost: the database holds "
                        "every vector and the index is rebuilt from it when the store is next opened"
                    ) from exc
                _fsync_dir(self.path)
                record = {
                    "generation": self._generation(space),
                    "sha256": _file_sha256(final),
                    "ntotal": index.ntotal,
                    "trained_through": self._trained.get(space, 0),
                }
                self._set_meta(f"faiss:{space}", json.dumps(record))
            self._dirty.clear()

    def close(self) -> None:
        """Flush and release the database and the writer lock. Safe to call twice."""
        with self._write():
            if self._con is None:
                return
            try:
                self.flush()
            finally:
                for cursor in self._cursors:
                    cursor.close()
                self._cursors.clear()
                self._con.close()
                self._con = None  # type: ignore[assignment]
                self._unlock(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- helpers
    def _db(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection, or this reader thread's own cursor (DuckDB connections are per thread)."""
        if self._con is None:
            raise StoreError("store is closed")
        if self._lock.held_for_write():
            return self._con
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            self._local.cursor = cursor
            self._cursors.append(cursor)
        return cursor

    def reading(self) -> AbstractContextManager[None]:
        """Hold a consistent view across several reads (writers wait until the block ends)."""
        return self._read()

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock.read(), self._db_errors():
            yield

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock.write(), self._db_errors():
            yield

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        """Exclusive access for a change, refused at once on a read-only store."""
        with self._write():
            self._writable()
            yield

    @contextmanager
    def _db_errors(self) -> Iterator[None]:
        """DuckDB failures surface as typed store errors naming the file (damage is often found late, on read)."""
        try:
            yield
        except duckdb.Error as exc:
            db = self.path / DB_FILE
            text = str(exc).lower()
            if any(w in text for w in ("corrupt", "checksum", "serializ", "failed to read", "invalid")):
                raise StoreCorruptError(f"store database {db} is damaged: {exc}") from exc
            raise StoreError(f"store database {db}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction: committed when the block ends, rolled back if it (or the commit) fails."""
        con = self._writable()
        con.execute("BEGIN")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # a failed COMMIT has already ended the transaction; keep the original error
            self._gens.clear()  # re-read: bumps made inside the failed transaction did not happen
            self._concept_map = None  # and concepts it created do not exist
            raise

    def _writable(self) -> duckdb.DuckDBPyConnection:
        if self.read_only:
            raise ReadOnlyError(f"store {self.path} is open read-only")
        return self._db()

    def _index_path(self, space: str) -> Path:
        return self.path / f"faiss-{space}.index"

    def _row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """First row of a query or None (fetching everything: DuckDB 2 rejects half-read results)."""
        rows = self._db().execute(sql, list(params)).fetchall()
        return rows[0] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db().execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value]
        )

    def _generation(self, space: str) -> int:
        # Kept in memory: this process is the store's only writer (read-only opens exclude writers).
        if space not in self._gens:
            row = self._row("SELECT value FROM meta WHERE key = ?", [f"gen:{space}"])
            self._gens[space] = int(row[0]) if row else 0
        return self._gens[space]

    def _bump(self, spaces: Iterable[str]) -> None:
        for space in set(spaces):
            current = self._generation(space)  # before the UPDATE, which the cache must not count twice
            self._db().execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR) WHERE key = ?", [f"gen:{space}"]
            )
            self._gens[space] = current + 1

    def _check_space(self, space: str) -> int:
        if space not in self.spaces:
            raise InvalidInputError(f"space {space!r} not in this store (has {sorted(self.spaces)})")
        return self.spaces[space]

    def _read_vectors(
        self, space: str, ids: Sequence[int] | None = None, *, after: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        table = _sql.space_table(space)
        dim = self.spaces[space]
        if ids is None:
            res = (
                self._db()
                .sql(f"SELECT id, vector FROM {table} WHERE id > $after ORDER BY id", params={"after": after})
                .to_arrow_table()
            )
        else:
            res = (
                self._db()
                .sql(f"SELECT id, vector FROM {table} WHERE id = ANY($ids) ORDER BY id", params={"ids": list(ids)})
                .to_arrow_table()
            )
        out_ids = res.column("id").to_numpy().astype(np.int64)
        col = res.column("vector").combine_chunks()
        values = np.asarray(col.values, dtype=np.float32) if len(col) else np.zeros(0, np.float32)
        return out_ids, values.reshape(-1, dim)

    def _index(self, space: str) -> faiss.Index:
        """The space's FAISS index: loaded if its file matches DuckDB, else rebuilt from DuckDB."""
        index = self._indexes.get(space)
        if index is not None:
            return index
        with self._load_lock:  # readers may race to load: one loads, the others reuse it
            index = self._indexes.get(space)
            if index is None:
                index = self._load_index(space)
                self._indexes[space] = index
            return index

    def _load_index(self, space: str) -> faiss.Index:
        """Read the index file if it matches DuckDB (generation, count, checksum), else rebuild."""
        dim = self._check_space(space)
        count = self._row(f"SELECT count(*) FROM {_sql.space_table(space)}")[0]
        path = self._index_path(space)
        row = self._row("SELECT value FROM meta WHERE key = ?", [f"faiss:{space}"])
        if row and path.is_file():
            record = json.loads(row[0])
            if record.get("generation") == self._generation(space) and record.get("ntotal") == count:
                try:
                    if _file_sha256(path) == record.get("sha256"):
                        loaded = faiss.read_index(str(path))
                        if loaded.ntotal == count and loaded.d == dim:
                            self._track_fresh(space, loaded, record.get("trained_through"))
                            return loaded
                except (RuntimeError, OSError):
                    pass  # torn or unreadable: fall through to a rebuild
        return self._rebuild(space)

    def _rebuild(self, space: str) -> faiss.Index:
        """A new index of the store's kind from every vector in DuckDB (IVF cells trained afresh)."""
        ids, vectors = self._read_vectors(space)
        index = _index.build(self.index_kind, self.spaces[space], ids, vectors)
        self._track_fresh(space, index, int(ids[-1]) if len(ids) else 0)
        self._dirty.add(space)
        return index

    def _track_fresh(self, space: str, index: faiss.Index, trained_through: int | None) -> None:
        self._fresh.pop(space, None)
        if _index.kind_of(index) != "ivf":  # other kinds have no cells to miss new vectors
            self._trained[space] = trained_through or 0
            return
        if trained_through is None:  # an IVF index saved before fresh vectors were tracked: all count as trained
            trained_through = int(self._row(f"SELECT coalesce(max(id), 0) FROM {_sql.space_table(space)}")[0])
        self._trained[space] = trained_through
        fresh = _index.build("flat", self.spaces[space], *self._read_vectors(space, after=trained_through))
        self._fresh[space] = fresh

    # ----------------------------------------------------------------- writes
    def _concepts_by_name(self) -> dict[str, int]:
        if self._concept_map is None:
            rows = self._db().execute("SELECT name, id FROM concepts").fetchall()
            self._concept_map = {str(n): int(i) for n, i in rows}
        return self._concept_map

    def _concept_ids(self, names: Iterable[str], *, create: bool, created: set[str] | None = None) -> dict[str, int]:
        """Ids of named concepts; with ``create``, missing ones are made (and their names put in ``created``)."""
        known = self._concepts_by_name()
        found: dict[str, int] = {}
        for name in sorted(set(names)):
            if name not in known:
                if not create:
                    raise UnknownConceptError(f"unknown concept {name!r}")
                row = self._row(
                    "INSERT INTO concepts (id, name) VALUES (nextval('concept_ids'), ?) RETURNING id", [name]
                )
                known[name] = int(row[0])
                if created is not None:
                    created.add(name)
            found[name] = known[name]
        return found

    def add(self, items: Sequence[NewInput]) -> list[int]:
        """Add inputs with their vectors and labels in one transaction; returns their new ids."""
        if not items:
            return []
        with self._mutating():
            marks_of: list[dict[str, bool]] = []  # per item: normalised concept name -> positive?
            for it in items:
                dim = self._check_space(it.space)
                vec = np.asarray(it.vector)
                if vec.shape != (dim,):
                    raise ModelMismatchError(
                        f"vector of shape {vec.shape} does not fit space {it.space!r} of dim {dim}"
                    )
                if not np.all(np.isfinite(vec)):
                    raise InvalidInputError("vector contains NaN or Inf")
                if it.parent is not None and not (0 <= it.parent < len(items)):
                    raise InvalidInputError("frame parent index out of range")
                positives = {check_concept_name(n) for n in it.concepts}
                negatives = {check_concept_name(n) for n in it.negatives}
                if positives & negatives:
                    raise InvalidInputError(
                        f"concept(s) {sorted(positives & negatives)} given as both positive and negative"
                    )
                marks_of.append({**dict.fromkeys(sorted(negatives), False), **dict.fromkeys(sorted(positives), True)})
            for space in {it.space for it in items}:
                self._index(space)  # load before writing so the in-memory index stays in step
            names = {n for marks in marks_of for n in marks}
            now = datetime.now(UTC).replace(tzinfo=None)  # created_at, in UTC
            with self._transaction() as con:
                created: set[str] = set()
                concept_ids = self._concept_ids(names, create=True, created=created)
                ids = [
                    int(r[0]) for r in con.execute("SELECT nextval('input_ids') FROM range(?)", [len(items)]).fetchall()
                ]
                rows = pa.table(
                    {
                        "id": pa.array(ids, pa.int64()),
                        "kind": [it.kind for it in items],
                        "space": [it.space for it in items],
                        "source": [it.source for it in items],
                        "content_hash": [it.content_hash for it in items],
                        "parent_id": pa.array(
                            [ids[it.parent] if it.parent is not None else None for it in items], pa.int64()
                        ),
                        "frame_index": pa.array([it.frame_index for it in items], pa.int32()),
                        "timestamp_s": pa.array([it.timestamp_s for it in items], pa.float64()),
                        "text": [it.text for it in items],
                        "metadata": [json.dumps(it.metadata) if it.metadata else None for it in items],
                        "created_at": pa.array([now] * len(items), pa.timestamp("us")),
                    }
                )
                con.from_arrow(rows).insert_into("inputs")  # every column, in the table's order
                labels = [(ids[i], concept_ids[n], pos) for i, marks in enumerate(marks_of) for n, pos in marks.items()]
                if labels:
                    label_rows = pa.table(
                        {
                            "input_id": pa.array([r[0] for r in labels], pa.int64()),
                            "concept_id": pa.array([r[1] for r in labels], pa.int64()),
                            "positive": pa.array([r[2] for r in labels], pa.bool_()),
                        }
                    )
                    con.from_arrow(label_rows).insert_into("labels")  # no register/unregister: ~1 ms less
                # concepts that become classes here but already had (negative) labels: views are rebuilt
                known = {c for space in {it.space for it in items} for c in self._views.get(space, _NO_VIEW).classes}
                all_positives = {n for marks in marks_of for n, pos in marks.items() if pos}
                fresh = [concept_ids[n] for n in all_positives - known - created]  # new concepts have no past
                earlier = bool(fresh) and bool(
                    self._row(
                        "SELECT count(*) FROM labels WHERE list_contains(?, concept_id) AND input_id < ?",
                        [fresh, min(ids)],
                    )[0]
                )
                thumbs = [(ids[i], it.thumbnail) for i, it in enumerate(items) if it.thumbnail]
                if thumbs:
                    con.executemany("INSERT INTO thumbnails VALUES (?, ?)", thumbs)
                by_space: dict[str, list[int]] = {}
                for i, it in enumerate(items):
                    by_space.setdefault(it.space, []).append(i)
                staged: list[tuple[str, np.ndarray, np.ndarray]] = []
                for space, idx in by_space.items():
                    vecs = np.stack([np.asarray(items[i].vector, dtype=np.float32) for i in idx])
                    space_ids = np.array([ids[i] for i in idx], dtype=np.int64)
                    con.from_arrow(_vector_table(space_ids, vecs)).insert_into(_sql.space_table(space))
                    staged.append((space, space_ids, vecs))
                before = {space: self._generation(space) for space in by_space}
                self._bump(by_space)
            for space, space_ids, vecs in staged:
                self._indexes[space].add_with_ids(vecs, space_ids)
                if space in self._fresh:
                    self._fresh[space].add_with_ids(vecs, space_ids)
                self._dirty.add(space)
                view = self._views.pop(space, None)
                if view is not None and view.generation == before[space] and not earlier:
                    # extend the cached labels rather than re-read them all: adding a concept stays O(new)
                    idx = by_space[space]
                    parents = [items[i].parent for i in idx]
                    roots = np.array([ids[i] if p is None else ids[p] for i, p in zip(idx, parents)])
                    marks = {ids[i]: marks_of[i] for i in idx if marks_of[i]}
                    self._views[space] = view.with_added(self._gens[space], space_ids, roots.astype(np.int64), marks)
            if len(items) <= RECORD_CACHE_SIZE // 20:  # a small add is likely asked about next; a bulk load is not
                self._remember(_new_records(items, ids, marks_of))
            return ids

    def cached_vectors(self, space: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors already computed by this store's embedder for these content hashes.

        Stored inputs are their own cache; the cache table keeps only the vectors of deleted inputs
        (so a second copy of every vector is not written with each add).
        """
        if not hashes:
            return {}
        with self._read():
            self._check_space(space)
            table = pa.table({"content_hash": list(set(hashes))})
            con = self._db()
            con.register("wanted_hashes", table)
            try:
                res = con.sql(
                    f"SELECT i.content_hash, v.vector FROM inputs i JOIN wanted_hashes w USING (content_hash) "
                    f"JOIN {_sql.space_table(space)} v ON v.id = i.id WHERE i.space = $space "
                    f"UNION ALL SELECT c.content_hash, c.vector FROM {_sql.space_table(space, 'cache')} c "
                    "JOIN wanted_hashes w USING (content_hash) WHERE c.model = $model",
                    params={"space": space, "model": self._model_key},
                ).to_arrow_table()
            finally:
                con.unregister("wanted_hashes")
            if res.num_rows == 0:
                return {}
            vecs = np.asarray(res.column("vector").combine_chunks().values, dtype=np.float32).reshape(res.num_rows, -1)
            return dict(zip(res.column("content_hash").to_pylist(), vecs))

    def delete(self, ids: Sequence[int]) -> list[int]:
        """Delete inputs (a video takes its frames with it). All ids must exist; returns every id removed."""
        wanted = sorted(set(check_ids(ids)))
        if not wanted:
            return []
        with self._mutating():
            con = self._db()
            table = pa.table({"id": pa.array(wanted, pa.int64())})
            con.register("del_ids", table)
            try:
                present = {int(r[0]) for r in con.execute("SELECT id FROM inputs JOIN del_ids USING (id)").fetchall()}
                missing = [i for i in wanted if i not in present]
                if missing:
                    raise NotFoundError(f"no input with id {', '.join(map(str, missing))}")
                rows = con.execute(
                    "SELECT id, space FROM inputs WHERE id IN (SELECT id FROM del_ids) "
                    "OR parent_id IN (SELECT id FROM del_ids) ORDER BY id"
                ).fetchall()
            finally:
                con.unregister("del_ids")
            by_space: dict[str, list[int]] = {}
            for i, space in rows:
                by_space.setdefault(space, []).append(int(i))
            for space in by_space:
                self._index(space)
            all_ids = [int(i) for i, _ in rows]
            with self._transaction() as con:
                con.register("del_all", pa.table({"id": pa.array(all_ids, pa.int64())}))
                con.execute("DELETE FROM labels WHERE input_id IN (SELECT id FROM del_all)")
                con.execute("DELETE FROM thumbnails WHERE id IN (SELECT id FROM del_all)")
                for space in by_space:
                    # a deleted input's vector stays cached: adding the same content again needs no embedding
                    con.execute(
                        f"INSERT INTO {_sql.space_table(space, 'cache')} SELECT DISTINCT ON (i.content_hash) ?, "
                        f"i.content_hash, v.vector FROM inputs i JOIN {_sql.space_table(space)} v ON v.id = i.id "
                        "WHERE i.id IN (SELECT id FROM del_all) ON CONFLICT DO NOTHING",
                        [self._model_key],
                    )
                    con.execute(f"DELETE FROM {_sql.space_table(space)} WHERE id IN (SELECT id FROM del_all)")
                con.execute("DELETE FROM inputs WHERE id IN (SELECT id FROM del_all)")
                con.unregister("del_all")
                self._bump(by_space)
            for space, space_ids in by_space.items():
                for index in (self._indexes[space], self._fresh.get(space)):
                    if index is not None:
                        index.remove_ids(np.array(space_ids, dtype=np.int64))  # type: ignore[arg-type]
                self._dirty.add(space)
                self._views.pop(space, None)
            self._records = {}
            return all_ids

    def label(self, ids: Sequence[int], concept: str, *, positive: bool = True) -> None:
        """Label existing inputs with a concept (created if new), replacing any earlier label for it."""
        name = check_concept_name(concept)
        ids = check_ids(ids)
        with self._mutating():
            spaces = self._spaces_of(ids)
            with self._transaction() as con:
                cid = self._concept_ids([name], create=True)[name]
                con.executemany(
                    "INSERT INTO labels VALUES (?, ?, ?) ON CONFLICT (input_id, concept_id) DO UPDATE SET positive = excluded.positive",
                    [(int(i), cid, positive) for i in ids],
                )
                self._bump(spaces)
            self._views.clear()
            self._records = {}

    def _spaces_of(self, ids: Sequence[int]) -> set[str]:
        out: set[str] = set()
        for i in ids:
            row = self._row("SELECT space FROM inputs WHERE id = ?", [int(i)])
            if row is None:
                raise NotFoundError(f"no input with id {int(i)}")
            out.add(row[0])
        return out

    def create_concepts(self, names: Sequence[str]) -> None:
        """Create concepts (no labels yet); existing names are left as they are."""
        clean = [check_concept_name(n) for n in names]
        with self._mutating():
            with self._transaction():
                self._concept_ids(clean, create=True)
                self._bump(self.spaces)

    def rename_concept(self, old: str, new: str) -> None:
        """Rename a concept; fails if ``new`` already exists."""
        old_n, new_n = check_concept_name(old), check_concept_name(new)
        with self._mutating():
            cid = self._concept_ids([old_n], create=False)[old_n]
            if old_n == new_n:
                return
            if new_n in self._concepts_by_name():
                raise ConflictError(f"concept {new_n!r} already exists")
            with self._transaction() as con:
                con.execute("UPDATE concepts SET name = ? WHERE id = ?", [new_n, cid])
                self._bump(self.spaces)
            self._views.clear()
            self._records = {}
            self._concept_map = None

    def delete_concept(self, name: str) -> int:
        """Remove a concept and its labels (inputs stay); returns how many labels went."""
        clean = check_concept_name(name)
        with self._mutating():
            cid = self._concept_ids([clean], create=False)[clean]
            with self._transaction() as con:
                n = self._row("SELECT count(*) FROM labels WHERE concept_id = ?", [cid])[0]
                con.execute("DELETE FROM labels WHERE concept_id = ?", [cid])
                con.execute("DELETE FROM concepts WHERE id = ?", [cid])
                self._bump(self.spaces)
            self._views.clear()
            self._records = {}
            self._concept_map = None
            return int(n)

    # ----------------------------------------------------------------- reads
    def concepts(self) -> list[ConceptInfo]:
        """All concepts with their positive and negative label counts, by name."""
        with self._read():
            rows = (
                self._db()
                .execute(
                    "SELECT c.name, count(*) FILTER (WHERE l.positive), count(*) FILTER (WHERE NOT l.positive) "
                    "FROM concepts c LEFT JOIN labels l ON l.concept_id = c.id GROUP BY c.name ORDER BY c.name"
                )
                .fetchall()
            )
        return [ConceptInfo(name, int(p), int(n)) for name, p, n in rows]

    def get(self, ids: Sequence[int]) -> list[InputRecord]:
        """Stored inputs by id, in the order asked; unknown ids raise :class:`NotFoundError`."""
        ids = check_ids(ids)
        if not ids:
            return []
        with self._read():
            found = {i: r for i in set(ids) if (r := self._records.get(i)) is not None}
            if len(found) < len(set(ids)):
                fetched = self._read_records(sorted(set(ids) - found.keys()))
                self._remember(fetched.values())
                found.update(fetched)
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise NotFoundError(f"no input with id {', '.join(map(str, missing))}")
        # copies: callers may change the lists without changing what is remembered
        return [_copy_record(found[i]) for i in ids]

    def _read_records(self, wanted: list[int]) -> dict[int, InputRecord]:
        # Plain lookups, names from the concept map: a join (+ GROUP BY) costs 2-3x more for a few ids.
        rows = (
            self._db()
            .execute(
                "SELECT id, kind, space, source, text, parent_id, frame_index, timestamp_s FROM inputs "
                "WHERE id = ANY(?)",
                [wanted],
            )
            .fetchall()
        )
        roots = sorted({int(r[5] if r[5] is not None else r[0]) for r in rows})
        labels = (
            self._db()
            .execute("SELECT input_id, concept_id, positive FROM labels WHERE input_id = ANY(?)", [roots])
            .fetchall()
        )
        name_of = {i: name for name, i in self._concepts_by_name().items()}
        pos: dict[int, list[str]] = {}
        neg: dict[int, list[str]] = {}
        for input_id, concept_id, positive in sorted(labels, key=lambda r: name_of[r[1]]):
            (pos if positive else neg).setdefault(int(input_id), []).append(name_of[concept_id])
        out = {}
        for r in rows:
            root = int(r[5] if r[5] is not None else r[0])
            out[int(r[0])] = InputRecord(
                int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], pos.get(root, []), neg.get(root, [])
            )
        return out

    def _remember(self, records: Iterable[InputRecord]) -> None:
        new = {r.id: r for r in records}
        if len(self._records) + len(new) > RECORD_CACHE_SIZE:
            self._records = {}  # a new dict, not clear(): readers may be looking things up in the old one
        self._records.update(new)

    def vector(self, input_id: int) -> tuple[str, np.ndarray]:
        """``(space, vector)`` of one stored input, read back from the FAISS index."""
        with self._read():  # one view: the input cannot be deleted between the lookup and the read-back
            (rec,) = self.get([input_id])
            return rec.space, np.asarray(self._index(rec.space).reconstruct(int(input_id)), dtype=np.float32)

    def vectors(self, space: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of a space, sorted by id (all of them, or those asked for that exist)."""
        with self._read():
            self._check_space(space)
            held = self._held_vectors(space, ids) if ids is not None else None
            return held if held is not None else self._read_vectors(space, ids)

    def _held_vectors(self, space: str, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """The asked vectors from an exact copy in memory (a flat index, or an IVF space's fresh vectors)
        when every one of them is there, else None (DuckDB has them)."""
        wanted = np.unique(np.asarray(ids, dtype=np.int64))
        for index in (self._fresh.get(space), self._indexes.get(space)):
            if index is not None and len(wanted) and _index.kind_of(index) == "flat":
                try:
                    return wanted, index.reconstruct_batch(wanted)
                except RuntimeError:  # an id it does not hold
                    continue
        return None

    def count(self, space: str | None = None) -> int:
        """Number of stored vectors (in one space, or all)."""
        with self._read():
            spaces = [space] if space else list(self.spaces)
            return sum(int(self._index(s).ntotal) for s in spaces)

    def concept_member_ids(self, space: str, concept: str) -> np.ndarray:
        """Ids in ``space`` positively labelled with ``concept`` (frames through their video)."""
        name = check_concept_name(concept)
        with self._read():
            self._concept_ids([name], create=False)
            rows = (
                self._db()
                .execute(
                    "SELECT i.id FROM inputs i JOIN labels l ON l.input_id = coalesce(i.parent_id, i.id) "
                    "JOIN concepts c ON c.id = l.concept_id WHERE c.name = ? AND l.positive AND i.space = ? ORDER BY i.id",
                    [name, space],
                )
                .fetchall()
            )
        return np.array([r[0] for r in rows], dtype=np.int64)

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
            index = self._index(space)
            k_eff = max(1, min(k, index.ntotal))
            if index.ntotal == 0:
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
            if restrict_to is not None and _index.kind_of(index) == "ivf":
                # an approximate index may not visit the cells holding a small subset: rank it exactly
                subset_ids, subset = self.vectors(space, [int(i) for i in restrict_to])
                return _index.exact_top_k(q, subset, subset_ids, k_eff)
            if restrict_to is not None:
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(restrict_to, dtype=np.int64)))  # type: ignore[call-arg]
                sims, ids = index.search(q, k_eff, params=params)
            else:
                sims, ids = _index.search(index, q, k_eff)
                fresh = self._fresh.get(space)
                if fresh is not None and fresh.ntotal:
                    found = _index.search(fresh, q, min(k_eff, fresh.ntotal))
                    sims, ids = _index.merge_top_k((sims, ids), found, k_eff)
        return sims, ids

    def label_view(self, space: str) -> LabelView:
        """Current labels of ``space`` as arrays (cached until the next write)."""
        with self._read():
            self._check_space(space)
            gen = self._generation(space)
            view = self._views.get(space)
            if view is not None and view.generation == gen:
                return view
            con = self._db()
            idr = con.execute(
                "SELECT id, coalesce(parent_id, id) AS root FROM inputs WHERE space = ? ORDER BY id", [space]
            ).fetchnumpy()
            lab = con.execute(
                "SELECT l.input_id, c.name, l.positive FROM labels l JOIN concepts c ON c.id = l.concept_id "
                "JOIN inputs i ON i.id = l.input_id WHERE i.space = ? ORDER BY l.input_id",
                [space],
            ).fetchnumpy()
            input_ids = np.asarray(lab["input_id"], dtype=np.int64)
            names = np.asarray(lab["name"], dtype=object)
            positive = np.asarray(lab["positive"], dtype=bool)
            classes = sorted(set(names[positive].tolist()))
            label_roots, row = np.unique(input_ids, return_inverse=True)
            matrix = np.zeros((len(label_roots), len(classes)), dtype=np.int8)
            if classes:
                col = np.searchsorted(np.array(classes, dtype=object), names)
                known = (col < len(classes)) & (
                    np.array(classes, dtype=object)[np.minimum(col, len(classes) - 1)] == names
                )
                matrix[row[known], col[known]] = np.where(positive[known], 1, -1)
            keep = np.abs(matrix).sum(axis=1) > 0
            view = LabelView(
                generation=gen,
                ids=np.asarray(idr["id"], dtype=np.int64),
                roots=np.asarray(idr["root"], dtype=np.int64),
                classes=classes,
                label_roots=label_roots[keep].astype(np.int64),
                matrix=matrix[keep],
                base_generation=gen,
            )
            self._views[space] = view
            return view

    def generation(self, space: str) -> int:
        """The space's write counter (bumped by every add, delete, label or concept change)."""
        with self._read():
            self._check_space(space)
            return self._generation(space)

    def save_head(self, space: str, generation: int, meta: str, arrays: dict[str, np.ndarray]) -> None:
        """Persist a trained head for ``space`` (replacing the previous one)."""
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        with self._mutating():
            con = self._db()
            self._check_space(space)
            con.execute(
                "INSERT INTO heads (space, generation, meta, weights) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (space) DO UPDATE SET generation = excluded.generation, meta = excluded.meta, "
                "weights = excluded.weights, trained_at = now()",
                [space, generation, meta, buf.getvalue()],
            )

    def thumbnail(self, input_id: int) -> bytes | None:
        """The stored JPEG thumbnail of an input, or None (texts have none)."""
        (input_id,) = check_ids([input_id])
        with self._read():
            row = self._row("SELECT jpeg FROM thumbnails WHERE id = ?", [input_id])
        return None if row is None else bytes(row[0])

    def head_generation(self, space: str) -> int | None:
        """The generation the stored head of ``space`` was trained at, or None (no weights read)."""
        with self._read():
            row = self._row("SELECT generation FROM heads WHERE space = ?", [space])
        return None if row is None else int(row[0])

    def load_head(self, space: str) -> tuple[int, str, dict[str, np.ndarray], str] | None:
        """``(generation, meta JSON, arrays, trained_at)`` of the stored head, or None."""
        with self._read():
            row = self._row("SELECT generation, meta, weights, trained_at FROM heads WHERE space = ?", [space])
        if row is None:
            return None
        with np.load(io.BytesIO(row[2]), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return int(row[0]), row[1], arrays, str(row[3])

    def info(self) -> dict[str, Any]:
        """A summary: path, embedder, schema version, counts per space and kind, concepts."""
        with self._read():
            con = self._db()
            kinds = dict(con.execute("SELECT kind, count(*) FROM inputs GROUP BY kind ORDER BY kind").fetchall())
            n_concepts = self._row("SELECT count(*) FROM concepts")[0]
            spaces: dict[str, dict[str, Any]] = {}
            for space, dim in self.spaces.items():
                n = self._row(f"SELECT count(*) FROM {_sql.space_table(space)}")[0]
                spaces[space] = {"dim": dim, "vectors": int(n), "generation": self._generation(space)}
                if space in self._indexes:
                    spaces[space]["index"] = _index.kind_of(self._indexes[space])
                if space in self._fresh:  # searched exactly beside the IVF cells until the next retraining
                    spaces[space]["untrained_vectors"] = int(self._fresh[space].ntotal)
        return {
            "path": str(self.path.resolve()),
            "schema_version": self.schema_version,
            "embedder": self.identity,
            "spaces": spaces,
            "inputs": {k: int(v) for k, v in kinds.items()},
            "concepts": int(n_concepts),
            "index_kind": self.index_kind,
            "read_only": self.read_only,
        }
