"""scikit-learn estimators over plain vectors: :class:`KNNClassifier` (FAISS) and :class:`LogisticHead` (torch).

Both follow scikit-learn's contract (``get_params``/``set_params``, ``fit`` returns self, learned
attributes end in ``_``, ``classes_`` in the labels' own type, ``n_features_in_``, ``score``), so
``clone``, ``cross_val_score``, ``GridSearchCV`` and ``Pipeline`` accept them. ``predict`` answers
within ``classes_``; open-set answers (``"unknown"``) come only from :meth:`KNNClassifier.predict_open`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import DEFAULT_C, DEFAULT_K, DEFAULT_UNKNOWN_QUANTILE
from ..errors import InvalidInputError, NotFittedError
from ..labels import UNKNOWN, LabelView
from ..store import index as kinds
from . import openset
from .head import HeadWeights, Mode, fit_head, multilabel_targets
from .knn import Votes, Weighting, rank, vote


def _fitted(estimator: BaseEstimator, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"{type(estimator).__name__} is not fitted yet; call fit(X, y) first")
    check_is_fitted(estimator)


def _checked(estimator: BaseEstimator, X: Any, y: Any = "no_validation", *, reset: bool) -> Any:
    """scikit-learn's validation of ``X`` (and ``y`` when given, even as None), its errors as
    :class:`InvalidInputError` (still a ``ValueError``)."""
    try:
        return validate_data(estimator, X, y, reset=reset, dtype=np.float32)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length for cosine similarity (norms in float64; an all-zero row stays zero)."""
    wide = np.asarray(X, dtype=np.float64)  # float32 squares underflow (tiny rows) or overflow (huge rows)
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    return np.ascontiguousarray(wide / np.where(norms > 0, norms, 1.0), dtype=np.float32)


