"""Settings: limits on inputs, classification defaults and the default store location (env prefix ``VECCLF_``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.1.0"
DEFAULT_STORE = Path("index_data")

# Classification defaults, defined once for the Python API, the CLI and the HTTP API.
METHODS = ("auto", "knn", "head", "zeroshot")
"""Prediction methods; ``auto`` picks a fresh head, else k-NN, else zero-shot."""
MODES = ("auto", "exclusive", "multilabel")
"""Head training modes; ``auto`` picks exclusive when every example has one concept and none is negative."""
DEFAULT_K = 10
DEFAULT_TOP = 5
DEFAULT_C = 10.0  # see vecclf.classify.head: unit-norm embeddings want weaker regularisation than C=1
C_MIN, C_MAX = 1e-6, 1e6
"""The range of ``C`` the CLI, the HTTP API and the head accept (beyond it the fit is all penalty or none)."""
DEFAULT_UNKNOWN_QUANTILE = 0.01


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Limits:
    """Upper bounds that protect the process from hostile or accidental huge inputs."""

    max_image_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_video_bytes: int = 1024 * 1024 * 1024
    max_video_frames: int = 300
    video_fps: float = 1.0
    max_text_chars: int = 100_000
    max_text_file_bytes: int = 256 * 1024 * 1024  # a .txt file or a CSV/JSONL table

    @classmethod
    def from_env(cls) -> Limits:
        """Read overrides such as ``VECCLF_MAX_IMAGE_PIXELS`` and ``VECCLF_VIDEO_FPS``."""
        d = cls()
        return cls(
            max_image_bytes=_env_int("VECCLF_MAX_IMAGE_BYTES", d.max_image_bytes),
            max_image_pixels=_env_int("VECCLF_MAX_IMAGE_PIXELS", d.max_image_pixels),
            max_video_bytes=_env_int("VECCLF_MAX_VIDEO_BYTES", d.max_video_bytes),
            max_video_frames=_env_int("VECCLF_MAX_VIDEO_FRAMES", d.max_video_frames),
            video_fps=_env_float("VECCLF_VIDEO_FPS", d.video_fps),
            max_text_chars=_env_int("VECCLF_MAX_TEXT_CHARS", d.max_text_chars),
            max_text_file_bytes=_env_int("VECCLF_MAX_TEXT_FILE_BYTES", d.max_text_file_bytes),
        )


def default_store_path() -> Path:
    """The store directory: ``$VECCLF_STORE`` or ``./index_data``."""
    return Path(os.environ.get("VECCLF_STORE") or DEFAULT_STORE)


@dataclass(frozen=True)
class ServerLimits:
    """Request-level limits of the HTTP API (input decoding limits come from :class:`Limits`).

    The API validates requests against these and its OpenAPI document states them.
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_json_depth: int = 16
    max_files: int = 64
    max_texts: int = 1024
    max_k: int = 1000
    max_top: int = 100
    max_folds: int = 20
