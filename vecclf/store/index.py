"""Which FAISS index holds a space: exact, compressed, or approximate past a size threshold.

Every kind keeps the store's input ids and supports adds, removals and filtered search.

- ``flat``: exact inner product, 4 bytes per dimension.
- ``fp16``: exact search over half-precision copies, 2 bytes per dimension.
- ``sq8``: 8-bit scalar quantisation trained on the stored vectors, 1 byte per dimension.
- ``ivf``: inverted lists over k-means cells (exact vectors inside), searching the fewest cells that keep
  recall@10 at :data:`TARGET_RECALL` on a sample of the stored vectors.
- ``auto`` (default): ``flat`` below :data:`AUTO_IVF_THRESHOLD` vectors, ``ivf`` from there on.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from ..errors import InvalidInputError
from ..labels import sample_rows

INDEX_KINDS = ("auto", "flat", "fp16", "sq8", "ivf")
AUTO_IVF_THRESHOLD = 250_000
MIN_TRAIN = {"sq8": 1_000, "ivf": 10_000}  # fewer stored vectors: stay flat until the next rebuild
TARGET_RECALL = 0.97
# An IVF store also searches the vectors added since its cells were trained exactly (a brand-new concept
# unlike anything at training time scatters over cells the query does not probe); past this many, the
# next flush retrains the cells on everything.
FRESH_MAX = 20_000
_IVF_TRAIN_PER_CELL = 40


def check_kind(kind: str) -> str:
    """``kind`` if it names an index kind, else a typed error."""
    if kind not in INDEX_KINDS:
        raise InvalidInputError(f"index must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    return kind


def resolve(kind: str, count: int) -> str:
    """The concrete kind to build for ``count`` vectors."""
    concrete = ("ivf" if count >= AUTO_IVF_THRESHOLD else "flat") if kind == "auto" else kind
    return "flat" if count < MIN_TRAIN.get(concrete, 0) else concrete


def kind_of(index: faiss.Index) -> str:
    """The concrete kind of a built (or loaded) index."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    if isinstance(inner, faiss.IndexScalarQuantizer):
        return "fp16" if inner.sq.qtype == faiss.ScalarQuantizer.QT_fp16 else "sq8"
    return "flat"


def build(kind: str, dim: int, ids: np.ndarray, vectors: np.ndarray, *, seed: int = 0) -> faiss.Index:
    """An index of ``resolve(kind, len(ids))`` holding ``vectors`` under ``ids``."""
    concrete = resolve(kind, len(ids))
    index: faiss.Index
    if concrete == "ivf":
        index = _build_ivf(dim, ids, vectors, seed)
    else:
        if concrete == "flat":
            inner: faiss.Index = faiss.IndexFlatIP(dim)
        else:
            qtype = faiss.ScalarQuantizer.QT_fp16 if concrete == "fp16" else faiss.ScalarQuantizer.QT_8bit
            inner = faiss.IndexScalarQuantizer(dim, qtype, faiss.METRIC_INNER_PRODUCT)
            if concrete == "sq8":
                inner.train(_sample(vectors, 100_000, seed))
        index = faiss.IndexIDMap2(inner)
        if len(ids):
            index.add_with_ids(vectors, ids)
    return index


SMALL_BATCH = 8  # up to this many queries, flat search is one BLAS pass over the stored vectors


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``index.search``, except that a few queries on a flat index run as one matrix product in numpy.

    A single query is bound by reading the vectors once; BLAS streams them at the memory's speed, while
    FAISS's per-vector loop (and its OpenMP start-up, slower with 2 threads than with 1 here) does not.
    The caller holds the store's read lock, so the stored arrays cannot move underneath.
    """
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if len(queries) > SMALL_BATCH or type(inner) is not faiss.IndexFlatIP or inner.ntotal == 0:
        return index.search(queries, k)
    n, d = inner.ntotal, inner.d
    stored = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    id_map = (
        faiss.rev_swig_ptr(index.id_map.data(), n)
        if isinstance(index, faiss.IndexIDMap2)
        else np.arange(n, dtype=np.int64)
    )
    return exact_top_k(queries, stored, id_map, min(k, n))


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS-shaped exact inner-product top-``k``: ``(similarities, ids)``, padded with ``-inf`` / ``-1``."""
    sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    m = min(k, len(ids))
    if m:
        scores = queries @ vectors.T  # (queries, stored)
        if len(queries) <= SMALL_BATCH and scores.shape[1] >= _BLOCK * m * 4:
            for row in range(len(scores)):
                top = _top_of_row(scores[row], m)
                sims[row, :m], out[row, :m] = scores[row, top], ids[top]
        else:
            top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            sims[:, :m] = np.take_along_axis(scores, top, axis=1)
            out[:, :m] = ids[top]
    return sims, out


