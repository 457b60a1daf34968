"""Safe image decoding: size and pixel limits checked from the header before any pixel is decoded."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 64 * 1024 * 1024
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "TIFF", "WEBP"})


class ImageRejected(ValueError):
    """Input that is not an acceptable image; the message says why."""


def decode_image(data: bytes, max_pixels: int, max_bytes: int = MAX_IMAGE_BYTES) -> np.ndarray:
    """Decode JPEG/PNG/BMP/TIFF/WebP bytes to an HxWx3 uint8 RGB array, or raise ImageRejected."""
    if not data:
        raise ImageRejected("empty input: no image data")
    if len(data) > max_bytes:
        raise ImageRejected(f"input is {len(data)} bytes, over the limit of {max_bytes}")
    # The explicit check in _pixels gives the clear message; Pillow's bomb guard (set wider so it
    # does not pre-empt it) stays as a second line of defence for absurd headers.
    Image.MAX_IMAGE_PIXELS = 4 * max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageRejected(f"image refused as a decompression bomb: {exc}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ImageRejected("not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP)") from None
        with image:
            return _pixels(image, max_pixels)


def _pixels(image: Image.Image, max_pixels: int) -> np.ndarray:
    """Check format and dimensions from the header, then decode fully."""
    if image.format not in ALLOWED_FORMATS:
        raise ImageRejected(f"image format {image.format} is not accepted")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        megapixels = width * height / 1e6
        raise ImageRejected(
            f"image is {width}x{height} ({megapixels:.1f} megapixels), over the limit of {max_pixels / 1e6:.1f}"
        )
    try:
        rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected(f"image data is truncated or corrupt: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)
