"""L-BFGS for the logistic head, and the head's objective on the CPU (numpy) or a GPU (torch).

The optimiser keeps its state in float64 numpy vectors of size ``k * (d + 1)`` (small: the weights, not the
data); an objective evaluates the loss and gradient over the data in float32, fused in one pass over
row chunks so that ``X`` is read from memory once per evaluation. The CPU objective needs numpy only, so
training a head does not import torch (seconds in a fresh process); ``torch.optim.LBFGS`` is not used
because its constructor imports ``torch._dynamo`` (seconds more).

Threads: BLAS threads cost more than they save on small problems, above all on a busy machine, so a
CPU fit uses one thread below :data:`THREADED_WORK` multiply-adds per pass and every thread above it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import numpy as np

from ..errors import InvalidInputError

THREADED_WORK = 3e7
"""Multiply-adds per pass (``n * d * k``) from which a CPU fit uses all BLAS threads."""
GPU_WORK = 1e9
"""Multiply-adds per pass from which ``device=None`` uses a GPU when torch (already imported) sees one."""
IMPORT_WORK = 2e10
"""... and from which it imports torch to ask: below it a CPU fit takes less time than that import."""
HISTORY = 20
"""Curvature pairs L-BFGS keeps."""
CHUNK_BYTES = 1 << 20
"""Rows of ``X`` per chunk of a pass: about this many bytes, so the chunk is still in cache for the gradient."""


def choose_device(requested: str | None, work: float) -> str:
    """``requested`` itself, or ``cuda`` for large problems when torch sees a GPU, else ``cpu``.

    Small problems never import torch: its import and CUDA's start cost more than their whole CPU fit.
    """
    if requested is not None:
        if requested != "cpu" and not requested.startswith("cuda"):
            raise InvalidInputError(f"device must be cpu or cuda, got {requested!r}")
        return requested
    if work < GPU_WORK or ("torch" not in sys.modules and work < IMPORT_WORK):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Objective(AbstractContextManager["Objective"]):
    """Mean weighted logistic loss + ``reg * ||W||^2`` of parameters ``theta`` (``k`` rows of ``W | b``)."""

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``(value, gradient)`` at ``theta`` (flat float64)."""
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        return None


