"""Parquet in and out of a store: precomputed vectors, exports (backup and migration) and their import.

One row layout serves ``vecclf embed`` output, ``vecclf export`` and ``vecclf import``: an input's kind,
space, source, content hash, text, parent (a video's frames point at the video's ``id`` in the same files),
frame position, metadata, positive and negative concept names, thumbnail, and its vector in the column of
its space, ``vector_<space>`` (a fixed-size list of float32; the other spaces' columns are null). Every
file's schema metadata holds the embedder's identity and spaces under ``vecclf``, so an import can refuse
vectors made by another model before reading a row.

An export is a folder: ``rows/<space>-NNNNN.parquet`` (id order), ``concepts.parquet`` (every concept and
its threshold), ``heads.parquet`` (trained heads) and ``manifest.json`` (the header and row counts).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .embed import Progress
from .errors import InvalidInputError, ModelMismatchError, StoreError
from .ingest import AddReport
from .inputs import Failure
from .labels import check_concept_name
from .store import NewInput, Store

FORMAT = 1
META_KEY = b"vecclf"
SHARD_ROWS = 50_000
"""Rows per Parquet file an export writes."""
READ_ROWS = 16384
"""Rows read, checked and stored together on import."""
MANIFEST = "manifest.json"
IMPORT_COLUMNS = ("source", "kind", "space", "content_hash")  # what a row needs to be stored; the rest may be absent


def header(spec: dict[str, Any], identity: dict[str, Any], spaces: dict[str, int]) -> dict[str, Any]:
    """What every file says about the vectors in it."""
    return {"format": FORMAT, "spec": spec, "identity": identity, "spaces": dict(spaces)}


def row_schema(head: dict[str, Any]) -> pa.Schema:
    """The row layout for an embedder with ``head["spaces"]``, its header in the schema metadata."""
    fields = [
        pa.field("id", pa.int64()),
        pa.field("kind", pa.string()),
        pa.field("space", pa.string()),
        pa.field("source", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("text", pa.string()),
        pa.field("parent_id", pa.int64()),
        pa.field("frame_index", pa.int32()),
        pa.field("timestamp_s", pa.float64()),
        pa.field("metadata", pa.string()),
        pa.field("concepts", pa.list_(pa.string())),
        pa.field("negatives", pa.list_(pa.string())),
        pa.field("thumbnail", pa.binary()),
        pa.field("error", pa.string()),  # why an input could not be embedded (its row has no vector)
    ]
    fields += [pa.field(f"vector_{s}", pa.list_(pa.float32(), int(d))) for s, d in sorted(head["spaces"].items())]
    return pa.schema(fields, metadata={META_KEY: json.dumps(head, sort_keys=True).encode()})


def _vector_column(rows: Sequence[Any], space: str, dim: int, get: Any) -> pa.Array:
    mine = [i for i, r in enumerate(rows) if r.space == space]
    flat = np.zeros((len(rows), dim), dtype=np.float32)
    if mine:
        flat[mine] = np.stack([np.asarray(get(rows[i]), dtype=np.float32) for i in mine])
    valid = np.zeros(len(rows), dtype=bool)
    valid[mine] = True
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), dim, mask=pa.array(~valid))


def rows_table(rows: Sequence[NewInput], ids: Sequence[int], head: dict[str, Any]) -> pa.Table:
    """``rows`` as a table in :func:`row_schema` (``ids``: each row's id; a frame's parent is its batch index)."""
    schema = row_schema(head)
    for r in rows:
        if r.space not in head["spaces"]:
            raise InvalidInputError(f"space {r.space!r} is not one of this embedder's {sorted(head['spaces'])}")
    columns: dict[str, Any] = {
        "id": list(ids),
        "kind": [r.kind for r in rows],
        "space": [r.space for r in rows],
        "source": [r.source for r in rows],
        "content_hash": [r.content_hash for r in rows],
        "text": [r.text for r in rows],
        "parent_id": [ids[r.parent] if r.parent is not None else None for r in rows],
        "frame_index": [r.frame_index for r in rows],
        "timestamp_s": [r.timestamp_s for r in rows],
        "metadata": [json.dumps(r.metadata) if r.metadata else None for r in rows],
        "concepts": [list(r.concepts) for r in rows],
        "negatives": [list(r.negatives) for r in rows],
        "thumbnail": [r.thumbnail for r in rows],
        "error": [None] * len(rows),
    }
    for space, dim in sorted(head["spaces"].items()):
        columns[f"vector_{space}"] = _vector_column(rows, space, int(dim), lambda r: r.vector)
    return pa.Table.from_pydict(columns, schema=schema)


def parquet_files(path: str | Path) -> list[Path]:
    """The Parquet files of ``path``: the file itself, or every ``*.parquet`` under a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        root = p / "rows" if (p / MANIFEST).is_file() else p
        files = sorted(f for f in root.rglob("*.parquet") if f.is_file())
        if files:
            return files
        raise InvalidInputError(f"no .parquet files in {p}")
    raise InvalidInputError(f"{p} does not exist")


