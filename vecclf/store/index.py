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
import time
from collections.abc import Callable

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


SMALL_BATCH = 8  # up to this many queries, a flat search is always ours: bound by reading the vectors once


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``index.search``, except that a flat index may be searched by :func:`exact_top_k` over its own vectors.

    A few queries are bound by reading the vectors once, which one BLAS pass does at the memory's speed and
    FAISS's per-vector loop (and its OpenMP start-up) does not: those are always ours. Batches go to the
    faster of FAISS's search and ours for their size, timed on the first batch of that size in this process
    (both compute the same exact top-k, with different BLAS libraries; which is faster depends on the
    processor: the OpenBLAS inside the faiss-cpu wheel runs a generic kernel on processors newer than
    itself, 3x slower on a Sapphire Rapids Xeon, and FAISS's blocking wins on large batches where its
    kernel is right). The caller holds the store's read lock, so the stored arrays cannot move underneath.
    """
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if type(inner) is not faiss.IndexFlatIP or inner.ntotal == 0:
        return index.search(queries, k)
    n, d = inner.ntotal, inner.d
    stored = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    id_map = (
        faiss.rev_swig_ptr(index.id_map.data(), n)
        if isinstance(index, faiss.IndexIDMap2)
        else np.arange(n, dtype=np.int64)
    )

    def ours() -> tuple[np.ndarray, np.ndarray]:
        return exact_top_k(queries, stored, id_map, min(k, n))

    if len(queries) <= SMALL_BATCH:
        return ours()
    size = (min(len(queries), _QUERY_ROWS).bit_length(), n.bit_length())
    way = _FASTER.get(size)
    if way is None:  # the first batch of this size: both ways, the faster remembered
        faiss_s, _ = _timed(lambda: index.search(queries, k))
        ours_s, found = _timed(ours)
        _FASTER[size] = "faiss" if faiss_s < ours_s else "ours"
        return found
    return index.search(queries, k) if way == "faiss" else ours()


# (bit length of the query count, capped at _QUERY_ROWS; of the stored count) -> "faiss" | "ours"
_FASTER: dict[tuple[int, int], str] = {}


def faster_batch_search() -> dict[str, str]:
    """Which exact batch search each size class has used in this process: ``"Q queries x N stored"`` -> way."""

    def span(bits: int, cap: int | None = None) -> str:
        low, high = 2 ** (bits - 1), 2**bits - 1
        return f"{cap}+" if cap is not None and low >= cap else f"{low:,}-{high:,}"

    return {f"{span(q, _QUERY_ROWS)} queries x {span(n)} stored": way for (q, n), way in sorted(_FASTER.items())}


def _timed(run: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    start = time.perf_counter()
    found = run()
    return time.perf_counter() - start, found


_BLOCK = 256  # scores per block whose maximum bounds the top-k
_SCORES_BYTES = 16 << 20  # one block of the score matrix: small enough to stay in cache while it is ranked
_QUERY_ROWS = 1024


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS-shaped exact inner-product top-``k``: ``(similarities, ids)``, best first (equal scores: the lower
    position first), padded with ``-inf`` / ``-1``; NaN scores rank last."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    m = min(k, len(ids))
    if m == 0 or len(queries) == 0:
        return sims, out
    rows = min(len(queries), _QUERY_ROWS)
    cols = max(_BLOCK * m, _SCORES_BYTES // (4 * rows) // _BLOCK * _BLOCK)
    for r0 in range(0, len(queries), rows):
        part = queries[r0 : r0 + rows]
        top_s, top_p = _top_k_rows(part, vectors, m, cols)
        sims[r0 : r0 + rows, :m], out[r0 : r0 + rows, :m] = top_s, ids[top_p]
    return sims, out


def _top_k_rows(queries: np.ndarray, vectors: np.ndarray, m: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, positions)`` of each query's ``m`` best stored vectors, the scores made ``cols`` columns at
    a time.

    The ``m``-th best of a block of scores' block maxima is a lower bound of that block's ``m``-th best
    score (``m`` blocks reach it), and so of the whole row's: only scores at or above the highest bound seen
    so far can be in the top ``m``. One pass for the maxima and a look inside the few blocks that reach the
    bound leave a few candidates per query to sort, where a partition of each row moved every score.
    """
    nq, n = len(queries), len(vectors)
    floor = np.full(nq, -np.inf, dtype=np.float32)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for c0 in range(0, n, cols):
        scores = _scores(queries, vectors[c0 : c0 + cols])  # (nq, c)
        nb = scores.shape[1] // _BLOCK
        if nb >= m:
            whole = nb * _BLOCK
            blocks = scores[:, :whole].reshape(nq, nb, _BLOCK)
            maxima = np.fmax.reduce(blocks, axis=2)  # a NaN score does not hide its block
            floor = np.fmax(floor, np.partition(maxima, nb - m, axis=1)[:, nb - m])  # fmax: a NaN bound is none
            rb, bb = np.nonzero(maxima >= floor[:, None])
            inside = blocks[rb, bb]  # (blocks reaching the bound, _BLOCK)
            keep = inside >= floor[rb, None]
            at_r, at_b = np.nonzero(keep)
            found.append((rb[at_r], c0 + bb[at_r] * _BLOCK + at_b, inside[keep]))
            tail = scores[:, whole:]
            tr, tc = np.nonzero(tail >= floor[:, None])
            found.append((tr, c0 + whole + tc, tail[tr, tc]))
        else:  # fewer than m blocks: the chunk's own m-th best score is a bound
            if scores.shape[1] > m:
                floor = np.fmax(floor, np.partition(scores, scores.shape[1] - m, axis=1)[:, scores.shape[1] - m])
            r, c = np.nonzero(scores >= floor[:, None])
            found.append((r, c0 + c, scores[r, c]))
        if sum(len(f[0]) for f in found) > 4 * nq * m + scores.size:  # equal scores everywhere keep every one:
            found = [_best(found, floor, m)]  # hold only the best so far
    r, c, v = _best(found, floor, m)
    top_s = np.full((nq, m), -np.inf, dtype=np.float32)
    top_p = np.full((nq, m), -1, dtype=np.int64)
    rank = np.arange(len(r)) - np.searchsorted(r, r)
    top_s[r, rank], top_p[r, rank] = v, c
    short = np.flatnonzero((top_p < 0).any(axis=1))
    step = max(1, _SCORES_BYTES // (4 * n))
    for s0 in range(0, len(short), step):  # NaN scores (no bound holds): rank whole rows, NaN last
        rows = short[s0 : s0 + step]
        scores = _scores(queries[rows], vectors)
        key = np.where(np.isnan(scores), np.inf, -scores)
        pick = np.sort(np.argpartition(key, m - 1, axis=1)[:, :m], axis=1)
        pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(key, pick, axis=1), axis=1, kind="stable"), 1)
        top_s[rows], top_p[rows] = np.take_along_axis(scores, pick, axis=1), pick
    return top_s, top_p


