"""Weighted k-NN voting with neighbour evidence, negatives and open-set thresholds.

The voting works on search results (similarities and ids) plus a :class:`LabelView`,
so the store-backed classifier and the standalone :class:`KNNClassifier` share it.
Neighbours are distinct *examples*: frames of one video count once (their best frame).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import _index
from .errors import InvalidInputError, NotFittedError
from .store import LabelView, locate

Weighting = Literal["similarity", "uniform"]
UNKNOWN = "unknown"


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
    neighbours = (
        [
            [(int(ids[i, j]), int(roots[i, j]), float(sims[i, j]), int(rows[i, j])) for j in np.flatnonzero(valid[i])]
            for i in range(n)
        ]
        if evidence
        else []
    )
    return Votes(scores=scores, support=support, neighbours=neighbours)


def rank(scores: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Class order per row: score, then best supporting similarity, then class order (deterministic)."""
    n, c = scores.shape
    col = np.broadcast_to(np.arange(c), (n, c))
    keys = (col, -np.nan_to_num(support, neginf=-2.0), -np.round(scores, 9))
    return np.lexsort(keys, axis=-1)


LOO_MAX_EXAMPLES = 2000  # examples per class behind an open-set threshold (a seeded sample beyond this)


def loo_similarities(vectors: np.ndarray, *, max_examples: int = LOO_MAX_EXAMPLES, seed: int = 0) -> np.ndarray:
    """Leave-one-out nearest-neighbour similarity of each example to the others of its class."""
    if len(vectors) < 2:
        return np.zeros(0, dtype=np.float64)
    if len(vectors) > max_examples:
        vectors = vectors[_index.sample_rows(len(vectors), max_examples, seed)]
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    return gram.max(axis=1).astype(np.float64)


def open_set_thresholds(
    class_vectors: dict[str, np.ndarray], *, quantile: float, min_examples: int = 5, seed: int = 0
) -> dict[str, float]:
    """Per-class similarity thresholds below which a query is answered ``unknown``.

    The ``quantile`` of the class's leave-one-out nearest-example similarities; classes
    with fewer than ``min_examples`` use the pooled distribution of all classes; with no
    pooled evidence at all, no threshold (``-inf``).
    """
    loo = {c: loo_similarities(v, seed=seed) for c, v in class_vectors.items()}
    return thresholds_from_loo(loo, quantile=quantile, min_examples=min_examples)


def thresholds_from_loo(
    loo: dict[str, np.ndarray], *, quantile: float, min_examples: int = 5, known: Mapping[str, float] | None = None
) -> dict[str, float]:
    """:func:`open_set_thresholds` from each class's leave-one-out similarities (see :func:`loo_similarities`).

    ``known`` holds thresholds already computed from the same similarities (at the same quantile) for classes
    that have not changed: they are kept, except fallbacks, which depend on every class.
    """
    if not 0.0 <= quantile < 1.0:
        raise InvalidInputError(f"unknown quantile must be in [0, 1), got {quantile}")
    known = known or {}
    out: dict[str, float] = {}
    small = []
    for c, s in loo.items():
        if quantile == 0:
            out[c] = -np.inf
        elif len(s) < min_examples:
            small.append(c)
        else:
            out[c] = known[c] if c in known else float(np.quantile(s, quantile))
    if small:
        pooled = np.concatenate(list(loo.values()))
        fallback = float(np.quantile(pooled, quantile)) if len(pooled) >= min_examples else -np.inf
        out.update(dict.fromkeys(small, fallback))
    return out