def is_parquet(path: str | Path) -> bool:
    """Whether ``path`` is a Parquet file, an export or a folder of Parquet files."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".parquet"
    return p.is_dir() and ((p / MANIFEST).is_file() or any(p.glob("*.parquet")))


def read_header(path: str | Path) -> dict[str, Any]:
    """The header every file of ``path`` carries (they must agree)."""
    found: dict[str, Any] | None = None
    for f in parquet_files(path):
        try:
            meta = pq.read_schema(f).metadata or {}
        except (OSError, pa.ArrowInvalid) as exc:
            raise InvalidInputError(f"{f.name} is not a readable Parquet file: {exc}") from exc
        if META_KEY not in meta:
            raise InvalidInputError(f"{f.name} has no vecclf header: write it with `vecclf embed` or `vecclf export`")
        try:
            head = json.loads(meta[META_KEY])
        except ValueError as exc:
            raise InvalidInputError(f"{f.name} has an unreadable vecclf header") from exc
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise InvalidInputError(f"{f.name}: unsupported vecclf Parquet format {head.get('format')!r}")
        if found is not None and (head["identity"], head["spaces"]) != (found["identity"], found["spaces"]):
            raise ModelMismatchError(f"{f.name} was embedded by another model than the files before it")
        found = found or head
    assert found is not None
    return found


def check_columns(path: str | Path, head: dict[str, Any], required: Sequence[str]) -> list[str]:
    """Refuse files that lack one of ``required`` or a vector column of the header's spaces; returns the
    optional columns (``error``, ``id``, ``parent_id``...) that every file has."""
    vectors = [f"vector_{s}" for s in sorted(head["spaces"])]
    common: set[str] | None = None
    for f in parquet_files(path):
        names = set(pq.read_schema(f).names)
        missing = [c for c in (*required, *vectors) if c not in names]
        if missing:
            raise InvalidInputError(
                f"{f.name} lacks the column(s) {', '.join(missing)}: write it with `vecclf embed` or `vecclf export`"
            )
        common = names if common is None else common & names
    return sorted((common or set()) - {*required, *vectors})


def check_compatible(head: dict[str, Any], store: Store) -> None:
    """Refuse vectors of another embedder, or of other dimensions, than the store's."""
    if head["identity"] != store.identity:
        raise ModelMismatchError(
            f"these vectors were made by {_model_name(head['identity'])}, this store embeds with "
            f"{_model_name(store.identity)}: import them into a store made for that model"
        )
    for space, dim in head["spaces"].items():
        if store.spaces.get(space) != int(dim):
            raise ModelMismatchError(
                f"space {space!r} has dimension {dim} in the files, {store.spaces.get(space)} here"
            )


