"""One space's FAISS index in memory: load (verified against DuckDB), search, add, remove, save, rebuild.

An IVF index also keeps a *fresh tier*: the vectors added since its cells were trained, in a small
exact index searched beside the cells (results merged). A brand-new concept unlike anything seen at
training time scatters over cells a query does not probe; the fresh tier finds all of it at once.

An IVF index also remembers which cells the vectors it last looked up fall in. Finding them reads every
centroid (8 MB at 1M vectors: about as long as scanning the cells), and an add looks up the same vectors
three times in a row: its duplicate check, the add itself, and the search for their nearest impostors that
the next prediction's thresholds make.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import IndexSaveError
from . import index as kinds

VectorReader = Callable[..., tuple[np.ndarray, np.ndarray]]
"""``read(ids=None, after=0) -> (ids, vectors)`` from the catalogue."""

REMEMBERED_CELLS = 4096  # vectors whose IVF cells are remembered; a search or add of more at once is FAISS's own
_COPY_CELLS = 2  # cells searched for a copy of a vector (see SpaceIndex.nearest_copies)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpaceIndex:
    """The FAISS index of one space (keyed by input id) and, for IVF, its fresh tier."""

    def __init__(self, index: faiss.Index, dim: int, trained_through: int, fresh: faiss.Index | None) -> None:
        self.index = index
        self.dim = dim
        self.trained_through = trained_through  # the last id the IVF cells were trained with
        self.fresh = fresh
        self._ivf = faiss.extract_index_ivf(index) if kinds.kind_of(index) == "ivf" else None
        if self._ivf is not None:
            # Each query's cells split between threads, inside search_preassigned too (FAISS's default splits
            # queries, and only in its own search: a search whose cells are given ran on one thread, ~1.5x as
            # long, and a single query always did).
            self._ivf.parallel_mode = 2
        self._cells: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}  # vector bytes -> (similarities, cells)
        self._cells_lock = threading.Lock()  # readers search at once

    # ------------------------------------------------------------- making
    @classmethod
    def build(cls, kind: str, dim: int, read: VectorReader) -> SpaceIndex:
        """A new index of ``kind`` from every stored vector (IVF cells trained afresh)."""
        ids, vectors = read()
        index = kinds.build(kind, dim, ids, vectors)
        return cls._tracked(index, dim, int(ids[-1]) if len(ids) else 0, read)

    @classmethod
    def load(cls, path: Path, record: dict[str, Any], *, count: int, dim: int, read: VectorReader) -> SpaceIndex | None:
        """The saved index if it matches the catalogue (``record``: generation checked by the caller,
        count, checksum), else None: a stale, torn or missing file is rebuilt instead of answering wrongly."""
        if record.get("ntotal") != count or not path.is_file():
            return None
        try:
            if file_sha256(path) != record.get("sha256"):
                return None
            loaded = faiss.read_index(str(path))
        except (RuntimeError, OSError):
            return None
        if loaded.ntotal != count or loaded.d != dim:
            return None
        return cls._tracked(loaded, dim, record.get("trained_through"), read)

    @classmethod
    def _tracked(cls, index: faiss.Index, dim: int, trained_through: int | None, read: VectorReader) -> SpaceIndex:
        if kinds.kind_of(index) != "ivf":  # other kinds have no cells to miss new vectors
            return cls(index, dim, trained_through or 0, None)
        if trained_through is None:  # an IVF index saved before fresh vectors were tracked: all count as trained
            ids, _ = read()
            trained_through = int(ids[-1]) if len(ids) else 0
        fresh = kinds.build("flat", dim, *read(after=trained_through))
        return cls(index, dim, trained_through, fresh)

    # ------------------------------------------------------------- reading
    @property
    def ntotal(self) -> int:
        """Vectors held."""
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        """The concrete index kind."""
        return kinds.kind_of(self.index)

    @property
    def untrained(self) -> int | None:
        """Vectors added since the IVF cells were trained (None for kinds without cells)."""
        return None if self.fresh is None else int(self.fresh.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` over everything held (cells and fresh tier merged); FAISS's ``-1`` padding kept."""
        ivf = self._ivf
        if ivf is None or len(queries) > REMEMBERED_CELLS:
            return self._with_fresh(kinds.search(self.index, queries, k), queries, k)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        sims, cells = self._assigned(queries)
        return self._with_fresh(self._scan(queries, k, cells, sims), queries, k)

    def nearest_copies(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's nearest held vector, looked for only where a (near-)identical copy can be: for IVF,
        the two cells nearest the query (a copy's cell is its nearest, and a copy this close to the query is
        nearest to the same cell or, on a boundary, to the next) and the fresh tier; other kinds search all.

        Checking a write's vectors for duplicates this way reads 2 cells per vector instead of ``nprobe``.
        """
        ivf = self._ivf
        if ivf is None:
            return self.search(queries, 1)
        if ivf.nprobe <= _COPY_CELLS or len(queries) > REMEMBERED_CELLS:
            params = faiss.SearchParametersIVF(nprobe=min(_COPY_CELLS, ivf.nlist))  # type: ignore[call-arg]
            return self._with_fresh(self.index.search(queries, 1, params=params), queries, 1)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        sims, cells = self._assigned(queries)
        near = cells.copy()
        near[:, _COPY_CELLS:] = -1  # FAISS skips a cell number below 0
        return self._with_fresh(self._scan(queries, 1, near, sims), queries, 1)

    def _scan(self, queries: np.ndarray, k: int, cells: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's top-``k`` of each query among the vectors of its ``cells`` (``sims``: its similarity to them)."""
        ivf: Any = self._ivf  # FAISS's stubs type the C++ signature, not the Python wrapper called here
        found: tuple[np.ndarray, np.ndarray] = ivf.search_preassigned(queries, k, cells, sims)
        return found

    def _assigned(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's ``nprobe`` nearest cells, best first: ``(similarities, cell numbers)``, remembered for
        the last :data:`REMEMBERED_CELLS` vectors looked up."""
        ivf = self._ivf
        assert ivf is not None
        keys = [row.tobytes() for row in queries]
        sims = np.empty((len(queries), ivf.nprobe), np.float32)
        cells = np.empty((len(queries), ivf.nprobe), np.int64)
        missing = []
        with self._cells_lock:
            for i, key in enumerate(keys):
                held = self._cells.get(key)
                if held is not None and len(held[1]) == ivf.nprobe:
                    sims[i], cells[i] = held
                else:
                    missing.append(i)
        if missing:
            sims[missing], cells[missing] = kinds.search(
                faiss.downcast_index(ivf.quantizer), queries[missing], ivf.nprobe
            )
            with self._cells_lock:
                for i in missing:
                    self._cells[keys[i]] = (sims[i].copy(), cells[i].copy())
                for old in list(self._cells)[: max(0, len(self._cells) - REMEMBERED_CELLS)]:
                    del self._cells[old]
        return sims, cells

    def _with_fresh(
        self, cells: tuple[np.ndarray, np.ndarray], queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A search's top-``k`` merged with the fresh tier's (IVF), or as it is."""
        if self.fresh is None or not self.fresh.ntotal:
            return cells
        return kinds.merge_top_k(cells, kinds.search(self.fresh, queries, min(k, self.fresh.ntotal)), k)

    def search_among(
        self, queries: np.ndarray, k: int, subset: np.ndarray, exact: Callable[[], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` among the ids ``subset`` only (filtered before ranking).

        An approximate index may not visit the cells holding a small subset, so IVF ranks the subset's
        vectors (``exact()``) exactly.
        """
        if self.kind == "ivf":
            subset_ids, vectors = exact()
            return kinds.exact_top_k(queries, vectors, subset_ids, k)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(subset, dtype=np.int64)))  # type: ignore[call-arg]
        return self.index.search(queries, k, params=params)

    def reconstruct(self, input_id: int) -> np.ndarray:
        """One stored vector (exact for flat and IVF; decoded for fp16 and sq8)."""
        return np.asarray(self.index.reconstruct(int(input_id)), dtype=np.float32)

    def exact_copies(self, wanted: np.ndarray) -> np.ndarray | None:
        """The vectors of ``wanted`` (unique, ascending) from an exact copy in memory (a flat index or the
        fresh tier) when every one of them is there, else None."""
        for index in (self.fresh, self.index):
            if index is not None and len(wanted) and kinds.kind_of(index) == "flat":
                try:
                    return np.asarray(index.reconstruct_batch(wanted), dtype=np.float32)
                except RuntimeError:  # an id it does not hold
                    continue
        return None

    # ------------------------------------------------------------- writing
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Hold new vectors (new vectors go to their nearest IVF cell and to the fresh tier)."""
        ivf = self._ivf
        if ivf is None or len(vectors) > REMEMBERED_CELLS:
            self.index.add_with_ids(vectors, ids)
        else:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            nearest = np.ascontiguousarray(self._assigned(vectors)[1][:, 0])
            ivf.add_core(len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(nearest))
        if self.fresh is not None:
            self.fresh.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        """Drop vectors."""
        for index in (self.index, self.fresh):
            if index is not None:
                index.remove_ids(np.asarray(ids, dtype=np.int64))  # type: ignore[arg-type]

    def outgrown(self, kind: str) -> bool:
        """Whether the next save should rebuild: the count crossed a kind's threshold (auto: flat -> IVF;
        sq8 and IVF need enough vectors to train), or too much was added since the IVF cells were trained."""
        fresh_full = self.fresh is not None and self.fresh.ntotal > kinds.FRESH_MAX
        return kinds.resolve(kind, self.ntotal) != self.kind or fresh_full

    def save(self, path: Path) -> dict[str, Any]:
        """Write the index atomically (temp file, fsync, rename); returns its record (without generation)."""
        tmp = path.with_suffix(".tmp")
        try:
            faiss.write_index(self.index, str(tmp))
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:  # faiss reports a failed write (e.g. disk full) as RuntimeError
            tmp.unlink(missing_ok=True)
            raise IndexSaveError(
                f"could not save the index {path}: {exc}. Nothing stored is lost: the database holds "
                "every vector and the index is rebuilt from it when the store is next opened"
            ) from exc
        fsync_dir(path.parent)
        return {"sha256": file_sha256(path), "ntotal": self.ntotal, "trained_through": self.trained_through}
