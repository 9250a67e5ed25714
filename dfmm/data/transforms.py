"""The card's image transforms: resize to 224, normalise as the backbone expects, augment for training only.

``card`` augmentation is the data card's list (flip, rotation, colour jitter, Gaussian blur, random erasing);
``strong`` adds face-appropriate changes that a deepfake detector should be invariant to (scale/crop jitter,
JPEG-like blur levels, grayscale) and is what the ``improved`` recipe uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def image_transform(image_size: int, mean: Sequence[float], std: Sequence[float], augment: str = "none") -> v2.Compose:
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    norm = v2.Normalize(list(mean), list(std))
    if augment == "none":
        return v2.Compose([v2.Resize((image_size, image_size), antialias=True), *to_tensor, norm])
    if augment == "card":
        return v2.Compose(
            [
                v2.Resize((image_size, image_size), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                v2.ColorJitter(0.2, 0.2, 0.2, 0.05),
                v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.3),
                *to_tensor,
                norm,
                v2.RandomErasing(p=0.25),
            ]
        )
    if augment == "strong":
        return v2.Compose(
            [
                v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(8),
                v2.ColorJitter(0.3, 0.3, 0.3, 0.05),
                v2.RandomGrayscale(p=0.05),
                v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
                *to_tensor,
                norm,
                v2.RandomErasing(p=0.3, scale=(0.02, 0.15)),
            ]
        )
    raise ValueError(f"unknown augmentation '{augment}' (none, card, strong)")
