"""Embedding: presets (:mod:`.registry`), the built-in models, and one batched :func:`embed_items`.

``base`` holds the :class:`Embedder` protocol; ``openclip``, ``offline`` and ``faces`` the models;
``items`` turns decoded inputs into vectors, one model call per modality for a whole batch.
"""

from .base import Embedder, Progress
from .items import Embedded, Embedding, embed_items, pool_frames
from .registry import DEFAULT_MODEL, PRESETS, input_side, load_embedder, parse_model

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Embedded",
    "Embedder",
    "Embedding",
    "Progress",
    "embed_items",
    "input_side",
    "load_embedder",
    "parse_model",
    "pool_frames",
]
