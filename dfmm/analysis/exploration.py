"""What notebook 01 computes: class balance, formats and sizes, text lengths, duplicates and leakage.

File format per class is checked because it is a known shortcut: when the fakes of a dataset are PNG and the
reals JPEG (or they differ in size), a detector can score well by reading compression, not faces.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.data.images import ImageSet, image_format
from dfmm.data.labels import NAMES
from dfmm.data.text import TextSet


def class_balance(splits: dict[str, ImageSet | TextSet]) -> dict[str, dict[str, int]]:
    return {name: {"n": len(s), **s.counts()} for name, s in splits.items()}


def format_table(images: ImageSet, limit: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Formats and sizes per class (from file headers, on up to ``limit`` images), and the shortcut flag."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(images))[:limit]
    per: dict[str, dict[str, Counter]] = {NAMES[k]: {"format": Counter(), "size": Counter()} for k in NAMES}
    for i in idx:
        fmt, w, h = image_format(images.sources[i])
        c = per[NAMES[int(images.labels[i])]]
        c["format"][fmt] += 1
        c["size"][f"{w}x{h}"] += 1
    formats = {k: dict(v["format"]) for k, v in per.items()}
    sizes = {k: dict(v["size"].most_common(5)) for k, v in per.items()}
    fmt_sets = [set(f) for f in formats.values()]
    warnings = []
    if fmt_sets[0] != fmt_sets[1]:
        warnings.append(
            f"image formats differ between classes ({formats}): a detector can learn the format, not the face"
        )
    top_size = [max(s, key=s.get) if s else None for s in sizes.values()]
    if top_size[0] != top_size[1]:
        warnings.append(f"the most common image size differs between classes ({top_size[0]} vs {top_size[1]})")
    return {"checked": int(len(idx)), "formats": formats, "top_sizes": sizes, "shortcut_warnings": warnings}


def text_lengths(texts: TextSet) -> dict[str, np.ndarray]:
    """Words per text, by class."""
    words = np.array([len(t.split()) for t in texts.texts])
    return {NAMES[k]: words[texts.labels == k] for k in NAMES}


def text_length_figure(sets: dict[str, TextSet]) -> tuple[Any, dict[str, dict[str, float]]]:
    """One histogram of words per text per named set, human vs AI, and each class's median and 90th percentile
    (``NAME:human`` / ``NAME:ai``): a length difference between classes is a shortcut a detector can learn."""
    from dfmm.analysis.plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.2), squeeze=False)
    stats = {}
    for ax, (name, texts) in zip(axes[0], sets.items(), strict=True):
        for cls, words in text_lengths(texts).items():
            who = "human" if cls == "real" else "AI"
            ax.hist(words, bins=40, alpha=0.6, label=f"{who} (median {np.median(words):.0f})")
            stats[f"{name}:{who.lower()}"] = {
                "median_words": float(np.median(words)),
                "p90_words": float(np.percentile(words, 90)),
            }
        ax.set_xlabel("words per text")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    return fig, stats


def _digest(source: Any) -> str:
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _norm_text(t: str) -> str:
    return " ".join(t.lower().split())


def leakage(splits: dict[str, ImageSet | TextSet]) -> dict[str, Any]:
    """Exact duplicates within each split and across splits (by content hash), and shared groups."""
    keys = {}
    for name, s in splits.items():
        if isinstance(s, ImageSet):
            keys[name] = [_digest(src) for src in s.sources]
        else:
            keys[name] = [hashlib.md5(_norm_text(t).encode(), usedforsecurity=False).hexdigest() for t in s.texts]
    out: dict[str, Any] = {"duplicates_within": {}, "duplicates_across": {}, "groups_across": {}}
    names = list(splits)
    for name in names:
        c = Counter(keys[name])
        out["duplicates_within"][name] = int(sum(v - 1 for v in c.values() if v > 1))
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out["duplicates_across"][f"{a}-{b}"] = len(set(keys[a]) & set(keys[b]))
            out["groups_across"][f"{a}-{b}"] = len(set(splits[a].groups) & set(splits[b].groups))
    return out


def sample_grid(images: ImageSet, per_class: int = 8, seed: int = 0, title: str = "") -> Any:
    """A figure with ``per_class`` random real faces (top row) and fake faces (bottom row)."""
    import matplotlib.pyplot as plt

    from dfmm.data.images import load_image

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, per_class, figsize=(1.6 * per_class, 3.6))
    for row, label in enumerate((0, 1)):
        idx = np.flatnonzero(images.labels == label)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(pick):
                ax.imshow(load_image(images.sources[pick[col]]))
                if col == 0:
                    ax.set_title(NAMES[label], fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
