"""Zero-shot classification from concept names through the text tower, and blending with few examples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embed import Embedder
from ..errors import ModalityError

IMAGE_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "an image of {}.", "{}")
TEXT_TEMPLATES = ("{}", "this is about {}.", "a question about {}.")
LOGIT_SCALE = 100.0  # CLIP's learned temperature; softmax over cosine * 100


def readable(name: str) -> str:
    """``lost_card`` / ``lost-card`` -> ``lost card``."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def prompt_vectors(embedder: Embedder, names: Sequence[str], query_space: str) -> np.ndarray:
    """One unit vector per concept: the mean of its prompt embeddings.

    Raises :class:`ModalityError` when texts are not embedded into ``query_space``.
    """
    if "text" not in embedder.modalities or embedder.space_of("text") != query_space:
        raise ModalityError(
            f"zero-shot needs concept names embedded in the same space as the query ({query_space}); "
            "this embedder keeps texts apart — image zero-shot needs a joint (CLIP) model"
        )
    templates = IMAGE_TEMPLATES if embedder.joint else TEXT_TEMPLATES
    prompts = [t.format(readable(n)) for n in names for t in templates]
    vecs = embedder.embed_texts(prompts).reshape(len(names), len(templates), -1).mean(axis=1)
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def zeroshot_proba(queries: np.ndarray, class_vecs: np.ndarray, scale: float = LOGIT_SCALE) -> np.ndarray:
    """Softmax over scaled cosine similarities, ``(n, C)``."""
    z = (queries @ class_vecs.T).astype(np.float64) * scale
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def blend(zeroshot: np.ndarray, knn_scores: np.ndarray, counts: np.ndarray, prior_weight: float = 2.0) -> np.ndarray:
    """Per concept, ``(n_c * knn + m * zeroshot) / (n_c + m)``: the name counts as ``m`` examples."""
    lam = counts / (counts + prior_weight)
    return lam * knn_scores + (1.0 - lam) * zeroshot