def _model_name(identity: dict[str, Any]) -> str:
    name = identity.get("model") or identity.get("preset") or identity.get("kind") or "another model"
    return f"{name!s} ({json.dumps(identity, sort_keys=True)[:120]})"


def count_rows(path: str | Path) -> int:
    """Rows (frames included) in the files of ``path``, from their footers."""
    total = 0
    for f in parquet_files(path):
        total += pq.ParquetFile(f).metadata.num_rows
    return total


class Refused(NamedTuple):
    """A row that cannot be stored: where it came from and why."""

    source: str
    reason: str


def read_batches(path: str | Path, head: dict[str, Any], rows: int = READ_ROWS) -> Iterator[list[NewInput | Refused]]:
    """Batches of rows as :class:`NewInput` (or :class:`Refused`), a video kept with its frames in one batch
    so that they can point at it."""
    spaces = {s: int(d) for s, d in head["spaces"].items()}
    pending: list[dict[str, Any]] = []
    where = ""
    for f in parquet_files(path):
        where = f.name
        reader = pq.ParquetFile(f)
        for batch in reader.iter_batches(batch_size=rows):
            pending += _records(batch, spaces)
            while len(pending) > rows:
                cut = _cut(pending, rows)
                if cut == 0:
                    break
                yield _as_inputs(pending[:cut], spaces, f.name)
                pending = pending[cut:]
    if pending:
        yield _as_inputs(pending, spaces, where)


def _records(batch: pa.RecordBatch, spaces: dict[str, int]) -> list[dict[str, Any]]:
    """A batch's rows as dicts, its vector columns read as numpy in one go (a Python float per element would
    cost more than storing the row)."""
    vectors = {}
    for space, dim in spaces.items():
        name = f"vector_{space}"
        if name in batch.schema.names:
            vectors[name] = vector_rows(batch.column(name), dim)
    records = batch.drop_columns(list(vectors)).to_pylist() if vectors else batch.to_pylist()
    for name, rows in vectors.items():
        for record, row in zip(records, rows, strict=True):
            record[name] = row
    return records


def vector_rows(column: pa.Array, dim: int) -> list[Any]:
    """One entry per row: a float32 array of its vector when it has ``dim`` finite values (checked here, for the
    whole batch at once), else the row as it was written (None, a list), for :func:`_as_input` to refuse."""
    if not (pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type)) or not pa.types.is_floating(
        column.type.value_type
    ):
        return column.to_pylist()
    n = len(column)
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[valid] = pc.list_value_length(column).to_numpy(zero_copy_only=False)[valid]
    if not np.all(lengths[valid] == dim):
        return column.to_pylist()  # rare: let each row be checked (and refused) on its own
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    finite = np.asarray(np.isfinite(flat).all(axis=1), dtype=bool)
    out: list[Any] = [None] * n
    for i, row, ok in zip(np.flatnonzero(valid), flat, finite, strict=True):
        out[i] = row if ok else row.tolist()
    return out


def _cut(pending: list[dict[str, Any]], rows: int) -> int:
    """The last place at or before ``rows`` where a top-level input starts (frames stay with their video)."""
    for cut in range(rows, 0, -1):
        if pending[cut].get("parent_id") is None:
            return cut
    return 0


def _as_inputs(records: list[dict[str, Any]], spaces: dict[str, int], where: str) -> list[NewInput | Refused]:
    at: dict[int, int] = {}
    out: list[NewInput | Refused] = []
    for n, r in enumerate(records):
        name = r.get("source") or f"{where} row id {r.get('id')}"
        try:
            item = _as_input(r, spaces, at)
        except (InvalidInputError, KeyError, TypeError, ValueError) as exc:
            out.append(Refused(str(name), str(exc)))
            continue
        if r.get("id") is not None:
            at[int(r["id"])] = n
        out.append(item)
    return out


