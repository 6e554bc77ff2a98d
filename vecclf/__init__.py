"""vecclf: classify images, videos and texts by embedding them once into a local vector store.

The names below are the public API (``dir(vecclf)`` lists them); they load on first use, so that
``import vecclf`` and ``vecclf --help`` stay instant.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# OpenMP threads (FAISS's, torch's) otherwise spin for a while after each parallel call, taking the CPU from
# the DuckDB and numpy work that follows a search: on 2 cores a new concept's add + predict took twice as long.
# OpenBLAS's threads (numpy's, and FAISS's own copy) likewise spin for 2^28 cycles (~0.1 s) after each product
# unless told to sleep at once: a new concept's DuckDB statements ran ~30% slower behind them.
# Read when each runtime loads, so they must be set before numpy, faiss or torch is imported; a user's choice wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # 2^4 cycles, OpenBLAS's least

from .config import VERSION as __version__
from .errors import VecclfError

if TYPE_CHECKING:
    from .classifier import AddReport, ConceptClassifier, Hit, Prediction, import_path
    from .classify.estimators import KNNClassifier, LogisticHead
    from .config import Limits, ServerLimits
    from .embed import embed_items, load_embedder
    from .errors import NotFittedError
    from .inputs import Failure, ImageItem, TextItem, VideoItem
    from .server import create_app
    from .store import InputRecord, NewInput, Store

_LAZY = {
    "AddReport": ".classifier",
    "ConceptClassifier": ".classifier",
    "Hit": ".classifier",
    "Prediction": ".classifier",
    "import_path": ".classifier",
    "KNNClassifier": ".classify.estimators",
    "LogisticHead": ".classify.estimators",
    "Limits": ".config",
    "ServerLimits": ".config",
    "embed_items": ".embed",
    "load_embedder": ".embed",
    "NotFittedError": ".errors",
    "Failure": ".inputs",
    "ImageItem": ".inputs",
    "TextItem": ".inputs",
    "VideoItem": ".inputs",
    "create_app": ".server",
    "InputRecord": ".store",
    "NewInput": ".store",
    "Store": ".store",
}

__all__ = [
    "AddReport",
    "ConceptClassifier",
    "Failure",
    "Hit",
    "ImageItem",
    "InputRecord",
    "KNNClassifier",
    "Limits",
    "LogisticHead",
    "NewInput",
    "NotFittedError",
    "Prediction",
    "ServerLimits",
    "Store",
    "TextItem",
    "VecclfError",
    "VideoItem",
    "__version__",
    "create_app",
    "embed_items",
    "import_path",
    "load_embedder",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vecclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)
