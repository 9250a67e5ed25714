"""Image degradations shared by the robustness sweep (``dfmm.analysis.perturbations``, which names them) and the
training augmentations that imitate it (``dfmm.data.transforms.Degrade``, ``dfmm.data.blend``): one implementation,
so an augmentation "at the sweep's levels" is the sweep's own operation. Each takes and returns a PIL image; the
``seed`` keyword is the sweep's registry signature (these operations draw nothing).
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageFilter


def decode(data: bytes) -> Image.Image:
    """An encoded image's pixels, as RGB."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    """The image saved as ``fmt`` (a Pillow format) with ``options``, in memory."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt, **options)
    return buf.getvalue()


def jpeg(img: Image.Image, quality: int, seed: int = 0) -> Image.Image:
    """Re-encode as JPEG at ``quality`` with Pillow's defaults (4:2:0 chroma subsampling), as a re-save does."""
    return decode(encode(img, "JPEG", quality=quality))


def png(img: Image.Image, seed: int = 0) -> Image.Image:
    """Lossless PNG re-encode: the same pixels in another container (the format control's sanity row)."""
    return decode(encode(img, "PNG", compress_level=1))


def blur(img: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (Pillow's ``GaussianBlur`` radius is the sigma)."""
    return img.convert("RGB").filter(ImageFilter.GaussianBlur(radius=sigma))


def downscale(img: Image.Image, factor: float, seed: int = 0) -> Image.Image:
    """Down to ``factor`` of each side and back up to the original size, bilinear both ways (detail lost, size kept)."""
    img = img.convert("RGB")
    small = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img.resize(small, Image.Resampling.BILINEAR).resize(img.size, Image.Resampling.BILINEAR)
