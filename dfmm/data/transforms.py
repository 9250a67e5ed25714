"""The card's image transforms: resize to 224, normalise as the backbone expects, augment for training only.

``card`` augmentation is the data card's list (flip, rotation, colour jitter, Gaussian blur, random erasing);
``strong`` adds face-appropriate changes that a deepfake detector should be invariant to (scale/crop jitter,
JPEG-like blur levels, grayscale); ``flip`` is a horizontal flip alone, which leaves every pixel-level artefact
intact; ``degrade`` is a flip and, for half the images, one of the robustness sweep's degradations
(``dfmm.data.degradations``: JPEG re-encoding, Gaussian blur, down-then-up scaling) at a random strength
spanning the sweep's levels. Which one each recipe uses, and why, is in the params files and the README's "Recipes".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from dfmm.data.degradations import blur, downscale, jpeg

# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane, saturation its length
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = torch.linalg.inv(_YIQ)
_GREY = torch.tensor([0.299, 0.587, 0.114])


class ColorJitter(torch.nn.Module):
    """Brightness, saturation and hue as one 3x3 colour matrix (YIQ), then contrast, on float images in [0, 1].

    The same factor ranges as ``torchvision``'s ColorJitter; hue is a rotation of the YIQ chroma plane instead of
    an HSV round trip. On one CPU thread, for a 224 px image: 0.72 vs 6.61 ms (9.2x), and the whole card pipeline
    with decoding 4.95 vs 8.78 ms (1.77x; ``benchmarks/augment_cost.py``). That matters because data-loader
    workers feed a GPU at thousands of images per second.
    """

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float) -> None:
        super().__init__()
        self.b, self.c, self.s, self.h = brightness, contrast, saturation, hue

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.rand(4) * 2 - 1
        bright, contrast, sat = 1 + r[0] * self.b, 1 + r[1] * self.c, 1 + r[2] * self.s
        theta = float(r[3]) * self.h * 2 * math.pi
        cos, sin = math.cos(theta), math.sin(theta)
        chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]]) * torch.tensor([1.0, sat, sat])
        matrix = bright * (_RGB @ chroma @ _YIQ)
        y = (matrix @ x.reshape(3, -1)).reshape(x.shape)
        grey = (_GREY @ y.reshape(3, -1)).mean()
        return ((y - grey) * contrast + grey).clamp_(0.0, 1.0)


class Degrade(torch.nn.Module):
    """With probability ``p``, one of JPEG re-encoding (quality 30-95), Gaussian blur (sigma 0.5-2 px) or down-then-up
    scaling (factor 0.25-0.75), chosen and sized by torch's generator (so seeded runs repeat), on a PIL image."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, img: Any) -> Any:
        r = torch.rand(3).tolist()
        if r[0] >= self.p:
            return img
        kind = int(r[1] * 3)
        if kind == 0:
            return jpeg(img, quality=int(30 + r[2] * 65))
        if kind == 1:
            return blur(img, sigma=0.5 + 1.5 * r[2])
        return downscale(img, factor=0.25 + 0.5 * r[2])


def image_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], augment: str = "none", *, resized: bool = False
) -> v2.Compose:
    """The pipeline for a decoded RGB PIL image: resize to ``image_size`` square, augment, to float, normalise.

    ``resized``: the same steps without the first (the resize), for images already resized, as uint8 CHW
    tensors or PIL images (the decoded-image cache, ``dfmm.data.decoded``); not for ``strong``, which crops the
    original image.
    """
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    norm = v2.Normalize(list(mean), list(std))
    resize = [] if resized else [v2.Resize((image_size, image_size), antialias=True)]
    if augment == "none":
        return v2.Compose([*resize, *to_tensor, norm])
    if augment == "flip":
        return v2.Compose([*resize, v2.RandomHorizontalFlip(), *to_tensor, norm])
    if augment == "degrade":
        return v2.Compose([*resize, v2.RandomHorizontalFlip(), Degrade(), *to_tensor, norm])
    if augment == "card":
        return v2.Compose(
            [
                *resize,
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.3),
                *to_tensor,
                ColorJitter(0.2, 0.2, 0.2, 0.05),
                norm,
                v2.RandomErasing(p=0.25),
            ]
        )
    if augment == "strong" and resized:
        raise ValueError("augmentation 'strong' crops the original image: it cannot start from a resized one")
    if augment == "strong":
        return v2.Compose(
            [
                v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(8),
                v2.RandomGrayscale(p=0.05),
                v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
                *to_tensor,
                ColorJitter(0.3, 0.3, 0.3, 0.05),
                norm,
                v2.RandomErasing(p=0.3, scale=(0.02, 0.15)),
            ]
        )
    raise ValueError(f"unknown augmentation '{augment}' (none, flip, card, strong, degrade)")