def _as_input(r: dict[str, Any], spaces: dict[str, int], at: dict[int, int]) -> NewInput:
    if r.get("error"):
        raise InvalidInputError(f"it was not embedded ({r['error']})")
    space = r["space"]
    if space not in spaces:
        raise InvalidInputError(f"space {space!r} is not in the header")
    vector = r.get(f"vector_{space}")
    if vector is None:
        raise InvalidInputError(f"no vector in column vector_{space}")
    if not isinstance(vector, np.ndarray):  # arrays come from vector_rows, already checked
        try:
            v = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            v = np.empty(0, dtype=np.float32)
        if v.shape != (spaces[space],) or not np.isfinite(v).all():
            raise InvalidInputError(f"the vector must be {spaces[space]} finite floats")
        vector = v
    parent = None
    if r.get("parent_id") is not None:
        if int(r["parent_id"]) not in at:
            raise InvalidInputError(f"its video (id {r['parent_id']}) is not in the files before it")
        parent = at[int(r["parent_id"])]
    if not isinstance(r.get("content_hash"), str) or not r["content_hash"]:
        raise InvalidInputError("no content hash")
    kind = r.get("kind")
    if kind not in KINDS or (kind == "frame") != (parent is not None):
        raise InvalidInputError(f"kind {kind!r} is not one of {', '.join(KINDS)} (a frame needs its video)")
    return NewInput(
        kind=kind,
        space=space,
        content_hash=r["content_hash"],
        vector=vector,
        source=_typed(r, "source", str),
        text=_typed(r, "text", str),
        parent=parent,
        frame_index=_typed(r, "frame_index", int),
        timestamp_s=_typed(r, "timestamp_s", float),
        metadata=_metadata(r.get("metadata")),
        concepts=_names(r, "concepts"),
        negatives=_names(r, "negatives"),
        thumbnail=_typed(r, "thumbnail", bytes),
    )


KINDS = ("image", "text", "video", "frame")


def _typed(r: dict[str, Any], column: str, kind: type) -> Any:
    """The row's value for ``column`` when it is None or of ``kind`` (a file written by another tool may
    carry the column with another type: refused, not stored as something else)."""
    value = r.get(column)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise InvalidInputError(f"column {column} must hold {kind.__name__} values, not {type(value).__name__}")
    return value


def _names(r: dict[str, Any], column: str) -> tuple[str, ...]:
    value = r.get(column) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(c, str) for c in value):
        raise InvalidInputError(f"column {column} must hold lists of concept names")
    return tuple(check_concept_name(c) for c in value)


