"""The DuckDB catalogue: a store's truth (inputs, concepts, labels, vectors, heads, thumbnails, cache).

Every SQL statement of vecclf is here. The catalogue knows nothing of FAISS or of locking policy: the
:class:`~vecclf.store.Store` facade decides when to read and write, and tells the catalogue, through
``writing``, whether the calling thread is the writer (which uses the main connection; each reader
thread gets a cursor of its own, as DuckDB connections are per thread).

It is one module past 400 lines on purpose: splitting the schema's statements over several files
would scatter what one table change has to touch.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import InvalidInputError, StoreCorruptError, StoreError, StoreLockedError, UnknownConceptError
from ..labels import UNKNOWN, LabelView
from . import schema
from .records import ConceptInfo, InputRecord, Marks, NewInput

REFUSED_VALUES = (
    duckdb.InvalidInputException,
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
)


ID_BLOCK = 64  # input ids taken from the sequence at once (see Catalogue._new_ids)


def _vector_table(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    return pa.table({"id": pa.array(ids, pa.int64()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})


def _vectors_of(res: pa.Table, dim: int) -> np.ndarray:
    col = res.column("vector").combine_chunks()
    values = np.asarray(col.values, dtype=np.float32) if len(col) else np.zeros(0, np.float32)
    return values.reshape(-1, dim)


class _Rehearsed(Exception):
    """Ends :meth:`Catalogue.rehearse_write`'s transaction (rolled back)."""