def class_vectors(view: LabelView, ids: np.ndarray, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Vectors of each class's positive examples (a video is represented by its pooled vector)."""
    out: dict[str, np.ndarray] = {}
    pos, present = locate(ids, view.label_roots)
    for c, name in enumerate(view.classes):
        members = present & (view.matrix[:, c] > 0)
        out[name] = vectors[pos[members]]
    return out


@dataclass(frozen=True)
class Calibration:
    """A 1:1 verification threshold and the evidence it was learned from."""

    threshold: float  # -inf when there was nothing to learn from
    method: str  # balanced-error | impostors-only | genuine-only | none
    genuine: int  # same-concept scores used
    impostor: int  # other-concept scores used


def _balanced_error_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The cut that minimises (false-reject rate + false-accept rate) / 2, centred among equal cuts."""
    scores = np.unique(np.concatenate([genuine, impostor]))
    cuts = np.concatenate([[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]])
    g, i = np.sort(genuine), np.sort(impostor)
    frr = np.searchsorted(g, cuts, side="left") / len(g)  # genuine below the cut
    far = 1.0 - np.searchsorted(i, cuts, side="left") / len(i)  # impostors at or above it
    ber = (frr + far) / 2
    best = np.flatnonzero(ber <= ber.min() + 1e-12)
    return float(cuts[best[len(best) // 2]])


def verification_calibration(
    view: LabelView,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    far: float = 0.01,
    quantile: float = 0.01,
    max_examples: int = 2000,
    seed: int = 0,
) -> Calibration:
    """One threshold for 1:1 verification in a space, learned from its labelled examples.

    A score is the best similarity to a concept's examples. Genuine scores: each example against
    the other examples of its concept (leave-one-out); impostor scores: each example against a
    concept it does not belong to. With both, the balanced-error cut; with impostors only (one
    photo per concept), the cut that accepts a fraction ``far`` of them; with genuine scores only,
    their ``quantile``.
    """
    pos, present = locate(ids, view.label_roots)
    members = view.matrix[present] > 0
    V = vectors[pos[present]]
    if len(V) > max_examples:
        pick = _index.sample_rows(len(V), max_examples, seed)
        V, members = V[pick], members[pick]
    sims = V @ V.T
    np.fill_diagonal(sims, -np.inf)
    genuine, impostor = [], []
    for c in range(members.shape[1]):
        m = members[:, c]
        if not m.any():
            continue
        best = sims[:, m].max(axis=1)
        genuine.append(best[m][np.isfinite(best[m])])
        impostor.append(best[~m])
    g = np.concatenate(genuine) if genuine else np.zeros(0)
    i = np.concatenate(impostor) if impostor else np.zeros(0)
    if len(g) and len(i):
        return Calibration(_balanced_error_threshold(g, i), "balanced-error", len(g), len(i))
    if len(i):
        return Calibration(float(np.quantile(i, 1.0 - far)), "impostors-only", 0, len(i))
    if len(g) >= 2:
        return Calibration(float(np.quantile(g, quantile)), "genuine-only", len(g), 0)
    return Calibration(-np.inf, "none", len(g), 0)


def _check_vectors(X: np.ndarray, dim: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidInputError(f"expected a non-empty 2-D array of vectors, got shape {X.shape}")
    if dim is not None and X.shape[1] != dim:
        raise InvalidInputError(f"expected vectors of dimension {dim}, got {X.shape[1]}")
    if not np.all(np.isfinite(X)):
        raise InvalidInputError("vectors contain NaN or Inf")
    wide = X.astype(np.float64)  # float32 squares underflow (tiny rows) or overflow (huge rows)
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InvalidInputError("vectors contain an all-zero row (cannot be normalised)")
    return np.ascontiguousarray(wide / norms, dtype=np.float32)


class KNNClassifier:
    """Cosine k-NN classifier over vectors, scikit-learn style.

    ``fit(X, y)`` stores L2-normalised copies in a FAISS index (``index``: a kind from
    :mod:`vecclf._index`, exact ``flat`` by default); ``predict`` answers ``"unknown"`` for
    inputs below the open-set threshold when ``unknown_quantile > 0``.
    """

    def __init__(
        self,
        k: int = 10,
        *,
        weighting: Weighting = "similarity",
        temperature: float = 0.05,
        negative_weight: float = 1.0,
        unknown_quantile: float = 0.0,
        index: str = "flat",
    ) -> None:
        self.k = k
        self.weighting = weighting
        self.temperature = temperature
        self.negative_weight = negative_weight
        self.unknown_quantile = unknown_quantile
        self.index = index

    def fit(self, X: np.ndarray, y: Sequence[str] | np.ndarray) -> KNNClassifier:
        """Index the training vectors and labels (one label per row)."""
        Xn = _check_vectors(X)
        labels = [str(v) for v in np.asarray(y).tolist()]
        if len(labels) != len(Xn):
            raise InvalidInputError(f"X has {len(Xn)} rows but y has {len(labels)} labels")
        if self.k <= 0:
            raise InvalidInputError(f"k must be positive, got {self.k}")
        classes = sorted(set(labels))
        col = {c: j for j, c in enumerate(classes)}
        ids = np.arange(len(Xn), dtype=np.int64)
        matrix = np.zeros((len(Xn), len(classes)), dtype=np.int8)
        matrix[ids, [col[v] for v in labels]] = 1
        self.view_ = LabelView(0, ids, ids, classes, ids, matrix)
        self.index_ = _index.build(_index.check_kind(self.index), Xn.shape[1], ids, Xn)
        self.classes_ = np.array(classes, dtype=object)
        self.thresholds_ = open_set_thresholds(class_vectors(self.view_, ids, Xn), quantile=self.unknown_quantile)
        return self

    def _votes(self, X: np.ndarray) -> Votes:
        if not hasattr(self, "index_"):
            raise NotFittedError("KNNClassifier is not fitted yet; call fit(X, y) first")
        Xn = _check_vectors(X, self.index_.d)
        sims, ids = _index.search(self.index_, Xn, min(self.k, self.index_.ntotal))
        return vote(
            sims,
            ids,
            self.view_,
            k=self.k,
            weighting=self.weighting,
            temperature=self.temperature,
            negative_weight=self.negative_weight,
            evidence=False,
        )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Vote shares per class, columns in ``classes_`` order, rows summing to 1."""
        scores = self._votes(X).scores
        total = scores.sum(axis=1, keepdims=True)
        uniform = np.full_like(scores, 1.0 / scores.shape[1])
        return np.where(total > 0, scores / np.where(total > 0, total, 1.0), uniform)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Best class per row, or ``"unknown"`` when below its open-set threshold."""
        votes = self._votes(X)
        best = rank(votes.scores, votes.support)[:, 0]
        out = self.classes_[best].copy()
        limits = np.array([self.thresholds_[str(c)] for c in self.classes_])[best]
        rows = np.arange(len(best))
        out[(votes.scores[rows, best] <= 0) | (votes.support[rows, best] < limits)] = UNKNOWN
        return out