def _metadata(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    try:
        out = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise InvalidInputError("column metadata must hold JSON objects")
    return out


def import_parquet(
    store: Store, path: str | Path, *, progress: Progress | None = None, keep_duplicates: bool = False
) -> AddReport:
    """Store the rows of Parquet files (``vecclf embed`` output or an export) without embedding anything.

    The header is checked against the store first; rows are stored :data:`READ_ROWS` at a time (duplicates
    as :meth:`Store.write` treats them); a row that cannot be stored is a failure of its own. An export's
    concepts (with their thresholds) and, on a store that had no inputs, its fresh heads come along.
    """
    head = read_header(path)
    check_compatible(head, store)
    check_columns(path, head, IMPORT_COLUMNS)
    was_empty = store.count() == 0
    report = AddReport()
    try:
        for batch in read_batches(path, head):
            good = [r for r in batch if isinstance(r, NewInput)]
            for bad in (r for r in batch if isinstance(r, Refused)):
                report.failures.append(_failure(bad.source, bad.reason))
            report.stored(good, store.write(good, keep_duplicates=keep_duplicates))
            if progress is not None:
                progress(len(batch))
    except StoreError as exc:
        if not (report.added or report.duplicates):
            raise
        report.error = str(exc)
        return report
    root = Path(path)
    if root.is_dir() and (root / MANIFEST).is_file():
        _import_extras(store, root, was_empty)
    return report


def _failure(source: str, reason: str) -> Failure:
    return Failure(source, f"{source}: {reason}", InvalidInputError(reason))


def _import_extras(store: Store, root: Path, heads_too: bool) -> None:
    """An export's concepts (thresholds included) and, into a store that was empty, its heads that were fresh."""
    concepts = pq.read_table(root / "concepts.parquet").to_pylist() if (root / "concepts.parquet").is_file() else []
    store.create_concepts([check_concept_name(c["name"]) for c in concepts])
    for c in concepts:
        if c["threshold"] is not None:
            store.set_threshold(c["name"], float(c["threshold"]))
    if heads_too and (root / "heads.parquet").is_file():
        for h in pq.read_table(root / "heads.parquet").to_pylist():
            if h["space"] in store.spaces and h["fresh"]:
                with np.load(io.BytesIO(h["weights"]), allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                store.save_head(h["space"], store.generation(h["space"]), h["meta"], arrays)


def export_store(store: Store, out: str | Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Write the whole store to ``out`` (a new or empty folder) as Parquet; returns the manifest."""
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InvalidInputError(f"{root} is not an empty folder: export into a new one")
    (root / "rows").mkdir(parents=True, exist_ok=True)
    head = header(store.spec, store.identity, store.spaces)
    schema = row_schema(head)
    counts: dict[str, int] = {}
    with store.reading():  # one consistent view for the whole export
        for space in sorted(store.spaces):
            counts[space] = 0
            for shard, table in enumerate(_pages(store, space)):
                pq.write_table(_as_rows(table, space, schema), root / "rows" / f"{space}-{shard:05d}.parquet")
                counts[space] += table.num_rows
                if progress is not None:
                    progress(table.num_rows)
        pq.write_table(store.export_concepts(), root / "concepts.parquet")
        heads = []
        for space in sorted(store.spaces):
            found = store.load_head(space)
            if found is not None:
                generation, meta, arrays, _ = found
                buf = io.BytesIO()
                np.savez(buf, **arrays)  # type: ignore[arg-type]
                fresh = generation == store.generation(space)
                heads.append({"space": space, "meta": meta, "weights": buf.getvalue(), "fresh": fresh})
        schema_heads = pa.schema(
            [("space", pa.string()), ("meta", pa.string()), ("weights", pa.binary()), ("fresh", pa.bool_())]
        )
        pq.write_table(pa.Table.from_pylist(heads, schema=schema_heads), root / "heads.parquet")
    manifest = head | {
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": counts,
        "index_kind": store.index_kind,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _pages(store: Store, space: str) -> Iterable[pa.Table]:
    after = 0
    while True:
        table = store.export_rows(space, after, SHARD_ROWS)
        if table.num_rows == 0:
            return
        yield table
        after = int(table.column("id")[-1].as_py())


def _as_rows(table: pa.Table, space: str, schema: pa.Schema) -> pa.Table:
    """A page from the catalogue in the row layout (its vectors in their space's column, the others null)."""
    n = table.num_rows
    columns = []
    for field in schema:
        if field.name.startswith("vector_"):
            if field.name == f"vector_{space}":
                columns.append(table.column("vector").combine_chunks().cast(field.type))
            else:
                columns.append(pa.nulls(n, field.type))
        elif field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def store_from(path: str | Path, target: str | Path) -> Store:
    """A new store at ``target`` made for the embedder that the Parquet files of ``path`` name."""
    head = read_header(path)
    check_columns(path, head, IMPORT_COLUMNS)  # no store is made for files that cannot be imported
    root = Path(path)
    index = "auto"
    if root.is_dir() and (root / MANIFEST).is_file():
        index = json.loads((root / MANIFEST).read_text()).get("index_kind", "auto")
    return Store.create(target, spec=head["spec"], identity=head["identity"], spaces=head["spaces"], index=index)
