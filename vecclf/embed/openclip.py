"""OpenCLIP embedders: any ``open_clip`` model, weights by pretrained tag (huggingface_hub) or local checkpoint.

Image and text towers share one (*joint*) space, so texts and images compare with each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelLoadError
from .base import BaseEmbedder, Progress, batched, bounded_aspect, file_fingerprint, image_batch, pick_device
from .catalog import hub_reachable

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
TINY_CLIP = "vecclf-tiny-clip"
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"


@contextmanager
def _offline_unlesshub_reachable() -> Iterator[None]:
    """Without a route to the hub, load in hub-offline mode: cached weights still load, missing
    ones fail at once instead of after huggingface_hub's ~50 s of retries."""
    from huggingface_hub import constants

    if hub_reachable():
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


class OpenCLIPEmbedder(BaseEmbedder):
    """Any ``open_clip`` model: a pretrained tag (fetched through huggingface_hub), a local checkpoint, or none.

    ``pretrained=None`` gives random weights seeded by ``seed`` so that every process
    builds the same model (used by the tiny test config).
    """

    joint = True
    modalities = frozenset({"image", "text"})

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
        *,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        precision: str | None = None,
        batch_size: int = 64,
        image_batch_size: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        import open_clip
        import torch

        open_clip.add_model_config(CONFIG_DIR)
        self.model_name = model
        self.device = pick_device(device)
        self.precision = precision or ("fp16" if self.device == "cuda" else "fp32")
        self.batch_size = batch_size  # texts per forward pass
        self.image_batch_size = image_batch(self.device, image_batch_size)
        self._checkpoint = Path(checkpoint).expanduser().resolve() if checkpoint else None
        if self._checkpoint is not None:
            if not self._checkpoint.is_file():
                raise ModelLoadError(f"checkpoint file not found: {self._checkpoint}")
            self.pretrained: str | None = f"file:{self._checkpoint.name}:{file_fingerprint(self._checkpoint)}"
            weights: str | None = str(self._checkpoint)
        else:
            self.pretrained = pretrained
            weights = pretrained
        self._seed = seed
        if model not in open_clip.list_models():
            raise ModelLoadError(
                f"unknown OpenCLIP model {model!r}; see open_clip.list_models() (e.g. {DEFAULT_CLIP_MODEL}, ViT-L-14)"
            )
        hub = _offline_unlesshub_reachable() if weights and self._checkpoint is None else nullcontext()
        try:
            with hub, torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._model, _, self._preprocess = open_clip.create_model_and_transforms(
                    model, pretrained=weights, precision=self.precision, device=self.device, cache_dir=cache_dir
                )
        except Exception as exc:
            if self._checkpoint is not None:
                raise ModelLoadError(f"cannot load checkpoint {self._checkpoint} into {model}: {exc}") from exc
            raise ModelLoadError(
                f"cannot load pretrained weights {pretrained!r} for {model} ({exc}). "
                "On a machine without access to the model hub, download the checkpoint elsewhere "
                "(e.g. open_clip_pytorch_model.bin from the model's Hugging Face page) and pass "
                "--checkpoint /path/to/file (Python: checkpoint=...), or use the offline preset "
                "with --model offline."
            ) from exc
        self._model.eval()
        self._tokenizer = open_clip.get_tokenizer(model)
        self._dtype = next(self._model.parameters()).dtype
        embed_dim = getattr(self._model, "embed_dim", None)
        if embed_dim is None:
            with torch.inference_mode():
                embed_dim = int(self._model.encode_text(self._tokenizer(["x"]).to(self.device)).shape[-1])
        self._dim = int(embed_dim)
        self.name = f"open_clip:{model}:{self.pretrained or 'random'}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> Any:
        """The underlying ``open_clip`` model (a torch module)."""
        return self._model

    @property
    def input_size(self) -> int:
        """Side of the square the image tower sees."""
        size = getattr(self._model.visual, "image_size", 224)
        return int(max(size) if isinstance(size, (tuple, list)) else size)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": "open_clip", "model": self.model_name, "seed": self._seed}
        if self._checkpoint is not None:
            spec["checkpoint"] = str(self._checkpoint)
        else:
            spec["pretrained"] = self.pretrained
        return spec

    @property
    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"kind": "open_clip", "model": self.model_name, "pretrained": self.pretrained}
        if self.pretrained is None:
            ident["seed"] = self._seed
        return {**ident, "dim": self._dim}

    def spaces(self) -> dict[str, int]:
        return {"joint": self._dim}

    def embed_images(self, images: Sequence[Image.Image], progress: Progress | None = None) -> np.ndarray:
        import torch

        def run(chunk: Sequence[Image.Image]) -> np.ndarray:
            batch = torch.stack([self._preprocess(bounded_aspect(im)) for im in chunk]).to(self.device, self._dtype)
            with torch.inference_mode():
                return self._model.encode_image(batch).float().cpu().numpy()

        return batched(images, self.image_batch_size, run, self._dim, progress)

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        import torch

        def run(chunk: Sequence[str]) -> np.ndarray:
            tokens = self._tokenizer(list(chunk)).to(self.device)
            with torch.inference_mode():
                return self._model.encode_text(tokens).float().cpu().numpy()

        return batched(texts, self.batch_size, run, self._dim, progress)
