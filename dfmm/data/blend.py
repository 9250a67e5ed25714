"""Self-blended images: a pseudo-fake made from one real face, for training only.

Self-Blended Images (Shiohara & Yamasaki, CVPR 2022) blend a slightly altered copy of a real face back into the
face itself through a soft mask. The result has no identity change, only what every face swap leaves behind: a
blending boundary, a colour or sharpness mismatch between the face and its surroundings, a small misalignment. A
detector that learns those cues from real faces transfers to face-swap methods it has never seen.

The mask follows the face: the paper takes the convex hull of 81 landmarks; MTCNN gives five (eyes, nose, mouth
corners), so the hull here is an oval placed, sized and tilted by them (centred between eyes and mouth, as wide
as about twice the eye distance, as tall as about three times the eye-to-mouth distance), its outline jittered and
blurred at random as the paper deforms its hull. A face without landmarks gets an oval around the crop's centre.
All randomness is torch's generator, so seeded runs repeat.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from dfmm.data.degradations import downscale
from dfmm.data.labels import FAKE, REAL

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's: a full blend half of the time
OUTLINE_POINTS = 24


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def altered_copy(img: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The 'source' face: colour, sharpness and scale shifted a little, as a generator's output would be; with
    the mask ('L') of the pixels the shift leaves inside the picture (outside it the copy is black)."""
    out = ImageEnhance.Brightness(img).enhance(_uniform(0.85, 1.15))
    out = ImageEnhance.Contrast(out).enhance(_uniform(0.85, 1.15))
    out = ImageEnhance.Color(out).enhance(_uniform(0.8, 1.2))
    kind = int(torch.randint(3, ()))
    if kind == 0:  # blur, as a generator's lower resolution
        out = out.filter(ImageFilter.GaussianBlur(_uniform(0.5, 1.5)))
    elif kind == 1:  # sharpen
        out = ImageEnhance.Sharpness(out).enhance(_uniform(1.5, 3.0))
    else:  # down- and up-sampling
        out = downscale(out, factor=_uniform(0.4, 0.8))
    w, h = out.size
    scale = _uniform(0.95, 1.05)
    dx, dy = _uniform(-0.03, 0.03) * w, _uniform(-0.03, 0.03) * h
    cx, cy, a = w / 2, h / 2, 1 / scale  # affine maps output to input coordinates: scale about the centre, shift
    affine = (a, 0, cx - a * cx + dx, 0, a, cy - a * cy + dy)
    inside = Image.new("L", (w, h), 255).transform((w, h), Image.AFFINE, affine, Image.NEAREST)
    return out.transform((w, h), Image.AFFINE, affine, Image.BILINEAR), inside


def face_oval(size: tuple[int, int], landmarks: Any = None) -> tuple[float, float, float, float, float]:
    """(centre x, centre y, half width, half height, tilt in radians) of the face: from MTCNN's five landmarks
    (left eye, right eye, nose, left and right mouth corner, in pixels) when given, else around the centre."""
    w, h = size
    if landmarks is None:
        return w / 2, h / 2, 0.33 * w, 0.4 * h, 0.0
    p = np.asarray(landmarks, dtype=float).reshape(5, 2)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    eye_gap = max(float(np.linalg.norm(p[1] - p[0])), 1.0)
    drop = max(float(np.linalg.norm(mouth - eyes)), 1.0)
    tilt = math.atan2(p[1][1] - p[0][1], p[1][0] - p[0][0])
    centre = (eyes + mouth) / 2
    return float(centre[0]), float(centre[1]), 1.0 * eye_gap, 1.5 * drop, tilt


def blend_mask(size: tuple[int, int], landmarks: Any = None) -> Image.Image:
    """A soft mask ('L', 0..255) over the face: the oval of ``face_oval`` scaled, its outline jittered, blurred and
    weighted by a blend ratio, each at random."""
    w, h = size
    cx, cy, rx, ry, tilt = face_oval(size, landmarks)
    rx, ry = rx * _uniform(0.85, 1.2), ry * _uniform(0.85, 1.2)
    cx, cy = cx + _uniform(-0.03, 0.03) * w, cy + _uniform(-0.03, 0.03) * h
    jitter = 1 + 0.08 * (torch.rand(OUTLINE_POINTS).numpy() * 2 - 1)
    outline = []
    for k in range(OUTLINE_POINTS):
        t = 2 * math.pi * k / OUTLINE_POINTS
        x, y = rx * math.cos(t) * jitter[k], ry * math.sin(t) * jitter[k]
        outline.append((cx + x * math.cos(tilt) - y * math.sin(tilt), cy + x * math.sin(tilt) + y * math.cos(tilt)))
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(_uniform(0.02, 0.08) * math.hypot(w, h) / math.sqrt(2)))
    ratio = BLEND_RATIOS[int(torch.randint(len(BLEND_RATIOS), ()))]
    return mask.point(lambda v: round(v * ratio))


def self_blend(img: Image.Image, landmarks: Any = None) -> Image.Image:
    """A pseudo-fake of the RGB image ``img``: an altered copy of it pasted back through a soft face mask."""
    from PIL import ImageChops

    img = img.convert("RGB")
    source, inside = altered_copy(img)
    return Image.composite(source, img, ImageChops.multiply(blend_mask(img.size, landmarks), inside))


class SelfBlendedFaces(torch.utils.data.Dataset):
    """A training dataset plus one self-blended pseudo-fake of each of its real faces, blended anew each time it
    is read (so every epoch sees other blends); ``only``: the dataset's own fakes are left out of training, reals
    against pseudo-fakes alone, as the paper trains (the validation split's fakes still choose the epoch and the
    decision rule). Items are the base dataset's; a pseudo-fake is labelled fake, shares
    its real face's group (pair batches keep the two together) and carries the real face's index.

    The real faces are decoded once at ``size`` (the training resolution) and their landmarks found once
    (``dfmm.data.faces.FaceDetector.landmarks``); ``transform`` is the training pipeline without its resize
    (``image_transform(..., resized=True)``)."""

    def __init__(self, base: Any, images: Any, size: int, transform: Any, *, only: bool = False) -> None:
        from dfmm.data.faces import FaceDetector
        from dfmm.data.images import load_image
        from dfmm.errors import DataError

        self.base, self.transform = base, transform
        self.rows = np.flatnonzero(images.labels == REAL) if only else np.arange(len(images))
        self.real, self.faces = [], []
        for j in np.flatnonzero(images.labels == REAL):
            try:
                img = load_image(images.sources[j], images.names[j]).convert("RGB")
            except DataError:
                continue
            self.real.append(int(j))
            self.faces.append(img.resize((size, size), Image.BILINEAR))
        self.landmarks = FaceDetector().landmarks([np.asarray(f) for f in self.faces])
        groups = list(base.groups)
        self.groups = [groups[i] for i in self.rows] + [groups[j] for j in self.real]
        self.labels = np.concatenate([np.asarray(base.labels)[self.rows], np.full(len(self.real), FAKE)])

    @property
    def found_landmarks(self) -> float:
        """Share of the real faces whose landmarks were found (the others blend through a centred oval)."""
        return float(np.mean([lm is not None for lm in self.landmarks])) if self.landmarks else 0.0

    def __len__(self) -> int:
        return len(self.rows) + len(self.real)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < len(self.rows):
            return self.base[int(self.rows[i])]
        k = i - len(self.rows)
        blended = self_blend(self.faces[k], self.landmarks[k])
        return {"inputs": self.transform(blended), "label": FAKE, "index": self.real[k]}