_BLOCK = 256


def _top_of_row(scores: np.ndarray, m: int) -> np.ndarray:
    """Positions of the ``m`` best of one row of scores, best first (ties: the lower position first).

    The ``m``-th best of the block maxima is a lower bound of the ``m``-th best score (``m`` blocks reach it),
    so only scores at or above it can be in the top ``m``: one cheap pass over the block maxima and one
    comparison leave a few candidates to sort, where a partition of the whole row moved every score.
    """
    whole = len(scores) // _BLOCK * _BLOCK
    maxima = scores[:whole].reshape(-1, _BLOCK).max(axis=1)
    bound = np.partition(maxima, len(maxima) - m)[len(maxima) - m]
    candidates = np.flatnonzero(scores >= bound)  # the tail past the last whole block is compared too
    if not m <= len(candidates) <= len(scores) // 8:  # NaN scores, or ties everywhere: partition the row
        candidates = np.sort(np.argpartition(-scores, m - 1)[:m])
    best = np.argsort(-scores[candidates], kind="stable")[:m]
    return candidates[best]


def merge_top_k(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of two FAISS-shaped results that may share ids (a shared id counts once)."""
    sims = np.concatenate([first[0], second[0]], axis=1)
    ids = np.concatenate([first[1], second[1]], axis=1)
    by_id = np.argsort(ids, axis=1, kind="stable")
    ids = np.take_along_axis(ids, by_id, axis=1)
    sims = np.take_along_axis(sims, by_id, axis=1)
    repeat = np.zeros(ids.shape, dtype=bool)
    repeat[:, 1:] = (ids[:, 1:] == ids[:, :-1]) & (ids[:, 1:] >= 0)
    sims = np.where(repeat, -np.inf, sims)
    ids = np.where(repeat, -1, ids)
    best = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, best, axis=1), np.take_along_axis(ids, best, axis=1)


def _sample(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(vectors) <= n:
        return np.ascontiguousarray(vectors)
    return np.ascontiguousarray(vectors[sample_rows(len(vectors), n, seed)])


def _build_ivf(dim: int, ids: np.ndarray, vectors: np.ndarray, seed: int) -> faiss.Index:
    nlist = max(16, min(int(4 * math.sqrt(len(ids))), len(ids) // _IVF_TRAIN_PER_CELL))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(_sample(vectors, nlist * _IVF_TRAIN_PER_CELL, seed))
    index.add_with_ids(vectors, ids)
    index.nprobe = calibrate_nprobe(index, ids, vectors, seed=seed)
    return index


def calibrate_nprobe(
    index: faiss.IndexIVF, ids: np.ndarray, vectors: np.ndarray, *, sample: int = 200, k: int = 10, seed: int = 0
) -> int:
    """The smallest power-of-two ``nprobe`` reaching :data:`TARGET_RECALL` recall@k.

    Queries are stored vectors, each left out of its own answers (else every query finds itself).
    """
    pick = sample_rows(len(ids), sample, seed + 1)
    queries, own = np.ascontiguousarray(vectors[pick]), ids[pick]
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors))
    _, rows = exact.search(queries, k + 1)
    truth = _drop_own(ids[rows], own, k)
    nprobe = 1
    while nprobe < index.nlist:
        index.nprobe = nprobe
        _, found = index.search(queries, k + 1)
        if recall_at(truth, _drop_own(found, own, k)) >= TARGET_RECALL:
            return nprobe
        nprobe *= 2
    return int(index.nlist)


def _drop_own(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    return np.array([[i for i in row if i != me][:k] for row, me in zip(found.tolist(), own.tolist())], dtype=object)


def recall_at(truth: np.ndarray, found: np.ndarray) -> float:
    """Share of the true neighbours (rows of ids) that were found."""
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist()))
    return hits / truth.size