_ONE_AT_A_TIME = 4  # fewer queries than this are scored one matrix-vector product each
_FEW_QUERIES = 16  # up to this many, the block is the product's left side


def _scores(queries: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``queries @ block.T``, in the orientation OpenBLAS computes fastest for the query count. Its product packs
    the right-hand side whole however few the rows of the left: with 2 or 3 queries ``queries @ block.T`` took
    as long as with 16 (62 ms over 200k x 512, where one query's pass takes 19 ms). Up to 16 queries
    ``(block @ queries.T).T`` reads the block once at about the memory's speed (4,000 x 512, 10 queries:
    0.8 ms against 1.3); from ~32 on the usual orientation wins again."""
    if len(queries) < _ONE_AT_A_TIME:
        out = np.empty((len(queries), len(block)), dtype=np.float32)
        for row, query in enumerate(queries):
            np.matmul(block, query, out=out[row])
        return out
    if len(queries) <= _FEW_QUERIES:
        return np.ascontiguousarray((block @ queries.T).T)
    return queries @ block.T


def _best(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], floor: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates ``(rows, positions, scores)`` that are each row's ``m`` best, by row, best first (equal
    scores: the lower position first)."""
    r = np.concatenate([f[0] for f in found])
    c = np.concatenate([f[1] for f in found])
    v = np.concatenate([f[2] for f in found])
    live = v >= floor[r]  # candidates kept before the bound rose
    r, c, v = r[live], c[live], v[live]
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    first = (np.arange(len(r)) - np.searchsorted(r, r)) < m
    return r[first], c[first], v[first]


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