class KNNClassifier(ClassifierMixin, BaseEstimator):
    """Cosine k-NN classifier over vectors, with similarity-weighted votes and open-set thresholds.

    ``fit(X, y)`` keeps L2-normalised copies in a FAISS index (``index``: a kind from
    :mod:`vecclf.store.index`, exact ``flat`` by default). ``predict`` answers the best class;
    :meth:`predict_open` answers ``"unknown"`` for inputs below the class's open-set threshold
    (learned at ``unknown_quantile``; ``identity``: the vectors come from a model trained to separate
    identities, such as faces; see :mod:`vecclf.classify.openset`).
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        *,
        weighting: Weighting = "similarity",
        temperature: float = 0.05,
        negative_weight: float = 1.0,
        unknown_quantile: float = DEFAULT_UNKNOWN_QUANTILE,
        index: str = "flat",
        identity: bool = False,
    ) -> None:
        self.k = k
        self.weighting = weighting
        self.temperature = temperature
        self.negative_weight = negative_weight
        self.unknown_quantile = unknown_quantile
        self.index = index
        self.identity = identity

    def fit(self, X: Any, y: Any) -> KNNClassifier:
        """Index the training vectors and labels (one label per row)."""
        X, y = _checked(self, X, y, reset=True)
        check_classification_targets(y)
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k <= 0:
            raise InvalidInputError(f"k must be a positive integer, got {self.k!r}")
        if not self.temperature > 0:
            raise InvalidInputError(f"temperature must be positive, got {self.temperature}")
        self.classes_, columns = np.unique(y, return_inverse=True)
        names = [str(c) for c in self.classes_]
        Xn = unit_rows(X)
        self.view_ = LabelView.single_label(columns, names)
        self.index_ = kinds.build(kinds.check_kind(self.index), Xn.shape[1], self.view_.ids, Xn)
        genuine, impostor = openset.evidence(Xn, columns, names, lambda q, k: kinds.search(self.index_, q, k))
        calibrated = openset.calibrate(genuine, impostor, quantile=self.unknown_quantile, identity=self.identity)
        self.thresholds_, self.calibration_ = calibrated.open_set, calibrated.calibration
        return self

    def _votes(self, X: Any) -> Votes:
        _fitted(self, "index_")
        Xn = unit_rows(_checked(self, X, reset=False))
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

    def predict_proba(self, X: Any) -> np.ndarray:
        """Vote shares per class, columns in ``classes_`` order, rows summing to 1."""
        scores = self._votes(X).scores
        total = scores.sum(axis=1, keepdims=True)
        uniform = np.full_like(scores, 1.0 / scores.shape[1])
        return np.where(total > 0, scores / np.where(total > 0, total, 1.0), uniform)

    def predict(self, X: Any) -> np.ndarray:
        """The best class per row (always one of ``classes_``)."""
        votes = self._votes(X)
        best = rank(votes.scores, votes.support)[:, 0]
        return self.classes_[best]

    def predict_open(self, X: Any, *, unknown: Any = UNKNOWN) -> np.ndarray:
        """The best class per row, or ``unknown`` where the nearest example of that class is less similar
        than the class's open-set threshold (an object array when ``unknown`` is not of the labels' type)."""
        votes = self._votes(X)
        best = rank(votes.scores, votes.support)[:, 0]
        limits = np.array([self.thresholds_[str(c)] for c in self.classes_])[best]
        rows = np.arange(len(best))
        rejected = (votes.scores[rows, best] <= 0) | (votes.support[rows, best] < limits)
        out = self.classes_[best].astype(object)
        out[rejected] = unknown
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if "index_" in state:  # FAISS indexes do not pickle: keep the serialised bytes
            state["index_"] = faiss.serialize_index(state["index_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("index_"), np.ndarray):
            state = {**state, "index_": faiss.deserialize_index(state["index_"])}
        super().__setstate__(state)


class LogisticHead(ClassifierMixin, BaseEstimator):
    """A linear classifier over embeddings (see :mod:`vecclf.classify.head` for the objective).

    ``mode="exclusive"``: ``fit(X, y)`` with one label per row, softmax probabilities.
    ``mode="multilabel"``: ``fit(X, Y, classes=...)`` with ``Y[i, c]`` = +1 positive,
    -1 negative, 0 unlabelled (ignored for that concept); independent sigmoids.
    ``n_jobs``: BLAS threads of a CPU fit (None: one for small problems, all for large ones).
    """

    def __init__(
        self,
        mode: Mode = "exclusive",
        *,
        C: float = DEFAULT_C,
        class_weight: str | dict[Any, float] | None = "balanced",
        max_iter: int = 100,
        tol: float = 1e-5,
        tol_change: float = 3e-4,
        device: str | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.mode = mode
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.tol_change = tol_change
        self.device = device
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, *, classes: Sequence[str] | None = None) -> LogisticHead:
        """Train on ``X`` (n, d) and labels; returns ``self``."""
        if self.mode not in ("exclusive", "multilabel"):
            raise InvalidInputError(f"mode must be exclusive or multilabel, got {self.mode!r}")
        if self.mode == "exclusive":
            X, y = _checked(self, X, y, reset=True)
            check_classification_targets(y)
            self.classes_, target = np.unique(y, return_inverse=True)
            names = [str(c) for c in self.classes_]
        else:
            X = _checked(self, X, reset=True)
            if classes is None:
                raise InvalidInputError("a multi-label head needs Y of shape (n, len(classes)) and classes")
            names = [str(c) for c in classes]
            target = multilabel_targets(y, len(names))
            self.classes_ = np.array(names, dtype=object)
        self.weights_ = fit_head(
            X,
            target,
            names,
            mode=self.mode,
            C=self.C,
            class_weight=self._class_weights(),
            max_iter=self.max_iter,
            tol=self.tol,
            tol_change=self.tol_change,
            device=self.device,
            threads=self.n_jobs,
        )
        self.coef_ = self.weights_.coef
        self.intercept_ = self.weights_.intercept
        self.n_iter_ = self.weights_.n_iter
        return self

    def _class_weights(self) -> str | np.ndarray | None:
        if not isinstance(self.class_weight, dict):
            if self.class_weight not in ("balanced", None):
                raise InvalidInputError(f"class_weight must be 'balanced', None or a dict, got {self.class_weight!r}")
            return self.class_weight
        if self.mode != "exclusive":
            raise InvalidInputError("a multi-label head takes class_weight 'balanced' or None")
        return np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])

    @classmethod
    def from_weights(cls, weights: HeadWeights) -> LogisticHead:
        """An estimator around stored weights (as :meth:`ConceptClassifier.train` saves them)."""
        kept = None if weights.class_weight == "custom" else weights.class_weight  # the weights themselves are not kept
        head = cls(weights.mode, C=weights.C, class_weight=kept, max_iter=weights.max_iter, tol=weights.tol)
        head.weights_ = weights
        head.coef_, head.intercept_, head.n_iter_ = weights.coef, weights.intercept, weights.n_iter
        head.classes_ = np.array(weights.classes, dtype=object)
        head.n_features_in_ = weights.dim
        return head

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits ``(n, n_classes)``; for two exclusive classes, the second's margin over the first ``(n,)``."""
        _fitted(self, "weights_")
        z = self.weights_.decision_function(_checked(self, X, reset=False))
        return z[:, 1] - z[:, 0] if self.mode == "exclusive" and z.shape[1] == 2 else z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax (exclusive) or per-concept sigmoid (multi-label) probabilities, columns in ``classes_`` order."""
        _fitted(self, "weights_")
        return self.weights_.predict_proba(_checked(self, X, reset=False))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class per row."""
        best = np.argmax(self.predict_proba(X), axis=1)
        return self.classes_[best]
