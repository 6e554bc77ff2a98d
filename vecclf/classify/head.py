"""The logistic head: its fit (exclusive softmax or one sigmoid per concept) and the fitted weights.

Full-batch L-BFGS (:mod:`vecclf.classify.lbfgs`: numpy on the CPU, torch on a GPU) on the objective
scikit-learn's ``LogisticRegression`` minimises (``C * sum(loss) + ||W||^2 / 2``, here divided by ``C * n``),
so accuracy can be compared one to one. Weights start from the class centroids, which on L2-normalised
embeddings already sit near the optimum's direction and cut the iterations needed.

``C`` defaults to 10, not 1: unit-norm embeddings have per-feature scale ~1/sqrt(d), so ``C=1`` (meant
for standardised features) shrinks the weights until probabilities are near uniform.

:class:`HeadWeights` is what a store keeps and a prediction uses (numpy only); the scikit-learn
estimator over the same code is :class:`vecclf.classify.estimators.LogisticHead`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..config import C_MAX, C_MIN, DEFAULT_C
from ..errors import InvalidInputError
from .lbfgs import choose_device, first_step, make_objective, minimise, scaled_start

Mode = Literal["exclusive", "multilabel"]
HEAD_FORMAT = 1


@dataclass(frozen=True)
class HeadWeights:
    """A fitted head: ``coef`` (classes x d), ``intercept``, class names, and how it was trained."""

    mode: Mode
    classes: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    C: float = DEFAULT_C
    class_weight: str | None = "balanced"
    max_iter: int = 100
    tol: float = 1e-5
    n_iter: int = 0

    @property
    def dim(self) -> int:
        """Input dimension."""
        return int(self.coef.shape[1])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw logits ``(n, n_classes)``, in float64 (so a row's answer does not depend on its batch)."""
        return np.asarray(X, dtype=np.float64) @ self.coef.T.astype(np.float64) + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax (exclusive) or per-concept sigmoid (multi-label) probabilities, columns in ``classes`` order."""
        z = self.decision_function(X)
        if self.mode == "exclusive":
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-z))

    def to_state(self) -> tuple[str, dict[str, np.ndarray]]:
        """``(JSON metadata, arrays)`` for storage (no pickle)."""
        meta = {
            "format": HEAD_FORMAT,
            "mode": self.mode,
            "C": self.C,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "classes": list(self.classes),
            "n_iter": self.n_iter,
        }
        return json.dumps(meta), {"coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_state(cls, meta_json: str, arrays: dict[str, np.ndarray]) -> HeadWeights:
        """Rebuild from :meth:`to_state` output."""
        meta = json.loads(meta_json)
        if meta.get("format") != HEAD_FORMAT:
            raise InvalidInputError(f"unsupported head format {meta.get('format')}")
        return cls(
            meta["mode"],
            tuple(str(c) for c in meta["classes"]),
            np.asarray(arrays["coef"], dtype=np.float32),
            np.asarray(arrays["intercept"], dtype=np.float32),
            C=float(meta["C"]),
            class_weight=meta["class_weight"],
            max_iter=int(meta["max_iter"]),
            tol=float(meta["tol"]),
            n_iter=int(meta.get("n_iter", 0)),
        )


def multilabel_targets(Y: np.ndarray, n_classes: int) -> np.ndarray:
    """``Y`` checked as multi-label targets: ``(n, n_classes)`` of +1 positive, -1 negative, 0 unlabelled."""
    Yt = np.asarray(Y)
    if Yt.ndim != 2 or Yt.shape[1] != n_classes:
        raise InvalidInputError("a multi-label head needs Y of shape (n, len(classes)) and classes")
    if not np.all(np.isin(Yt, (-1, 0, 1))):
        raise InvalidInputError("multi-label targets must be +1, -1 or 0")
    return Yt.astype(np.int8)


def fit_head(
    X: np.ndarray,
    target: np.ndarray,
    classes: Sequence[str],
    *,
    mode: Mode = "exclusive",
    C: float = DEFAULT_C,
    class_weight: str | np.ndarray | None = "balanced",
    max_iter: int = 100,
    tol: float = 1e-5,
    tol_change: float = 3e-4,
    device: str | None = None,
    threads: int | None = None,
    warm_start: HeadWeights | None = None,
) -> HeadWeights:
    """Fit a head on ``X`` (n, d).

    ``target``: class indices (exclusive, at least two classes) or a multi-label matrix (see
    :func:`multilabel_targets`). ``class_weight``: ``"balanced"`` (each class weighs as much in total),
    None, or (exclusive) one weight per class. Stops after ``max_iter`` L-BFGS iterations, when the
    gradient's largest entry falls below ``tol``, or when an iteration changes the objective by less
    than ``tol_change``. ``device``: ``cpu``, ``cuda`` or None (see :func:`vecclf.classify.lbfgs.choose_device`);
    ``threads``: BLAS threads on the CPU (default: by problem size). ``warm_start``: an earlier head of the
    same mode and dimension; its concepts start from their old weights (a retrain after a few additions
    then needs a few iterations), new ones from their scaled centroids.
    """
    Xn = np.asarray(X, dtype=np.float32)
    if Xn.ndim != 2 or len(Xn) == 0:
        raise InvalidInputError(f"expected a non-empty 2-D array, got shape {Xn.shape}")
    if not np.all(np.isfinite(Xn)):
        raise InvalidInputError("X contains NaN or Inf")
    if not C_MIN <= C <= C_MAX:  # NaN fails this too
        raise InvalidInputError(f"C must be between {C_MIN:g} and {C_MAX:g}, got {C}")
    if max_iter <= 0:
        raise InvalidInputError(f"max_iter must be positive, got {max_iter}")
    if len(target) != len(Xn):
        raise InvalidInputError(f"X has {len(Xn)} rows but {len(target)} labels")
    k = len(classes)
    if mode == "exclusive" and k < 2:
        raise InvalidInputError("an exclusive head needs at least two classes (concepts); got 1 class")
    n, d = Xn.shape
    if mode == "exclusive":
        y = np.asarray(target, dtype=np.int64)
        if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= k)):
            raise InvalidInputError(f"exclusive targets must be class indices in [0, {k})")
        counts = np.bincount(y, minlength=k).astype(np.float64)
        if isinstance(class_weight, np.ndarray):
            cw = np.asarray(class_weight, dtype=np.float64)
        else:
            cw = n / (k * np.maximum(counts, 1)) if class_weight == "balanced" else np.ones(k)
        sw = cw[y].astype(np.float32)
        onehot = np.zeros((n, k), dtype=np.float32)
        onehot[np.arange(n), y] = 1.0
        init = (onehot.T @ Xn).astype(np.float64) / np.maximum(counts, 1)[:, None]
        labels: np.ndarray = y
    else:
        if isinstance(class_weight, np.ndarray):
            raise InvalidInputError("a multi-label head takes class_weight 'balanced' or None")
        Yt = multilabel_targets(target, k)
        mask = (Yt != 0).astype(np.float32)
        pos = (Yt > 0).astype(np.float32)
        n_pos, n_lab = pos.sum(0), mask.sum(0)
        if (n_lab == 0).any() or (n_pos == 0).any():
            raise InvalidInputError("every concept needs at least one positive example")
        if class_weight == "balanced":
            n_neg = n_lab - n_pos
            w_pos = n_lab / (2 * n_pos)
            w_neg = np.where(n_neg > 0, n_lab / (2 * np.maximum(n_neg, 1)), 0.0)
            sw = (mask * (pos * w_pos + (1 - pos) * w_neg)).astype(np.float32)
        else:
            sw = mask
        init = (pos.T @ Xn).astype(np.float64) / n_pos[:, None]
        labels = pos
    reg = 1.0 / (2.0 * C * n)
    init *= scaled_start(mode, Xn, labels, sw, reg, init)
    theta0 = np.concatenate([init, np.zeros((k, 1))], axis=1)  # W | b, one row per class
    if warm_start is not None and warm_start.mode == mode and warm_start.dim == d:
        old = {c: i for i, c in enumerate(warm_start.classes)}
        kept = [(j, old[str(c)]) for j, c in enumerate(classes) if str(c) in old]
        if kept:
            rows, prev = (list(t) for t in zip(*kept, strict=True))
            theta0[rows, :d] = warm_start.coef[prev]
            theta0[rows, d] = warm_start.intercept[prev]
    objective = make_objective(mode, Xn, labels, sw, reg, device=choose_device(device, n * d * k), threads=threads)
    with objective:
        theta, iterations = minimise(
            objective,
            theta0.ravel(),
            max_iter=max_iter,
            tol=tol,
            tol_change=tol_change,
            first_step=first_step(mode, Xn, sw, reg),
        )
    theta = theta.reshape(k, d + 1)
    return HeadWeights(
        mode,
        tuple(str(c) for c in classes),
        theta[:, :d].astype(np.float32),
        theta[:, d].astype(np.float32),
        C=float(C),
        class_weight="custom" if isinstance(class_weight, np.ndarray) else class_weight,
        max_iter=max_iter,
        tol=tol,
        n_iter=iterations,
    )
