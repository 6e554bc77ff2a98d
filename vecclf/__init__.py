"""vecclf: classify images, videos and texts by embedding them once into a local vector store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import NotFittedError, VecclfError

if TYPE_CHECKING:
    from .classifier import ConceptClassifier
    from .classify.estimators import KNNClassifier
    from .classify.head import LogisticHead
    from .embed import load_embedder
    from .store import Store

__all__ = [
    "ConceptClassifier",
    "KNNClassifier",
    "LogisticHead",
    "NotFittedError",
    "Store",
    "VecclfError",
    "__version__",
    "load_embedder",
]

_LAZY = {
    "ConceptClassifier": ".classifier",
    "KNNClassifier": ".classify.estimators",
    "LogisticHead": ".classify.head",
    "Store": ".store",
    "load_embedder": ".embed",
}


def __getattr__(name: str) -> Any:
    # Heavy modules (torch, faiss, duckdb) load on first use so `vecclf --help` stays instant.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vecclf' has no attribute {name!r}")
