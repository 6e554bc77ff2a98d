"""scikit-learn style estimators over plain vectors: :class:`KNNClassifier` (FAISS) beside the head."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInputError, NotFittedError
from ..labels import UNKNOWN, LabelView
from ..store import index as kinds
from .knn import Votes, Weighting, rank, vote
from .openset import class_vectors, open_set_thresholds


def check_vectors(X: np.ndarray, dim: int | None = None) -> np.ndarray:
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
    :mod:`vecclf.store.index`, exact ``flat`` by default); ``predict`` answers ``"unknown"`` for
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
        Xn = check_vectors(X)
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
        self.index_ = kinds.build(kinds.check_kind(self.index), Xn.shape[1], ids, Xn)
        self.classes_ = np.array(classes, dtype=object)
        self.thresholds_ = open_set_thresholds(class_vectors(self.view_, ids, Xn), quantile=self.unknown_quantile)
        return self

    def _votes(self, X: np.ndarray) -> Votes:
        if not hasattr(self, "index_"):
            raise NotFittedError("KNNClassifier is not fitted yet; call fit(X, y) first")
        Xn = check_vectors(X, self.index_.d)
        sims, ids = kinds.search(self.index_, Xn, min(self.k, self.index_.ntotal))
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