class NumpyObjective(Objective):
    """The objective on the CPU: float32 GEMMs over row chunks, BLAS threads chosen by problem size."""

    def __init__(
        self, mode: str, X: np.ndarray, target: np.ndarray, sw: np.ndarray, reg: float, threads: int | None
    ) -> None:
        self.mode, self.X, self.target, self.sw, self.reg = mode, np.ascontiguousarray(X), target, sw, reg
        d = X.shape[1]
        self.k = max(target.shape[1] if mode == "multilabel" else int(target.max()) + 1, 1)
        self.chunk = max(256, CHUNK_BYTES // (4 * d))
        self._threads = threads
        self._stack = ExitStack()

    def __enter__(self) -> NumpyObjective:
        from threadpoolctl import threadpool_limits

        n, d = self.X.shape
        threads = self._threads
        if threads is None and n * d * self.k < THREADED_WORK:
            threads = 1
        if threads is not None:
            self._stack.enter_context(threadpool_limits(limits=threads, user_api="blas"))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        n, d = self.X.shape
        P = theta.reshape(-1, d + 1)
        W = np.ascontiguousarray(P[:, :d], dtype=np.float32)
        b = P[:, d].astype(np.float32)
        gW = np.zeros(W.shape, dtype=np.float32)
        gb = np.zeros(len(b), dtype=np.float64)
        total = 0.0
        for start in range(0, n, self.chunk):
            Xc = self.X[start : start + self.chunk]
            wc = self.sw[start : start + self.chunk]
            z = Xc @ W.T
            z += b
            if self.mode == "exclusive":
                yc = self.target[start : start + self.chunk]
                rows = np.arange(len(yc))
                z -= z.max(axis=1, keepdims=True)
                G = np.exp(z)
                norm = G.sum(axis=1)
                total -= float(np.dot(z[rows, yc] - np.log(norm), wc.astype(np.float64)))
                G /= norm[:, None]
                G[rows, yc] -= 1.0
                G *= wc[:, None]
            else:
                tc = self.target[start : start + self.chunk]
                # log(1 + exp(z)) - t z, written so that neither exp overflows
                loss = np.logaddexp(0.0, z) - tc * z
                total += float((loss * wc).sum(dtype=np.float64))
                G = 1.0 / (1.0 + np.exp(-z))
                G -= tc
                G *= wc
            gW += G.T @ Xc
            gb += G.sum(axis=0, dtype=np.float64)
        Wd = P[:, :d]
        grad = np.empty_like(P)
        grad[:, :d] = gW / n + 2.0 * self.reg * Wd
        grad[:, d] = gb / n
        return total / n + self.reg * float((Wd * Wd).sum()), grad.ravel()


class TorchObjective(Objective):
    """The same objective on a torch device (a GPU), the data copied there once."""

    def __init__(self, mode: str, X: np.ndarray, target: np.ndarray, sw: np.ndarray, reg: float, device: str) -> None:
        import torch

        self.torch, self.mode, self.reg, self.device = torch, mode, reg, device
        X = X if X.flags.writeable else X.copy()  # e.g. zero-copy from Arrow; torch wants writable memory
        self.X = torch.from_numpy(np.ascontiguousarray(X)).to(device)
        self.sw = torch.from_numpy(np.ascontiguousarray(sw)).to(device)
        if mode == "exclusive":
            self.target = torch.from_numpy(np.asarray(target, dtype=np.int64)).to(device)
        else:
            self.target = torch.from_numpy(np.asarray(target, dtype=np.float32)).to(device)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        torch = self.torch
        n, d = self.X.shape
        P = torch.from_numpy(theta.reshape(-1, d + 1).astype(np.float32)).to(self.device)
        W, b = P[:, :d], P[:, d]
        z = torch.addmm(b, self.X, W.T)
        if self.mode == "exclusive":
            logp = torch.log_softmax(z, dim=1)
            total = -(logp.gather(1, self.target[:, None]).squeeze(1) * self.sw).sum(dtype=torch.float64)
            G = logp.exp_()
            G[torch.arange(n, device=self.X.device), self.target] -= 1.0
            G *= self.sw[:, None]
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, self.target, reduction="none")
            total = (loss * self.sw).sum(dtype=torch.float64)
            G = (torch.sigmoid(z) - self.target) * self.sw
        grad = torch.cat([G.T @ self.X, G.sum(0)[:, None]], dim=1).double().cpu().numpy() / n
        Wd = theta.reshape(-1, d + 1)[:, :d]
        grad[:, :d] += 2.0 * self.reg * Wd
        return float(total) / n + self.reg * float((Wd * Wd).sum()), grad.ravel()


def make_objective(
    mode: str, X: np.ndarray, target: np.ndarray, sw: np.ndarray, reg: float, *, device: str, threads: int | None
) -> Objective:
    """The head's objective for ``device`` (``cpu``: numpy; otherwise torch on that device)."""
    if device == "cpu":
        return NumpyObjective(mode, X, target, sw, reg, threads)
    return TorchObjective(mode, X, target, sw, reg, device)


SCALE_ROWS = 8192
"""Rows (at least; an eighth of them on larger sets) on which :func:`scaled_start` picks the start's scale."""


