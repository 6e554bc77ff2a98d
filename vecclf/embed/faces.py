"""Face embedder: dlib's detector, 5-point alignment and 128-d ResNet face descriptor.

The weights ship in the PyPI packages ``dlib-bin`` and ``face_recognition_models``; nothing is
downloaded. The embedder prepares its own items (:meth:`FaceEmbedder.prepare`): a photo becomes its
largest face, or every face when split, so nothing above the embedder knows about faces.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModalityError, ModelLoadError, NoFaceError
from ..inputs import ImageItem, Item, VideoItem
from .base import BaseEmbedder, Progress, file_fingerprint, normalise

CHIP_SIZE = 150
MAX_DETECT_SIDE = 2400  # pixels: larger photos are searched for faces at this size
_MAX_UPSAMPLED_SIDE = 2400
# Marks an aligned crop made by detect(), so embedding it does not run detection again.
_CHIP_MARK = "vecclf.face_chip"


@dataclass(frozen=True)
class Face:
    """A detected face: its box in the photo (left, top, right, bottom) and its aligned 150x150 crop."""

    box: tuple[int, int, int, int]
    chip: Image.Image

    @property
    def area(self) -> int:
        """Box area in pixels."""
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


def _models_dir() -> Path:
    # find_spec reads the location without running the package's __init__, which imports the
    # deprecated pkg_resources (and fails on setuptools >= 81).
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the faces preset needs the PyPI packages 'dlib-bin' and 'face_recognition_models' "
            "(pip install 'vecclf[faces]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceEmbedder(BaseEmbedder):
    """dlib face recognition (ResNet-34, 128-d), images only.

    ``upsample``: extra detector passes on an upscaled image when nothing is found at the original
    size (finds faces down to ~40 px; each pass costs ~4x the previous one; only while the upscaled photo
    stays within 2,400 px on a side).
    """

    name = "dlib-face-resnet-v1"
    joint = False
    modalities = frozenset({"image"})
    DIM = 128

    def __init__(self, *, upsample: int = 1, device: str | None = None, batch_size: int = 32) -> None:
        if not 0 <= upsample <= 2:
            raise ModelLoadError(f"upsample must be 0, 1 or 2, got {upsample}")
        self.upsample = upsample
        self.batch_size = batch_size
        self.device = "cpu"  # dlib-bin wheels are CPU builds; `device` is accepted for a uniform loader
        self._lock = threading.Lock()
        self._models: tuple[Any, Any, Any] | None = None

    @property
    def dim(self) -> int:
        return self.DIM

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "faces", "upsample": self.upsample}

    @property
    def identity(self) -> dict[str, Any]:
        weights = _models_dir() / "dlib_face_recognition_resnet_model_v1.dat"
        return {
            "kind": "faces",
            "model": self.name,
            "weights": file_fingerprint(weights) if weights.is_file() else None,
        }

    def spaces(self) -> dict[str, int]:
        return {"image": self.DIM}

    def _load(self) -> tuple[Any, Any, Any]:
        if self._models is None:
            try:
                import dlib
            except ImportError as exc:
                raise ModelLoadError(
                    "the faces preset needs dlib: pip install 'vecclf[faces]' (dlib-bin, face_recognition_models)"
                ) from exc
            models = _models_dir()
            paths = [
                models / "shape_predictor_5_face_landmarks.dat",
                models / "dlib_face_recognition_resnet_model_v1.dat",
            ]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise ModelLoadError(f"dlib model files missing: {', '.join(missing)}")
            self._models = (
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(paths[0])),
                dlib.face_recognition_model_v1(str(paths[1])),
            )
        return self._models

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in ``image``, largest first, each aligned to a 150x150 crop (empty when none).

        Photos past :data:`MAX_DETECT_SIDE` pixels on a side are searched at that size (boxes in the photo's own
        pixels): the detector's time grows with the pixels, and a face smaller than ~1% of such a photo is lost.
        """
        scale = min(1.0, MAX_DETECT_SIDE / max(image.size))
        if scale < 1.0:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        pixels = np.asarray(image.convert("RGB"))
        with self._lock:  # dlib's models keep scratch state: one call at a time
            detector, shapes, _ = self._load()
            import dlib  # importable: _load checked

            boxes = detector(pixels, 0)
            for level in range(1, self.upsample + 1):
                if len(boxes) or max(pixels.shape[:2]) << level > _MAX_UPSAMPLED_SIDE:
                    break  # found, or upscaling a large photo would cost seconds and gigabytes
                boxes = detector(pixels, level)
            faces = []
            for rect in boxes:
                chip = Image.fromarray(dlib.get_face_chip(pixels, shapes(pixels, rect), size=CHIP_SIZE))
                chip.info[_CHIP_MARK] = True
                h, w = pixels.shape[:2]
                clipped = (max(0, rect.left()), max(0, rect.top()), min(w, rect.right()), min(h, rect.bottom()))
                box = (
                    round(clipped[0] / scale),
                    round(clipped[1] / scale),
                    round(clipped[2] / scale),
                    round(clipped[3] / scale),
                )
                faces.append(Face(box=box, chip=chip))
        return sorted(faces, key=lambda f: -f.area)

    def _chip(self, image: Image.Image, n: int) -> Image.Image:
        if image.info.get(_CHIP_MARK):
            return image
        faces = self.detect(image)
        if not faces:
            raise NoFaceError(f"no face found in image {n}")
        return faces[0].chip

    def embed_images(self, images: Sequence[Image.Image], progress: Progress | None = None) -> np.ndarray:
        """Descriptor of each image's largest face (crops from :meth:`detect` are used as they are).

        Raises :class:`NoFaceError` when an image has no face.
        """
        if len(images) == 0:
            return np.zeros((0, self.DIM), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [
                np.asarray(self._chip(im, start + i)) for i, im in enumerate(images[start : start + self.batch_size])
            ]
            with self._lock:
                _, _, net = self._load()
                out.append(np.asarray(net.compute_face_descriptor(chunk), dtype=np.float32))
            if progress is not None:
                progress(len(chunk))
        return normalise(np.concatenate(out, axis=0))

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        raise ModalityError("the faces embedder has no text tower: store and query images only")

    def prepare(self, item: Item, *, split: bool = False) -> list[Item]:
        """``item`` reduced to aligned face crops: its largest face or, split, every face, largest first.

        Sources gain ``#face=left,top,right,bottom``. A video keeps the largest face of each sampled frame
        (split: one item per such frame). Raises :class:`NoFaceError` when nothing is left.
        """
        if isinstance(item, ImageItem):
            faces = self.detect(item.image)
            if not faces:
                raise NoFaceError(f"{item.source}: no face found")
            chosen = faces if split else faces[:1]
            return [
                ImageItem(
                    source=f"{item.source}#face={','.join(map(str, f.box))}",
                    image=f.chip,
                    content_hash=item.content_hash if n == 0 else f"{item.content_hash}#face{n}",
                )
                for n, f in enumerate(chosen)
            ]
        if isinstance(item, VideoItem):
            kept = [
                (f[0].chip, t, h)
                for f, t, h in zip(map(self.detect, item.frames), item.timestamps, item.frame_hashes)
                if f
            ]
            if not kept:
                raise NoFaceError(f"{item.source}: no face found in any sampled frame")
            video = VideoItem(
                source=item.source,
                content_hash=item.content_hash,
                frames=[c for c, _, _ in kept],
                timestamps=[t for _, t, _ in kept],
                frame_hashes=[h for _, _, h in kept],
            )
            return super().prepare(video, split=split)
        raise ModalityError("the faces embedder has no text tower: store and query images only")
