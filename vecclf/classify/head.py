"""Logistic head in torch: exclusive (softmax) or multi-label (one sigmoid per concept).

Full-batch L-BFGS with strong-Wolfe line search on the objective scikit-learn's
``LogisticRegression`` minimises (``C * sum(loss) + ||W||^2 / 2``, here divided by
``C * n``), so accuracy can be compared one to one. Weights start from the class
centroids, which on L2-normalised embeddings already sit near the optimum's direction
and cut the iterations needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError, NotFittedError

Mode = Literal["exclusive", "multilabel"]
HEAD_FORMAT = 1


def _device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class LogisticHead:
    """A linear classifier over embeddings, scikit-learn style.

    ``C`` is the inverse L2 strength as in scikit-learn; its default is 10, not 1, because
    unit-norm embeddings have per-feature scale ~1/sqrt(d), so ``C=1`` (meant for
    standardised features) shrinks the weights until probabilities are near uniform.

    Training stops after ``max_iter`` L-BFGS iterations, when the gradient's largest entry
    falls below ``tol``, or when an iteration changes the objective by less than
    ``tol_change``.

    ``mode="exclusive"``: ``fit(X, y)`` with one label per row, softmax probabilities.
    ``mode="multilabel"``: ``fit(X, Y, classes=...)`` with ``Y[i, c]`` = +1 positive,
    -1 negative, 0 unlabelled (ignored for that concept); independent sigmoids.
    """

    def __init__(
        self,
        mode: Mode = "exclusive",
        *,
        C: float = 10.0,
        class_weight: Literal["balanced"] | None = "balanced",
        max_iter: int = 100,
        tol: float = 1e-5,
        tol_change: float = 3e-4,
        device: str | None = None,
    ) -> None:
        self.mode = mode
        self.tol_change = tol_change
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    # ---------------------------------------------------------------- fitting
    def _targets(self, y: Any, classes: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
        if self.mode == "exclusive":
            labels = [str(v) for v in np.asarray(y).tolist()]
            names = sorted(set(labels))
            if len(names) < 2:
                raise InvalidInputError("an exclusive head needs at least two concepts")
            col = {c: j for j, c in enumerate(names)}
            return np.array([col[v] for v in labels], dtype=np.int64), names
        Y = np.asarray(y, dtype=np.int8)
        if classes is None or Y.ndim != 2 or Y.shape[1] != len(classes):
            raise InvalidInputError("a multi-label head needs Y of shape (n, len(classes)) and classes")
        if not np.all(np.isin(Y, (-1, 0, 1))):
            raise InvalidInputError("multi-label targets must be +1, -1 or 0")
        return Y, [str(c) for c in classes]

    def fit(self, X: np.ndarray, y: Any, *, classes: Sequence[str] | None = None) -> LogisticHead:
        """Train on ``X`` (n, d) and labels; returns ``self``."""
        import torch

        Xn = np.ascontiguousarray(X, dtype=np.float32)
        if Xn.ndim != 2 or len(Xn) == 0:
            raise InvalidInputError(f"expected a non-empty 2-D array, got shape {Xn.shape}")
        if not np.all(np.isfinite(Xn)):
            raise InvalidInputError("X contains NaN or Inf")
        if self.C <= 0 or self.max_iter <= 0:
            raise InvalidInputError("C and max_iter must be positive")
        target, names = self._targets(y, classes)
        if len(target) != len(Xn):
            raise InvalidInputError(f"X has {len(Xn)} rows but {len(target)} labels")
        dev = _device(self.device)
        if not Xn.flags.writeable:  # e.g. zero-copy from Arrow; torch wants writable memory
            Xn = Xn.copy()
        Xt = torch.from_numpy(Xn).to(dev)
        n, d = Xt.shape
        k = len(names)
        if self.mode == "exclusive":
            yt = torch.from_numpy(target).to(dev)
            counts = torch.bincount(yt, minlength=k).float()
            cw = n / (k * counts) if self.class_weight == "balanced" else torch.ones(k, device=dev)
            sw = cw[yt]
            init = torch.zeros(k, d, device=dev).index_add_(0, yt, Xt) / counts[:, None]
        else:
            Yt = torch.from_numpy(target.astype(np.float32)).to(dev)
            mask = (Yt != 0).float()
            pos = (Yt > 0).float()
            if (mask.sum(0) == 0).any() or (pos.sum(0) == 0).any():
                raise InvalidInputError("every concept needs at least one positive example")
            if self.class_weight == "balanced":
                n_pos, n_neg = pos.sum(0), (mask - pos).sum(0)
                n_lab = mask.sum(0)
                w_pos = n_lab / (2 * n_pos)
                w_neg = torch.where(n_neg > 0, n_lab / (2 * n_neg.clamp(min=1)), torch.zeros_like(n_neg))
                sw = mask * (pos * w_pos + (1 - pos) * w_neg)
            else:
                sw = mask
            init = (pos.T @ Xt) / pos.sum(0)[:, None]
        W = init.clone()
        b = torch.zeros(k, device=dev)
        reg = 1.0 / (2.0 * self.C * n)  # the full-data objective's strength, also on the subsample
        labels = yt if self.mode == "exclusive" else pos
        self.n_evals_ = 0
        iterations = self._lbfgs(Xt, labels, sw, W, b, reg, self.max_iter)
        self.n_iter_ = iterations
        self.coef_ = W.detach().float().cpu().numpy()
        self.intercept_ = b.detach().float().cpu().numpy()
        self.classes_ = np.array(names, dtype=object)
        return self

    def _loss_and_grad(self, X: Any, target: Any, sw: Any, W: Any, b: Any, reg: float) -> Any:
        """Objective value; writes ``W.grad``/``b.grad``. One fused pass over cache-sized row chunks.

        Computing logits and the gradient chunk by chunk reads ``X`` from memory once per
        evaluation instead of twice (forward, then backward), which is what bounds the time on CPU.
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
            if self.mode == "exclusive":
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

    def _lbfgs(self, X: Any, target: Any, sw: Any, W: Any, b: Any, reg: float, max_iter: int) -> int:
        """Minimise mean weighted loss + ``reg * ||W||^2`` over these rows in place; returns iterations."""
        import torch

        opt = torch.optim.LBFGS(
            [W, b],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=self.tol,
            tolerance_change=self.tol_change,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            self.n_evals_ += 1
            with torch.no_grad():
                return self._loss_and_grad(X, target, sw, W, b, reg)

        opt.step(closure)
        return int(opt.state[opt._params[0]].get("n_iter", 0))

    # ---------------------------------------------------------------- predicting
    def _check(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("LogisticHead is not fitted yet; call fit first (vecclf train)")
        Xn = np.asarray(X, dtype=np.float32)
        if Xn.ndim != 2 or Xn.shape[0] == 0 or Xn.shape[1] != self.coef_.shape[1]:
            raise InvalidInputError(f"expected a non-empty (n, {self.coef_.shape[1]}) array, got shape {Xn.shape}")
        if not np.all(np.isfinite(Xn)):
            raise InvalidInputError("X contains NaN or Inf")
        return Xn

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw logits ``(n, n_classes)``."""
        Xn = self._check(X)
        return Xn @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax (exclusive) or per-concept sigmoid (multi-label) probabilities, columns in ``classes_`` order."""
        z = self.decision_function(X).astype(np.float64)
        if self.mode == "exclusive":
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class per row."""
        best = np.argmax(self.decision_function(X), axis=1)  # checks fitted-ness first
        return self.classes_[best]

    # ---------------------------------------------------------------- persistence (no pickle)
    def to_state(self) -> tuple[str, dict[str, np.ndarray]]:
        """``(JSON metadata, arrays)`` for storage."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("nothing to save: the head is not fitted")
        meta = {
            "format": HEAD_FORMAT,
            "mode": self.mode,
            "C": self.C,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "classes": [str(c) for c in self.classes_],
            "n_iter": self.n_iter_,
        }
        return json.dumps(meta), {"coef": self.coef_, "intercept": self.intercept_}

    @classmethod
    def from_state(cls, meta_json: str, arrays: dict[str, np.ndarray]) -> LogisticHead:
        """Rebuild a fitted head from :meth:`to_state` output."""
        meta = json.loads(meta_json)
        if meta.get("format") != HEAD_FORMAT:
            raise InvalidInputError(f"unsupported head format {meta.get('format')}")
        head = cls(
            meta["mode"], C=meta["C"], class_weight=meta["class_weight"], max_iter=meta["max_iter"], tol=meta["tol"]
        )
        head.coef_ = np.asarray(arrays["coef"], dtype=np.float32)
        head.intercept_ = np.asarray(arrays["intercept"], dtype=np.float32)
        head.classes_ = np.array(meta["classes"], dtype=object)
        head.n_iter_ = int(meta.get("n_iter", 0))
        return head
