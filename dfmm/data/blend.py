"""Self-blended images: a pseudo-fake made from one real face, for training only.

Self-Blended Images (Shiohara & Yamasaki, CVPR 2022) blend a slightly altered copy of a real face back into the
face itself through a soft mask. The result has no identity change, only what every face swap leaves behind: a
blending boundary, a colour or sharpness mismatch between the face and its surroundings, a small misalignment.
A detector that learns those cues from real faces alone transfers to manipulations it has never seen, which is
the usual fix for a detector trained on one generator that collapses to chance on another.

Our crops are centred on the face (DFDC crops, LFW), so the mask is an ellipse around the centre with random
size, offset and rotation, blurred by a random amount, instead of the paper's landmark hull.
"""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's: a full blend half of the time


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))  # torch's RNG: seeded with the run, repeatable on CPU


def _altered_copy(img: Image.Image) -> Image.Image:
    """The 'source' face: colour, sharpness and scale shifted a little, as a generator's output would be."""
    out = ImageEnhance.Brightness(img).enhance(_uniform(0.85, 1.15))
    out = ImageEnhance.Contrast(out).enhance(_uniform(0.85, 1.15))
    out = ImageEnhance.Color(out).enhance(_uniform(0.8, 1.2))
    kind = int(torch.randint(3, ()))
    if kind == 0:  # blur, as a generator's lower resolution
        out = out.filter(ImageFilter.GaussianBlur(_uniform(0.5, 1.5)))
    elif kind == 1:  # sharpen
        out = ImageEnhance.Sharpness(out).enhance(_uniform(1.5, 3.0))
    else:  # down- and up-sampling
        w, h = out.size
        f = _uniform(0.4, 0.8)
        out = out.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    w, h = out.size
    scale = _uniform(0.95, 1.05)
    dx, dy = _uniform(-0.03, 0.03) * w, _uniform(-0.03, 0.03) * h
    # affine maps output to input coordinates: scale about the centre, then shift
    cx, cy = w / 2, h / 2
    a = 1 / scale
    return out.transform((w, h), Image.AFFINE, (a, 0, cx - a * cx + dx, 0, a, cy - a * cy + dy), Image.BILINEAR)


def blend_mask(size: tuple[int, int]) -> Image.Image:
    """A soft elliptical mask ('L', 0..255) around the centre: random radii, offset, rotation, blur and ratio."""
    w, h = size
    rx, ry = _uniform(0.25, 0.4) * w, _uniform(0.3, 0.45) * h
    cx, cy = w / 2 + _uniform(-0.05, 0.05) * w, h / 2 + _uniform(-0.05, 0.05) * h
    # draw large and rotate, so the ellipse can tilt like a head does
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    mask = mask.rotate(_uniform(-15, 15), resample=Image.BILINEAR, center=(cx, cy))
    mask = mask.filter(ImageFilter.GaussianBlur(_uniform(0.02, 0.08) * math.hypot(w, h) / math.sqrt(2)))
    ratio = _BLEND_RATIOS[int(torch.randint(len(_BLEND_RATIOS), ()))]
    return mask.point(lambda v: round(v * ratio))


def self_blend(img: Image.Image) -> Image.Image:
    """A pseudo-fake of the RGB image ``img``: an altered copy of it pasted back through a soft mask."""
    img = img.convert("RGB")
    return Image.composite(_altered_copy(img), img, blend_mask(img.size))
