"""The perturbations of the robustness sweep: named functions that change every item the same way, real and fake alike.

JPEG re-encoding, Gaussian blur and down-then-up scaling for faces (the post-processing sweep of Wang et al. 2020),
a lossless PNG re-encode (the format control's sanity row), truncation, typos and case / whitespace noise for
texts; a registry of names (``IMAGE_PERTURBATIONS``, ``TEXT_PERTURBATIONS``), timm style, so a sweep is a list of
names, and whole-set copies (``perturb_images``, ``perturb_texts``) that hand perturbed images over as lossless PNG.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from dfmm.data.degradations import blur, downscale, encode, jpeg, png
from dfmm.data.images import ImageSet, load_image
from dfmm.data.text import TextSet

TYPO_RATE = 0.02  # typos_2pct: the share of characters changed
CASE_FLIP_P = 0.1  # case_whitespace: the chance that a word's case is changed
DOUBLE_SPACE_P = 0.1  # ... that a single space is doubled
COLLAPSE_P = 0.5  # ... that a longer whitespace run (a line break, two spaces) collapses to one space

POST_PROCESSING = ("jpeg_90", "jpeg_70", "jpeg_50", "jpeg_30", "blur_1", "blur_2", "downscale_0.5", "downscale_0.25")
FORMAT_CONTROLS = ("png", "jpeg_95")
IMAGE_SWEEP = (*POST_PROCESSING, *FORMAT_CONTROLS)
TEXT_SWEEP = ("truncate_64", "truncate_128", "truncate_256", "typos_2pct", "case_whitespace")


# -------------------------------------------------------------------------------------------------- images
IMAGE_PERTURBATIONS: dict[str, Callable[..., Image.Image]] = {
    **{f"jpeg_{q}": partial(jpeg, quality=q) for q in (95, 90, 70, 50, 30)},
    "png": png,
    "blur_1": partial(blur, sigma=1.0),
    "blur_2": partial(blur, sigma=2.0),
    "downscale_0.5": partial(downscale, factor=0.5),
    "downscale_0.25": partial(downscale, factor=0.25),
}


def perturb_image(name: str, img: Image.Image, seed: int = 0) -> Image.Image:
    """``IMAGE_PERTURBATIONS[name]`` applied to an RGB image (the same call for real and fake images)."""
    return IMAGE_PERTURBATIONS[_known(name, IMAGE_PERTURBATIONS)](img, seed=seed)


# --------------------------------------------------------------------------------------------------- texts
def _rng(seed: int, text: str) -> np.random.Generator:
    """A generator seeded by the sweep's seed and the text itself: the same text gets the same noise in any order."""
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8, key=str(seed).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def truncate(text: str, n_tokens: int, tokenizer: Any, seed: int = 0) -> str:
    """The first ``n_tokens`` tokens of ``tokenizer`` (no special tokens), cut at the last kept token's character
    offset: a prefix of the text that the tokenizer reads as at most ``n_tokens`` tokens."""
    if tokenizer is None:
        raise ValueError("truncate: needs the model's tokenizer (the checkpoint's `model.tokenizer`)")

    def encode(t: str, limit: int) -> list[tuple[int, int]]:
        enc = tokenizer(t, add_special_tokens=False, truncation=True, max_length=limit, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    offsets = encode(text, n_tokens + 1)
    if len(offsets) <= n_tokens:
        return text
    keep = n_tokens
    while keep > 0:  # a word cut between its sub-tokens can re-tokenise longer: step back until it fits
        prefix = text[: offsets[keep - 1][1]]
        if len(encode(prefix, n_tokens + 1)) <= n_tokens:
            return prefix
        keep -= 1
    return ""


def typos(text: str, rate: float = TYPO_RATE, seed: int = 0) -> str:
    """About ``rate`` of the characters changed: letters swapped with the next letter (two characters), dropped
    or replaced by another letter of the same case (one each). The count is drawn so its expectation is exactly
    ``rate * len(text)``; edits never touch the same or a neighbouring character."""
    rng = _rng(seed, text)
    budget = rate * len(text)
    budget = int(budget) + int(rng.random() < budget - int(budget))
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    order = rng.permutation(len(letters))
    chars = list(text)
    touched: set[int] = set()
    edits: list[tuple[int, str]] = []
    for k in order:
        if budget <= 0:
            break
        i = letters[k]
        if {i - 1, i, i + 1} & touched:
            continue
        kind = ["swap", "drop", "replace"][int(rng.integers(3))]
        nxt = i + 1
        if kind == "swap" and (budget < 2 or nxt >= len(text) or not text[nxt].isalpha() or text[nxt] == text[i]):
            kind = "replace"
        if kind == "swap":
            if nxt + 1 in touched:
                continue
            chars[i], chars[nxt] = chars[nxt], chars[i]
            touched |= {i, nxt}
            budget -= 2
            continue
        if kind == "replace":
            pool = "abcdefghijklmnopqrstuvwxyz".replace(text[i].lower(), "")
            c = pool[int(rng.integers(len(pool)))]
            edits.append((i, c.upper() if text[i].isupper() else c))
        else:
            edits.append((i, ""))
        touched.add(i)
        budget -= 1
    for i, c in edits:
        chars[i] = c
    return "".join(chars)


def case_whitespace(text: str, seed: int = 0) -> str:
    """Case and spacing noise: a word's case changed (upper, lower or capitalised) with p ``CASE_FLIP_P``; a
    single space doubled with p ``DOUBLE_SPACE_P``; a longer whitespace run collapsed to one space with p
    ``COLLAPSE_P``. Letters and their order are kept."""
    rng = _rng(seed, text)
    out = []
    for part in re.split(r"(\s+)", text):
        if not part:
            continue
        if part.isspace():
            if part == " ":
                out.append("  " if rng.random() < DOUBLE_SPACE_P else part)
            else:
                out.append(" " if rng.random() < COLLAPSE_P else part)
        elif rng.random() < CASE_FLIP_P:
            out.append((str.upper, str.lower, str.capitalize)[int(rng.integers(3))](part))
        else:
            out.append(part)
    return "".join(out)


TEXT_PERTURBATIONS: dict[str, Callable[..., str]] = {
    **{f"truncate_{n}": partial(truncate, n_tokens=n) for n in (64, 128, 256)},
    "typos_2pct": partial(typos, rate=TYPO_RATE),
    "case_whitespace": case_whitespace,
}


def perturb_text(name: str, text: str, seed: int = 0, tokenizer: Any = None) -> str:
    """``TEXT_PERTURBATIONS[name]`` applied to a text; ``truncate_*`` needs the model's tokenizer."""
    fn = TEXT_PERTURBATIONS[_known(name, TEXT_PERTURBATIONS)]
    return fn(text, tokenizer=tokenizer, seed=seed) if name.startswith("truncate_") else fn(text, seed=seed)


def _known(name: str, table: dict[str, Any]) -> str:
    if name not in table:
        raise ValueError(f"unknown perturbation {name!r}; expected one of {', '.join(table)}")
    return name


# ----------------------------------------------------------------------------------------------- whole sets
def perturb_images(images: ImageSet, name: str, seed: int = 0, decoded: list[Image.Image] | None = None) -> ImageSet:
    """A copy of ``images`` with ``name`` applied to every image, real and fake alike, held as lossless PNG bytes
    (what ``score_images`` reads is exactly the perturbed pixels). ``decoded``: the images already decoded."""
    fn = IMAGE_PERTURBATIONS[_known(name, IMAGE_PERTURBATIONS)]
    if decoded is None:
        decoded = [load_image(src, n) for src, n in zip(images.sources, images.names, strict=True)]
    encoded = [encode(fn(img, seed=seed), "PNG", compress_level=1) for img in decoded]
    return ImageSet(encoded, images.labels, images.groups, images.names, f"{images.origin} ({name})", dict(images.meta))


def perturb_texts(texts: TextSet, name: str, seed: int = 0, tokenizer: Any = None) -> TextSet:
    """A copy of ``texts`` with ``name`` applied to every text, human and AI alike."""
    _known(name, TEXT_PERTURBATIONS)
    changed = [perturb_text(name, t, seed, tokenizer) for t in texts.texts]
    return TextSet(changed, texts.labels, texts.groups, {k: list(v) for k, v in texts.meta.items()}, texts.origin)