class Catalogue:
    """SQL over one store's DuckDB file. Generations and concept ids are kept in memory (single writer)."""

    def __init__(self, db_path: Path, con: duckdb.DuckDBPyConnection, *, writing: Callable[[], bool]) -> None:
        self.db_path = db_path
        self._con: duckdb.DuckDBPyConnection | None = con
        self._writing = writing
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._gens: dict[str, int] = {}
        self._concept_map: dict[str, int] | None = None  # name -> id
        self._head_gens: dict[str, int | None] = {}  # every prediction asks: a DuckDB round trip is ~1 ms
        self._spare_ids: list[int] = []  # input ids taken from the sequence in a committed write, not used yet

    # ------------------------------------------------------------- connection
    @staticmethod
    def connect(db_path: Path, *, read_only: bool, holder: Callable[[], str]) -> duckdb.DuckDBPyConnection:
        """Open the database file; a lock conflict names ``holder()``, anything else is a damaged store."""
        try:
            return duckdb.connect(str(db_path), read_only=read_only)
        except duckdb.Error as exc:
            text = str(exc).lower()
            if "could not set lock" in text or "conflicting lock" in text:
                raise StoreLockedError(
                    f"store {db_path.parent} is locked by another process ({holder() or exc})"
                ) from exc
            raise StoreCorruptError(f"cannot open store database {db_path}: {exc}") from exc

    @staticmethod
    def initialise(
        con: duckdb.DuckDBPyConnection,
        *,
        spec: dict[str, Any],
        identity: dict[str, Any],
        spaces: dict[str, int],
        index: str,
    ) -> None:
        """Create every table of a new store and its ``meta`` rows, in one transaction."""
        con.execute("BEGIN")
        for stmt in schema.BASE_DDL:
            con.execute(stmt)
        for space, dim in spaces.items():
            for stmt in schema.space_ddl(space, dim):
                con.execute(stmt)
        meta = {
            "schema_version": str(schema.SCHEMA_VERSION),
            "embedder_spec": json.dumps(spec, sort_keys=True),
            "embedder_identity": json.dumps(identity, sort_keys=True),
            "spaces": json.dumps(spaces, sort_keys=True),
            "index_kind": index,
            **{f"gen:{s}": "0" for s in spaces},
        }
        con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        con.execute("COMMIT")

    def db(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection, or this reader thread's own cursor."""
        if self._con is None:
            raise StoreError("store is closed")
        if self._writing():
            return self._con
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            self._local.cursor = cursor
            self._cursors.append(cursor)
        return cursor

    def close(self) -> None:
        """Give unused input ids back to the sequence, then close every cursor and the connection."""
        if self._spare_ids and self._con is not None:
            try:  # ids stay gapless across processes; after a crash the next ids merely skip these
                self._con.execute("SELECT setval('input_ids', ?)", [self._spare_ids[0] - 1]).fetchall()
            except duckdb.Error:
                pass  # a broken connection: the unused ids are skipped, nothing else
            self._spare_ids.clear()
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        if self._con is not None:
            self._con.close()
            self._con = None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """DuckDB failures surface as typed errors: a value DuckDB refuses is bad input (never "damaged"); damage
        (often found late, on read) names the file; anything else is a store error naming the file."""
        try:
            yield
        except REFUSED_VALUES as exc:
            raise InvalidInputError(f"the store cannot hold this value: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"text is not valid Unicode ({exc.reason})") from exc
        except duckdb.Error as exc:
            text = str(exc).lower()
            if any(w in text for w in ("corrupt", "checksum", "serializ", "failed to read", "not a valid duckdb")):
                raise StoreCorruptError(f"store database {self.db_path} is damaged: {exc}") from exc
            raise StoreError(f"store database {self.db_path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction: committed when the block ends, rolled back if it (or the commit) fails."""
        con = self.db()
        con.execute("BEGIN")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # a failed COMMIT has already ended the transaction; keep the original error
            self.forget()  # bumps and concepts made inside the failed transaction did not happen
            raise

    def forget(self) -> None:
        """Drop what is remembered of generations and concept ids; they are re-read on next use."""
        self._gens.clear()
        self._concept_map = None
        self._head_gens.clear()
        self._spare_ids.clear()

    def row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """First row of a query or None (fetching everything: DuckDB 2 rejects half-read results)."""
        rows = self.db().execute(sql, list(params)).fetchall()
        return rows[0] if rows else None

    # ------------------------------------------------------------- meta and generations
    def meta(self) -> dict[str, str]:
        """Every ``meta`` row."""
        return dict(self.db().execute("SELECT key, value FROM meta").fetchall())

    def warm(self, spaces: Iterable[str]) -> None:
        """Touch what a first read or write reads: the id indexes of the input and vector tables (DuckDB loads
        an index on first use, which made the first add after opening a store 10-100x slower), generations,
        head generations and concept ids. (Content hashes are read for the store's hash filter.)"""
        con = self.db()
        con.execute("SELECT count(*) FROM inputs WHERE id = -1").fetchall()
        for space in spaces:
            con.execute(f"SELECT count(*) FROM {schema.space_table(space)} WHERE id = -1").fetchall()
            self.generation(space)
            self.head_generation(space)
        self.concepts_by_name()

    def rehearse_write(self, dims: dict[str, int]) -> None:
        """Run one add of an input per space, with a label, and roll it back: the first real add after
        opening a large store otherwise pays for what DuckDB loads on a table's first insert (index nodes,
        the last row groups; 50-500 ms at 1M inputs). Nothing is written: an uncommitted transaction never
        reaches the WAL, even if the process dies inside it."""
        beyond = 1 << 62  # ids past any real one (where a real add's go) and no sequence value taken
        items = [NewInput("text", space, "", np.zeros(dim, np.float32)) for space, dim in dims.items()]
        ids = [beyond + i for i in range(len(items))]
        try:
            with self.transaction() as con:
                con.execute("INSERT INTO concepts (id, name) VALUES (?, ?)", [beyond, UNKNOWN])  # no real name
                self._insert_rows(ids, items, [{UNKNOWN: True}] * len(items), {UNKNOWN: beyond})
                for item, input_id in zip(items, ids):
                    self.insert_vectors(item.space, np.array([input_id], np.int64), item.vector[None, :])
                self.bump(dims)
                raise _Rehearsed
        except (_Rehearsed, duckdb.Error):  # rolled back; a failed rehearsal costs only the warm-up it was for
            pass

    def meta_value(self, key: str) -> str | None:
        """One ``meta`` value, or None."""
        found = self.row("SELECT value FROM meta WHERE key = ?", [key])
        return None if found is None else str(found[0])

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace one ``meta`` value."""
        self.db().execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value]
        )

    def migrate(self, from_version: int) -> None:
        """Apply the schema migrations from ``from_version`` up to :data:`schema.SCHEMA_VERSION`."""
        with self.transaction() as con:
            for version in range(from_version, schema.SCHEMA_VERSION):
                for stmt in schema.MIGRATIONS[version]:
                    con.execute(stmt)
            self.set_meta("schema_version", str(schema.SCHEMA_VERSION))

    def generation(self, space: str) -> int:
        """The space's write counter."""
        if space not in self._gens:
            value = self.meta_value(f"gen:{space}")
            self._gens[space] = int(value) if value else 0
        return self._gens[space]

    def bump(self, spaces: Iterable[str]) -> None:
        """Count one more write in each of ``spaces`` (inside the write's transaction)."""
        for space in set(spaces):
            current = self.generation(space)  # before the UPDATE, which the cache must not count twice
            self.db().execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR) WHERE key = ?", [f"gen:{space}"]
            )
            self._gens[space] = current + 1

    # ------------------------------------------------------------- concepts
    def concepts_by_name(self) -> dict[str, int]:
        """Concept name -> id."""
        if self._concept_map is None:
            rows = self.db().execute("SELECT name, id FROM concepts").fetchall()
            self._concept_map = {str(n): int(i) for n, i in rows}
        return self._concept_map

    def concept_ids(self, names: Iterable[str], *, create: bool, created: set[str] | None = None) -> dict[str, int]:
        """Ids of named concepts; with ``create``, missing ones are made (and their names put in ``created``)."""
        known = self.concepts_by_name()
        found: dict[str, int] = {}
        for name in sorted(set(names)):
            if name not in known:
                if not create:
                    raise UnknownConceptError(f"unknown concept {name!r}")
                made = self.row(
                    "INSERT INTO concepts (id, name) VALUES (nextval('concept_ids'), ?) RETURNING id", [name]
                )
                known[name] = int(made[0])
                if created is not None:
                    created.add(name)
            found[name] = known[name]
        return found

    def concept_counts(self) -> list[ConceptInfo]:
        """All concepts with their positive and negative label counts, by name."""
        rows = (
            self.db()
            .execute(
                "SELECT c.name, count(*) FILTER (WHERE l.positive), count(*) FILTER (WHERE NOT l.positive) "
                "FROM concepts c LEFT JOIN labels l ON l.concept_id = c.id GROUP BY c.name ORDER BY c.name"
            )
            .fetchall()
        )
        return [ConceptInfo(name, int(p), int(n)) for name, p, n in rows]

    def concept_thresholds(self) -> dict[str, float]:
        """Thresholds users set: concept name -> value."""
        rows = self.db().execute("SELECT name, threshold FROM concepts WHERE threshold IS NOT NULL").fetchall()
        return {str(n): float(t) for n, t in rows}

    def set_concept_threshold(self, concept_id: int, value: float | None) -> None:
        """Set (or, with None, clear) a concept's threshold."""
        self.db().execute("UPDATE concepts SET threshold = ? WHERE id = ?", [value, concept_id])

    def rename_concept(self, concept_id: int, new: str) -> None:
        """Give a concept a new (free) name."""
        self.db().execute("UPDATE concepts SET name = ? WHERE id = ?", [new, concept_id])
        self._concept_map = None

    def delete_concept(self, concept_id: int) -> int:
        """Remove a concept and its labels; returns how many labels went."""
        con = self.db()
        n = self.row("SELECT count(*) FROM labels WHERE concept_id = ?", [concept_id])[0]
        con.execute("DELETE FROM labels WHERE concept_id = ?", [concept_id])
        con.execute("DELETE FROM concepts WHERE id = ?", [concept_id])
        self._concept_map = None
        return int(n)

    def member_ids(self, space: str, name: str) -> np.ndarray:
        """Ids in ``space`` positively labelled with ``name`` (frames through their video), ascending."""
        rows = (
            self.db()
            .execute(
                "SELECT i.id FROM inputs i JOIN labels l ON l.input_id = coalesce(i.parent_id, i.id) "
                "JOIN concepts c ON c.id = l.concept_id WHERE c.name = ? AND l.positive AND i.space = ? ORDER BY i.id",
                [name, space],
            )
            .fetchall()
        )
        return np.array([r[0] for r in rows], dtype=np.int64)

    def list_inputs(
        self, *, concept_id: int | None, kind: str | None, limit: int, offset: int = 0, after: int = 0
    ) -> tuple[list[int], int]:
        """Ids of top-level inputs (not video frames) in id order, filtered by positive concept and kind, past id
        ``after`` and ``offset``; and how many match the filters in all."""
        where: list[str] = ["parent_id IS NULL"]
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if concept_id is not None:
            where.append("id IN (SELECT input_id FROM labels WHERE concept_id = ? AND positive)")
            params.append(concept_id)
        sql = " AND ".join(where)
        total = int(self.row(f"SELECT count(*) FROM inputs WHERE {sql}", params)[0])
        rows = (
            self.db()
            .execute(
                f"SELECT id FROM inputs WHERE {sql} AND id > ? ORDER BY id LIMIT ? OFFSET ?",
                [*params, after, limit, offset],
            )
            .fetchall()
        )
        return [int(r[0]) for r in rows], total

    def unlabelled_after(self, concept_id: int) -> int:
        """How many inputs would have no label left without this concept."""
        found = self.row(
            "SELECT count(*) FROM (SELECT input_id FROM labels GROUP BY input_id HAVING bool_and(concept_id = ?))",
            [concept_id],
        )
        return int(found[0])

    def labels_before(self, concept_ids: Sequence[int], before_id: int) -> bool:
        """Whether any of these concepts labels an input older than ``before_id``."""
        found = self.row(
            "SELECT count(*) FROM labels WHERE list_contains(?, concept_id) AND input_id < ?",
            [list(concept_ids), before_id],
        )
        return bool(found[0])

    # ------------------------------------------------------------- inputs
    def insert(self, items: Sequence[NewInput], marks_of: Sequence[Marks]) -> tuple[list[int], set[str]]:
        """Insert inputs, their labels, thumbnails and vectors (inside a transaction); returns
        ``(new ids, names of concepts created)``."""
        created: set[str] = set()
        concept_ids = self.concept_ids({n for marks in marks_of for n in marks}, create=True, created=created)
        ids = self._new_ids(len(items))
        self._insert_rows(ids, items, marks_of, concept_ids)
        return ids, created

    def _new_ids(self, n: int) -> list[int]:
        """``n`` new input ids, ascending, taken from the sequence :data:`ID_BLOCK` at a time (inside a
        transaction): an add of a few inputs then costs no statement for its ids. DuckDB's sequence is not
        rolled back with a transaction, but its value is written with the commit of the one that took it: ids
        left over from a committed write are safe to use later (a crash cannot hand them out again), those of a
        failed one are dropped (:meth:`forget`), and :meth:`close` gives the unused ones back."""
        if len(self._spare_ids) < n:
            take = max(ID_BLOCK, n - len(self._spare_ids))
            rows = self.db().execute("SELECT nextval('input_ids') FROM range(?)", [take]).fetchall()
            self._spare_ids += [int(r[0]) for r in rows]
        ids, self._spare_ids = self._spare_ids[:n], self._spare_ids[n:]
        return ids

    def _insert_rows(
        self, ids: list[int], items: Sequence[NewInput], marks_of: Sequence[Marks], concept_ids: dict[str, int]
    ) -> None:
        con = self.db()
        now = datetime.now(UTC).replace(tzinfo=None)  # created_at, in UTC
        # Each Arrow table is read by name by DuckDB's scan of the caller's variables: ~0.3 ms less per statement
        # than from_arrow(...).insert_into, which binds a relation first (an add is ~8 statements of ~1 ms), and
        # as fast for 20,000 rows.
        new_input_rows = pa.table(  # noqa: F841  (read by name in the SQL below)
            {
                "id": pa.array(ids, pa.int64()),
                "kind": [it.kind for it in items],
                "space": [it.space for it in items],
                "source": [it.source for it in items],
                "content_hash": [it.content_hash for it in items],
                "parent_id": pa.array([ids[it.parent] if it.parent is not None else None for it in items], pa.int64()),
                "frame_index": pa.array([it.frame_index for it in items], pa.int32()),
                "timestamp_s": pa.array([it.timestamp_s for it in items], pa.float64()),
                "text": [it.text for it in items],
                "metadata": [json.dumps(it.metadata) if it.metadata else None for it in items],
                "created_at": pa.array([now] * len(items), pa.timestamp("us")),
            }
        )
        con.execute("INSERT INTO inputs SELECT * FROM new_input_rows")  # every column, in the table's order
        labels = [(ids[i], concept_ids[n], pos) for i, marks in enumerate(marks_of) for n, pos in marks.items()]
        if labels:
            new_label_rows = pa.table(  # noqa: F841  (read by name in the SQL below)
                {
                    "input_id": pa.array([r[0] for r in labels], pa.int64()),
                    "concept_id": pa.array([r[1] for r in labels], pa.int64()),
                    "positive": pa.array([r[2] for r in labels], pa.bool_()),
                }
            )
            con.execute("INSERT INTO labels SELECT * FROM new_label_rows")
        thumbs = [(ids[i], it.thumbnail) for i, it in enumerate(items) if it.thumbnail]
        if thumbs:
            con.executemany("INSERT INTO thumbnails VALUES (?, ?)", thumbs)

    def export_rows(self, space: str, after: int, limit: int) -> pa.Table:
        """Up to ``limit`` inputs of ``space`` past id ``after``, in id order, each with its labels (concept
        names), thumbnail and vector: the rows of an export (see :mod:`vecclf.exchange`)."""
        return (
            self.db()
            .sql(
                "WITH page AS (SELECT * FROM inputs WHERE space = $space AND id > $after ORDER BY id LIMIT $limit) "
                "SELECT p.id, p.kind, p.space, p.source, p.content_hash, p.text, p.parent_id, p.frame_index, "
                "p.timestamp_s, p.metadata, "
                "coalesce(list(c.name ORDER BY c.name) FILTER (WHERE l.positive), []) AS concepts, "
                "coalesce(list(c.name ORDER BY c.name) FILTER (WHERE NOT l.positive), []) AS negatives, "
                "any_value(t.jpeg) AS thumbnail, any_value(v.vector) AS vector "
                f"FROM page p JOIN {schema.space_table(space)} v ON v.id = p.id "
                "LEFT JOIN labels l ON l.input_id = p.id LEFT JOIN concepts c ON c.id = l.concept_id "
                "LEFT JOIN thumbnails t ON t.id = p.id "
                "GROUP BY ALL ORDER BY p.id",
                params={"space": space, "after": after, "limit": limit},
            )
            .to_arrow_table()
        )

    def export_concepts(self) -> pa.Table:
        """Every concept with its threshold (None: learned)."""
        return self.db().sql("SELECT name, threshold FROM concepts ORDER BY name").to_arrow_table()

    def insert_vectors(self, space: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert one space's vectors (inside a transaction)."""
        # A relation, not a table read by name as in _insert_rows: that scan read a fixed-size list column 5x as
        # slowly (20,000 vectors: 1.27 s vs 0.25 s).
        self.db().from_arrow(_vector_table(ids, vectors)).insert_into(schema.space_table(space))

    def with_frames(self, ids: Sequence[int]) -> tuple[set[int], list[tuple[int, str]]]:
        """``(ids that exist, [(id, space)] of them and their videos' frames)``, ascending."""
        con = self.db()
        con.register("del_ids", pa.table({"id": pa.array(list(ids), pa.int64())}))
        try:
            present = {int(r[0]) for r in con.execute("SELECT id FROM inputs JOIN del_ids USING (id)").fetchall()}
            rows = con.execute(
                "SELECT id, space FROM inputs WHERE id IN (SELECT id FROM del_ids) "
                "OR parent_id IN (SELECT id FROM del_ids) ORDER BY id"
            ).fetchall()
        finally:
            con.unregister("del_ids")
        return present, [(int(i), str(s)) for i, s in rows]

    def delete(self, ids: Sequence[int], spaces: Iterable[str], model_key: str) -> None:
        """Delete inputs with their labels, thumbnails and vectors (inside a transaction).

        A deleted input's vector moves to the embedding cache: adding the same content again needs no embedding.
        """
        con = self.db()
        con.register("del_all", pa.table({"id": pa.array(list(ids), pa.int64())}))
        try:
            con.execute("DELETE FROM labels WHERE input_id IN (SELECT id FROM del_all)")
            con.execute("DELETE FROM thumbnails WHERE id IN (SELECT id FROM del_all)")
            for space in spaces:
                con.execute(
                    f"INSERT INTO {schema.space_table(space, 'cache')} SELECT DISTINCT ON (i.content_hash) ?, "
                    f"i.content_hash, v.vector FROM inputs i JOIN {schema.space_table(space)} v ON v.id = i.id "
                    "WHERE i.id IN (SELECT id FROM del_all) ON CONFLICT DO NOTHING",
                    [model_key],
                )
                con.execute(f"DELETE FROM {schema.space_table(space)} WHERE id IN (SELECT id FROM del_all)")
            con.execute("DELETE FROM inputs WHERE id IN (SELECT id FROM del_all)")
        finally:
            con.unregister("del_all")

    def top_level_by_hash(self, space: str, hashes: Sequence[str]) -> dict[str, int]:
        """Stored top-level inputs (not frames) of ``space`` with these content hashes: hash -> lowest id."""
        rows = (
            self.db()
            .execute(
                "SELECT content_hash, min(id) FROM inputs WHERE space = ? AND parent_id IS NULL "
                "AND content_hash = ANY(?) GROUP BY content_hash",
                [space, list(set(hashes))],
            )
            .fetchall()
        )
        return {str(h): int(i) for h, i in rows}

    def content_hashes(self, space: str) -> list[str]:
        """The content hashes of every stored top-level input (not frames) of ``space``."""
        rows = self.db().sql(
            "SELECT content_hash FROM inputs WHERE space = $space AND parent_id IS NULL", params={"space": space}
        )
        return [str(h) for h in rows.to_arrow_table().column(0).to_pylist()]

    def top_level(self, ids: Sequence[int]) -> set[int]:
        """Those of ``ids`` that are stored top-level inputs (not video frames)."""
        rows = self.db().execute("SELECT id FROM inputs WHERE id = ANY(?) AND parent_id IS NULL", [list(ids)])
        return {int(r[0]) for r in rows.fetchall()}

    def labels_of(self, ids: Sequence[int]) -> dict[int, dict[str, bool]]:
        """Each input's labels: concept name -> positive."""
        rows = (
            self.db()
            .execute("SELECT input_id, concept_id, positive FROM labels WHERE input_id = ANY(?)", [list(ids)])
            .fetchall()
        )
        name_of = {i: name for name, i in self.concepts_by_name().items()}
        out: dict[int, dict[str, bool]] = {}
        for input_id, concept_id, positive in rows:
            out.setdefault(int(input_id), {})[name_of[concept_id]] = bool(positive)
        return out

    def set_labels(self, ids: Sequence[int], concept_id: int, positive: bool) -> None:
        """Label inputs with a concept, replacing any earlier label for it."""
        self.db().executemany(
            "INSERT INTO labels VALUES (?, ?, ?) ON CONFLICT (input_id, concept_id) DO UPDATE SET positive = excluded.positive",
            [(int(i), concept_id, positive) for i in ids],
        )

    def spaces_of(self, ids: Sequence[int]) -> dict[int, str]:
        """The space of each of these inputs that exists."""
        rows = self.db().execute("SELECT id, space FROM inputs WHERE id = ANY(?)", [list(ids)]).fetchall()
        return {int(i): str(s) for i, s in rows}

    def records(self, wanted: Sequence[int]) -> dict[int, InputRecord]:
        """Records of these ids that exist."""
        # Plain lookups, names from the concept map: a join (+ GROUP BY) costs 2-3x more for a few ids.
        rows = (
            self.db()
            .execute(
                "SELECT id, kind, space, source, text, parent_id, frame_index, timestamp_s FROM inputs "
                "WHERE id = ANY(?)",
                [list(wanted)],
            )
            .fetchall()
        )
        roots = sorted({int(r[5] if r[5] is not None else r[0]) for r in rows})
        labels = (
            self.db()
            .execute("SELECT input_id, concept_id, positive FROM labels WHERE input_id = ANY(?)", [roots])
            .fetchall()
        )
        name_of = {i: name for name, i in self.concepts_by_name().items()}
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

    def label_view(self, space: str) -> LabelView:
        """Every label of ``space`` read afresh into a view (at the current generation)."""
        con = self.db()
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
            known = (col < len(classes)) & (np.array(classes, dtype=object)[np.minimum(col, len(classes) - 1)] == names)
            matrix[row[known], col[known]] = np.where(positive[known], 1, -1)
        keep = np.abs(matrix).sum(axis=1) > 0
        gen = self.generation(space)
        return LabelView(
            generation=gen,
            ids=np.asarray(idr["id"], dtype=np.int64),
            roots=np.asarray(idr["root"], dtype=np.int64),
            classes=classes,
            label_roots=label_roots[keep].astype(np.int64),
            matrix=matrix[keep],
            base_generation=gen,
        )

    # ------------------------------------------------------------- vectors
    def vectors(
        self, space: str, dim: int, ids: Sequence[int] | None = None, *, after: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of a space sorted by id: those asked for that exist, or all with an id above ``after``."""
        table = schema.space_table(space)
        if ids is None:
            res = (
                self.db()
                .sql(f"SELECT id, vector FROM {table} WHERE id > $after ORDER BY id", params={"after": after})
                .to_arrow_table()
            )
        else:
            res = (
                self.db()
                .sql(f"SELECT id, vector FROM {table} WHERE id = ANY($ids) ORDER BY id", params={"ids": list(ids)})
                .to_arrow_table()
            )
        return res.column("id").to_numpy().astype(np.int64), _vectors_of(res, dim)

    def vector_count(self, space: str) -> int:
        """Vectors stored in ``space``."""
        return int(self.row(f"SELECT count(*) FROM {schema.space_table(space)}")[0])

    def cache_count(self, space: str) -> int:
        """Vectors kept in ``space``'s embedding cache (those of deleted inputs)."""
        return int(self.row(f"SELECT count(*) FROM {schema.space_table(space, 'cache')}")[0])

    def cached_vectors(self, space: str, dim: int, hashes: Sequence[str], model_key: str) -> dict[str, np.ndarray]:
        """Vectors of this embedder for these content hashes: stored inputs first, then deleted inputs' cache."""
        con = self.db()
        con.register("wanted_hashes", pa.table({"content_hash": list(set(hashes))}))
        try:
            res = con.sql(
                f"SELECT i.content_hash, v.vector FROM inputs i JOIN wanted_hashes w USING (content_hash) "
                f"JOIN {schema.space_table(space)} v ON v.id = i.id WHERE i.space = $space "
                f"UNION ALL SELECT c.content_hash, c.vector FROM {schema.space_table(space, 'cache')} c "
                "JOIN wanted_hashes w USING (content_hash) WHERE c.model = $model",
                params={"space": space, "model": model_key},
            ).to_arrow_table()
        finally:
            con.unregister("wanted_hashes")
        if res.num_rows == 0:
            return {}
        return dict(zip(res.column("content_hash").to_pylist(), _vectors_of(res, dim)))

    # ------------------------------------------------------------- heads, thumbnails, summary
    def save_head(self, space: str, generation: int, meta: str, arrays: dict[str, np.ndarray]) -> None:
        """Persist a trained head (``.npz`` weights, no pickle), replacing the previous one."""
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        self.db().execute(
            "INSERT INTO heads (space, generation, meta, weights) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (space) DO UPDATE SET generation = excluded.generation, meta = excluded.meta, "
            "weights = excluded.weights, trained_at = now()",
            [space, generation, meta, buf.getvalue()],
        )
        self._head_gens[space] = generation

    def head_generation(self, space: str) -> int | None:
        """The generation the stored head of ``space`` was trained at, or None (no weights read)."""
        if space not in self._head_gens:
            found = self.row("SELECT generation FROM heads WHERE space = ?", [space])
            self._head_gens[space] = None if found is None else int(found[0])
        return self._head_gens[space]

    def load_head(self, space: str) -> tuple[int, str, dict[str, np.ndarray], str] | None:
        """``(generation, meta JSON, arrays, trained_at)`` of the stored head, or None."""
        found = self.row("SELECT generation, meta, weights, trained_at FROM heads WHERE space = ?", [space])
        if found is None:
            return None
        with np.load(io.BytesIO(found[2]), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return int(found[0]), found[1], arrays, str(found[3])

    def thumbnail(self, input_id: int) -> bytes | None:
        """The stored JPEG thumbnail of an input, or None."""
        found = self.row("SELECT jpeg FROM thumbnails WHERE id = ?", [input_id])
        return None if found is None else bytes(found[0])

    def counts(self) -> tuple[dict[str, int], int]:
        """``({input kind: count}, number of concepts)``."""
        kinds = dict(self.db().execute("SELECT kind, count(*) FROM inputs GROUP BY kind ORDER BY kind").fetchall())
        return {str(k): int(v) for k, v in kinds.items()}, int(self.row("SELECT count(*) FROM concepts")[0])