def scaled_start(mode: str, X: np.ndarray, target: np.ndarray, sw: np.ndarray, reg: float, W0: np.ndarray) -> float:
    """The scale ``a`` that minimises the objective along ``a * W0`` (intercepts zero), by Newton's method.

    Class centroids point the right way but, on unit-norm embeddings, are orders of magnitude too short
    (probabilities start near uniform). One scalar fitted on a subset of rows (a 1-D problem does not
    overfit) moves the start most of the way to the optimum for one GEMM over the subset.
    """
    n = len(X)
    rows = min(n, max(SCALE_ROWS, n // 8))
    pick = np.sort(np.random.default_rng(0).choice(n, rows, replace=False)) if rows < n else slice(None)
    Z = (X[pick] @ W0.T.astype(np.float32)).astype(np.float64)
    w = sw[pick].astype(np.float64)
    t = target[pick]
    norm2 = float((W0 * W0).sum())
    a = 1.0
    for _ in range(20):
        if mode == "exclusive":
            z = a * Z
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            mean_z = (p * Z).sum(axis=1)
            grad = float(w @ (mean_z - Z[np.arange(len(t)), t]))
            curv = float(w @ ((p * Z * Z).sum(axis=1) - mean_z * mean_z))
        else:
            p = 1.0 / (1.0 + np.exp(-a * Z))
            grad = float(((p - t) * Z * w).sum())
            curv = float((p * (1 - p) * Z * Z * w).sum())
        grad = grad / len(Z) + 2 * reg * a * norm2
        curv = curv / len(Z) + 2 * reg * norm2
        step = grad / max(curv, 1e-12)
        a = float(np.clip(a - step, a / 4, a * 64))  # Newton, kept from leaping while far off
        if abs(step) <= 1e-3 * a:
            break
    return a


def first_step(mode: str, X: np.ndarray, sw: np.ndarray, reg: float) -> float:
    """A safe first step along ``-g``: one over a bound on the objective's curvature.

    The loss's Hessian is at most 1/2 (softmax) or 1/4 (sigmoid) times the weighted second moment of the rows
    with their intercept feature, whose trace bounds its largest eigenvalue.
    """
    moment = (np.einsum("ij,ij->i", X, X, dtype=np.float64) + 1.0) / len(X)
    weighted = float(moment @ sw) if sw.ndim == 1 else float((moment @ sw).max())
    return 1.0 / ((0.5 if mode == "exclusive" else 0.25) * weighted + 2.0 * reg)


def minimise(
    f: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    tol_change: float = 3e-4,
    history: list[list[Any]] | None = None,
    first_step: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Minimise a smooth convex ``f`` from ``x0`` by L-BFGS with a backtracking (Armijo) line search.

    Stops after ``max_iter`` iterations, when the gradient's largest entry is at most ``tol``, or when an
    iteration changes ``f`` or any entry of ``x`` by less than ``tol_change`` (the rules of
    ``torch.optim.LBFGS``, whose settings the head used before). ``history``: ``[s, y, rho]`` lists of
    curvature pairs to start from, updated in place. Returns ``(x, iterations)``.
    """
    x = np.array(x0, dtype=np.float64)
    fx, g = f(x)
    if not np.isfinite(fx):
        raise InvalidInputError("the head's objective is not finite at the start")
    s_hist, y_hist, rho = history if history is not None else ([], [], [])
    iterations = 0
    while iterations < max_iter and np.abs(g).max() > tol:
        iterations += 1
        direction = _two_loop(g, s_hist, y_hist, rho)
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction (rounding): restart from steepest descent
            for kept in (s_hist, y_hist, rho):
                kept.clear()
            direction, slope = -g, -float(g @ g)
        step = 1.0 if s_hist else first_step
        x_new, f_new, g_new = _armijo(f, x, fx, direction, slope, step)
        if x_new is None:
            break
        s, yv = x_new - x, g_new - g
        sy = float(s @ yv)
        if sy > 1e-10 * float(yv @ yv):  # keep the pair only where curvature is positive
            s_hist.append(s)
            y_hist.append(yv)
            rho.append(1.0 / sy)
            if len(s_hist) > HISTORY:
                del s_hist[0], y_hist[0], rho[0]
        change = abs(fx - f_new)
        x, fx, g = x_new, f_new, g_new
        probe = len(s_hist) <= 1 and iterations == 1  # the first step is a guess along -g: too short says nothing
        if not probe and (change < tol_change or np.abs(s).max() < tol_change):
            break
    return x, iterations


def _two_loop(g: np.ndarray, s_hist: list[np.ndarray], y_hist: list[np.ndarray], rho: list[float]) -> np.ndarray:
    """``-H g`` for the L-BFGS inverse Hessian estimate ``H`` of the stored pairs."""
    q = g.copy()
    alphas = []
    for s, y, r in zip(reversed(s_hist), reversed(y_hist), reversed(rho), strict=True):
        a = r * float(s @ q)
        alphas.append(a)
        q -= a * y
    if s_hist:
        q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
    for s, y, r, a in zip(s_hist, y_hist, rho, reversed(alphas), strict=True):
        q += (a - r * float(y @ q)) * s
    return -q


def _armijo(
    f: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray,
    fx: float,
    direction: np.ndarray,
    slope: float,
    step: float,
) -> tuple[Any, float, np.ndarray]:
    """The first step along ``direction`` that decreases ``f`` enough (quadratic backtracking), or ``None``."""
    for _ in range(30):
        x_new = x + step * direction
        f_new, g_new = f(x_new)
        if np.isfinite(f_new) and f_new <= fx + 1e-4 * step * slope:
            return x_new, f_new, g_new
        # minimiser of the quadratic through f(0), f'(0) and f(step), kept within [0.1, 0.5] of the step
        if np.isfinite(f_new):
            quad = -slope * step * step / (2.0 * (f_new - fx - slope * step))
            step = float(np.clip(quad, 0.1 * step, 0.5 * step))
        else:
            step *= 0.1
    return None, fx, direction
