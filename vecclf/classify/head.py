"""The logistic head: fitting in torch (exclusive softmax or one sigmoid per concept) and the fitted weights.

Full-batch L-BFGS with strong-Wolfe line search on the objective scikit-learn's ``LogisticRegression``
minimises (``C * sum(loss) + ||W||^2 / 2``, here divided by ``C * n``), so accuracy can be compared
one to one. Weights start from the class centroids, which on L2-normalised embeddings already sit near
the optimum's direction and cut the iterations needed.

``C`` defaults to 10, not 1: unit-norm embeddings have per-feature scale ~1/sqrt(d), so ``C=1`` (meant
for standardised features) shrinks the weights until probabilities are near uniform.

:class:`HeadWeights` is what a store keeps and a prediction uses (numpy only); the scikit-learn
estimator over the same code is :class:`vecclf.classify.estimators.LogisticHead`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..config import C_MAX, C_MIN, DEFAULT_C
from ..errors import InvalidInputError

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


def _device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


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
) -> HeadWeights:
    """Fit a head on ``X`` (n, d).

    ``target``: class indices (exclusive, at least two classes) or a multi-label matrix (see
    :func:`multilabel_targets`). ``class_weight``: ``"balanced"`` (each class weighs as much in total),
    None, or (exclusive) one weight per class. Stops after ``max_iter`` L-BFGS iterations, when the
    gradient's largest entry falls below ``tol``, or when an iteration changes the objective by less
    than ``tol_change``.
    """
    import torch

    Xn = np.ascontiguousarray(X, dtype=np.float32)
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
    dev = _device(device)
    if not Xn.flags.writeable:  # e.g. zero-copy from Arrow; torch wants writable memory
        Xn = Xn.copy()
    Xt = torch.from_numpy(Xn).to(dev)
    n, d = Xt.shape
    if mode == "exclusive":
        yt = torch.from_numpy(np.asarray(target, dtype=np.int64)).to(dev)
        counts = torch.bincount(yt, minlength=k).float()
        if isinstance(class_weight, np.ndarray):
            cw = torch.as_tensor(class_weight, dtype=torch.float32, device=dev)
        else:
            cw = n / (k * counts.clamp(min=1)) if class_weight == "balanced" else torch.ones(k, device=dev)
        sw = cw[yt]
        init = torch.zeros(k, d, device=dev).index_add_(0, yt, Xt) / counts.clamp(min=1)[:, None]
        labels = yt
    else:
        if isinstance(class_weight, np.ndarray):
            raise InvalidInputError("a multi-label head takes class_weight 'balanced' or None")
        Yt = torch.from_numpy(multilabel_targets(target, k).astype(np.float32)).to(dev)
        mask = (Yt != 0).float()
        pos = (Yt > 0).float()
        if (mask.sum(0) == 0).any() or (pos.sum(0) == 0).any():
            raise InvalidInputError("every concept needs at least one positive example")
        if class_weight == "balanced":
            n_pos, n_neg = pos.sum(0), (mask - pos).sum(0)
            n_lab = mask.sum(0)
            w_pos = n_lab / (2 * n_pos)
            w_neg = torch.where(n_neg > 0, n_lab / (2 * n_neg.clamp(min=1)), torch.zeros_like(n_neg))
            sw = mask * (pos * w_pos + (1 - pos) * w_neg)
        else:
            sw = mask
        init = (pos.T @ Xt) / pos.sum(0)[:, None]
        labels = pos
    W = init.clone()
    b = torch.zeros(k, device=dev)
    reg = 1.0 / (2.0 * C * n)
    iterations = _lbfgs(mode, Xt, labels, sw, W, b, reg, max_iter, tol, tol_change)
    return HeadWeights(
        mode,
        tuple(str(c) for c in classes),
        W.detach().float().cpu().numpy(),
        b.detach().float().cpu().numpy(),
        C=float(C),
        class_weight="custom" if isinstance(class_weight, np.ndarray) else class_weight,
        max_iter=max_iter,
        tol=tol,
        n_iter=iterations,
    )


def _loss_and_grad(mode: Mode, X: Any, target: Any, sw: Any, W: Any, b: Any, reg: float) -> Any:
    """Objective value; writes ``W.grad``/``b.grad``. One fused pass over cache-sized row chunks.

    Computing logits and the gradient chunk by chunk reads ``X`` from memory once per evaluation
    instead of twice (forward, then backward), which is what bounds the time on CPU.
    """
    import torch

    rows = X.shape[0]
    chunk = rows if X.is_cuda else 4096
    gW = torch.zeros_like(W)
    gb = torch.zeros_like(b)
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for start in range(0, rows, chunk):
        Xc = X[start : start + chunk]
        wc = sw[start : start + chunk]
        z = torch.addmm(b, Xc, W.T)
        if mode == "exclusive":
            yc = target[start : start + chunk]
            logp = torch.log_softmax(z, dim=1)
            total += -(logp.gather(1, yc[:, None]).squeeze(1) * wc).sum(dtype=torch.float64)
            G = logp.exp_()
            G[torch.arange(len(yc), device=X.device), yc] -= 1.0
            G *= wc[:, None]
        else:
            tc = target[start : start + chunk]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, tc, reduction="none")
            total += (loss * wc).sum(dtype=torch.float64)
            G = (torch.sigmoid(z) - tc) * wc
        gW.addmm_(G.T, Xc)
        gb += G.sum(0)
    W.grad = gW / rows + 2.0 * reg * W
    b.grad = gb / rows
    return (total / rows + reg * (W * W).sum(dtype=torch.float64)).float()


def _lbfgs(
    mode: Mode, X: Any, target: Any, sw: Any, W: Any, b: Any, reg: float, max_iter: int, tol: float, tol_change: float
) -> int:
    """Minimise mean weighted loss + ``reg * ||W||^2`` in place; returns iterations."""
    import torch

    opt = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol_change,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        with torch.no_grad():
            return _loss_and_grad(mode, X, target, sw, W, b, reg)

    opt.step(closure)
    return int(opt.state[opt._params[0]].get("n_iter", 0))
