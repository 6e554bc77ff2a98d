"""Weighted k-NN voting over search results, with neighbour evidence and negatives (numpy only).

Voting works on search results (similarities and ids) plus a :class:`~vecclf.labels.LabelView`, so the
store's predictor, evaluation and the standalone estimator share it. Neighbours are distinct
*examples*: frames of one video count once (their best frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InvalidInputError
from ..labels import LabelView

Weighting = Literal["similarity", "uniform"]


@dataclass(frozen=True)
class Votes:
    """Result of voting for ``n`` queries over ``C`` classes (``view.classes`` order).

    ``scores`` in [0, 1]; ``support[i, c]`` is the best similarity of a positive example of
    ``c`` among the query's neighbours (``-inf`` if none); ``neighbours`` are, per query,
    ``(id, root id, similarity, label row)`` of the distinct examples that voted.
    """

    scores: np.ndarray
    support: np.ndarray
    neighbours: list[list[tuple[int, int, float, int]]]


def _dedupe_roots(roots: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Keep only the first (most similar) occurrence of each root per row."""
    out = valid.copy()
    for r in range(roots.shape[0]):
        seen: set[int] = set()
        for j in range(roots.shape[1]):
            if out[r, j]:
                root = int(roots[r, j])
                if root in seen:
                    out[r, j] = False
                else:
                    seen.add(root)
    return out


def vote(
    sims: np.ndarray,
    ids: np.ndarray,
    view: LabelView,
    *,
    k: int,
    weighting: Weighting = "similarity",
    temperature: float = 0.05,
    negative_weight: float = 1.0,
    evidence: bool = True,
) -> Votes:
    """Vote among the first ``k`` distinct labelled neighbours of each query.

    Weights are ``exp((s - s_max) / temperature)`` (``similarity``) or 1 (``uniform``);
    a concept's score is its positive weight minus ``negative_weight`` times its negative
    weight, over the total weight, clipped at 0. ``evidence=False`` skips building the
    per-query neighbour lists (``Votes.neighbours`` is then empty).
    """
    if k <= 0:
        raise InvalidInputError(f"k must be positive, got {k}")
    if temperature <= 0:
        raise InvalidInputError(f"temperature must be positive, got {temperature}")
    n, n_classes = sims.shape[0], len(view.classes)
    roots, rows = view.rows_for(ids)
    valid = (rows >= 0) & np.isfinite(sims)
    if view.has_frames:
        valid = _dedupe_roots(roots, valid)
    valid &= np.cumsum(valid, axis=1) <= k
    if weighting == "uniform":
        weights = valid.astype(np.float64)
    elif weighting == "similarity":
        top = np.max(np.where(valid, sims, -np.inf), axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        weights = np.where(valid, np.exp((np.where(valid, sims, 0.0) - top) / temperature), 0.0)
    else:
        raise InvalidInputError(f"weighting must be 'similarity' or 'uniform', got {weighting!r}")
    scores = np.zeros((n, n_classes), dtype=np.float64)
    support = np.full((n, n_classes), -np.inf, dtype=np.float64)
    if n_classes and view.matrix.size:
        labels = view.matrix[np.where(valid, rows, 0)].astype(np.float64)  # (n, m, C)
        labels *= valid[..., None]
        pos, neg = labels > 0, labels < 0
        total = weights.sum(axis=1, keepdims=True)
        raw = np.einsum("nm,nmc->nc", weights, pos) - negative_weight * np.einsum("nm,nmc->nc", weights, neg)
        scores = np.clip(np.divide(raw, total, out=np.zeros_like(raw), where=total > 0), 0.0, 1.0)
        support = np.max(np.where(pos, sims[..., None].astype(np.float64), -np.inf), axis=1)
    neighbours: list[list[tuple[int, int, float, int]]] = []
    if evidence:  # Python scalars once per array (tolist), not int()/float() per neighbour: 1% of a batch
        id_l, root_l, sim_l, row_l = ids.tolist(), roots.tolist(), sims.tolist(), rows.tolist()
        for i, keep in enumerate(valid.tolist()):
            a, b, s, r = id_l[i], root_l[i], sim_l[i], row_l[i]
            neighbours.append([(a[j], b[j], s[j], r[j]) for j, ok in enumerate(keep) if ok])
    return Votes(scores=scores, support=support, neighbours=neighbours)


def rank(scores: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Class order per row: score, then best supporting similarity, then class order (deterministic)."""
    n, c = scores.shape
    col = np.broadcast_to(np.arange(c), (n, c))
    keys = (col, -np.nan_to_num(support, neginf=-2.0), -np.round(scores, 9))
    return np.lexsort(keys, axis=-1)
