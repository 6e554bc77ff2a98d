"""Images: bytes or PIL images decoded to RGB within the byte and pixel limits; thumbnails."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import Limits
from ..errors import InvalidInputError, LimitExceededError
from .items import ImageItem, sha256_hex


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any PIL mode (CMYK, 16-bit, float, palette, alpha) to 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(data: bytes, *, source: str, limits: Limits, draft: int | None = None) -> ImageItem:
    """Decode image bytes into an :class:`ImageItem`, enforcing byte and pixel limits.

    Animated images contribute their first frame; EXIF orientation is applied. ``draft``: the
    smallest side the embedder needs; a JPEG much larger than that is decoded at 1/2, 1/4 or
    1/8 scale by the JPEG decoder itself (never below ``draft``), which is several times faster.
    """
    if len(data) == 0:
        raise InvalidInputError(f"{source}: empty file (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise LimitExceededError(
            f"{source}: {len(data)} bytes exceeds the image limit of {limits.max_image_bytes} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise LimitExceededError(
                    f"{source}: {width}x{height} pixels exceeds the limit of {limits.max_image_pixels} pixels"
                )
            img.seek(0)
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
            rgb = to_rgb(ImageOps.exif_transpose(img) or img)
    except LimitExceededError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(f"{source}: image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InvalidInputError(f"{source}: not a recognised image file") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"{source}: corrupt or truncated image ({exc})") from exc
    return ImageItem(source=source, image=rgb, content_hash=sha256_hex(data))


def thumbnail_jpeg(image: Image.Image, size: int = 128) -> bytes:
    """A JPEG of ``image`` at most ``size`` pixels on a side."""
    small = image.copy()
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.convert("RGB").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def image_from_pil(img: Image.Image, *, source: str, limits: Limits) -> ImageItem:
    """Wrap an in-memory PIL image; its hash covers the decoded pixels."""
    if img.width * img.height > limits.max_image_pixels:
        raise LimitExceededError(f"{source}: {img.width}x{img.height} pixels exceeds the limit")
    rgb = to_rgb(img)
    return ImageItem(source=source, image=rgb, content_hash=sha256_hex(rgb.tobytes() + repr(rgb.size).encode()))
