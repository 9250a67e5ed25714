"""The data layer: sources -> group-aware splits -> budget subsets, for images, texts and videos.

Every notebook calls :func:`image_splits` / :func:`text_splits` with the run's config and gets the same
splits (they are a pure function of the data, the fractions and the seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dfmm.data.images import ImageSet, load_images
from dfmm.data.sources import check_both_classes, pooled_splits
from dfmm.data.splits import SPLITS, split_by_group, subset_by_group
from dfmm.data.text import TextSet, load_texts
from dfmm.errors import DataError

if TYPE_CHECKING:
    from dfmm.config import Config

__all__ = [
    "ImageSet",
    "TextSet",
    "cross_images",
    "cross_texts",
    "data_sources",
    "epoch_val_rows",
    "fake_only_images",
    "image_splits",
    "text_splits",
]


_WHAT = {"images": "image folder", "texts": "text file", "videos": "video folder"}


def data_sources(cfg: Config) -> dict[str, str]:
    """The config's sources, with ``synthetic`` replaced by the demo data written under the run folder."""
    d = cfg.data
    sources = {"images": d.images, "texts": d.texts, "videos": d.videos}
    for key, src in sources.items():  # fail on a missing folder before writing any demo data
        for i, one in enumerate(src if isinstance(src, list) else [src]):
            path = one if isinstance(one, str) else one.path
            where = f"data.{key}[{i}]" if isinstance(src, list) else f"data.{key}"
            if path and path != "synthetic" and not path.startswith("hub:") and not Path(path).exists():
                raise DataError(f"{_WHAT[key]} not found: {path} ({where})")
    if "synthetic" in sources.values():
        from dfmm.data.synthetic import write_demo_data

        demo = write_demo_data(
            cfg.run_dir / "synthetic_data",
            d.synthetic_images,
            d.synthetic_texts,
            d.synthetic_videos if d.videos == "synthetic" else 0,
            d.synthetic_image_size,
            cfg.study.seed,
        )
        sources = {k: demo[k] if v == "synthetic" else v for k, v in sources.items()}
    return sources


def is_synthetic(cfg: Config) -> bool:
    return "synthetic" in (cfg.data.images, cfg.data.texts, cfg.data.videos)


def _splits(items: ImageSet | TextSet, cfg: Config, train_limit: int, eval_limit: int) -> dict[str, ImageSet | TextSet]:
    d, seed = cfg.data, cfg.study.seed
    check_both_classes(items, "data.images" if isinstance(items, ImageSet) else "data.texts")
    split = split_by_group(items.labels, items.groups, d.val_fraction, d.test_fraction, seed)
    out = {}
    for name in SPLITS:
        limit = train_limit if name == "train" else eval_limit
        index = subset_by_group(split[name], items.labels, items.groups, limit, seed, balanced=True)
        out[name] = items.subset(index)
    return out


def image_splits(cfg: Config) -> dict[str, ImageSet]:
    """Train/val/test faces: of one source, or of every source ``data.images`` lists (``dfmm.data.sources``)."""
    if isinstance(cfg.data.images, list):
        return pooled_splits(cfg, "images", cfg.data.max_images, cfg.data.max_eval_images)[0]
    images = load_images(data_sources(cfg)["images"], cfg.data.hub_split)
    return _splits(images, cfg, cfg.data.max_images, cfg.data.max_eval_images)


def text_splits(cfg: Config) -> dict[str, TextSet]:
    """Train/val/test texts: of one source, or of every source ``data.texts`` lists (``dfmm.data.sources``)."""
    if isinstance(cfg.data.texts, list):
        return pooled_splits(cfg, "texts", cfg.data.max_texts, cfg.data.max_eval_texts)[0]
    texts = load_texts(data_sources(cfg)["texts"], cfg.data.hub_split)
    return _splits(texts, cfg, cfg.data.max_texts, cfg.data.max_eval_texts)


def epoch_val_rows(items: ImageSet | TextSet, limit: int, seed: int) -> np.ndarray:
    """Which validation items (positions in ``items``) each epoch is scored on to choose the best epoch: at most
    ``limit`` (0 = all), half of each class, groups kept whole while they fit (``subset_by_group``), chosen from
    ``seed`` only, so every recipe and training seed of a study chooses its epoch on the same items. Scoring the
    whole split once, for the kept model, instead of after every epoch is what makes the compact study shorter
    (issue 17)."""
    return subset_by_group(np.arange(len(items)), items.labels, items.groups, limit, seed, balanced=True)


def _cross(items: ImageSet | TextSet, limit: int, seed: int) -> ImageSet | TextSet:
    index = subset_by_group(np.arange(len(items)), items.labels, items.groups, limit, seed, balanced=False)
    return items.subset(index)


def cross_images(cfg: Config) -> dict[str, ImageSet]:
    """Cross-dataset test sets (never trained on), each capped at ``data.max_cross``."""
    return {
        name: _cross(load_images(src, cfg.data.hub_split), cfg.data.max_cross, cfg.study.seed)
        for name, src in cfg.data.cross_images.items()
    }


def fake_only_images(cfg: Config) -> dict[str, ImageSet]:
    """Fake-only face sets notebook 07 measures (``generalization.fake_only_images``), each capped at ``max_cross``."""
    out = {}
    for name, src in cfg.generalization.fake_only_images.items():
        images = load_images(src, cfg.data.hub_split)
        if (np.asarray(images.labels) == 0).any():
            raise DataError(
                f"generalization.fake_only_images.{name}: {src} holds real images; list it in data.cross_images"
            )
        out[name] = _cross(images, cfg.data.max_cross, cfg.study.seed)
    return out


def cross_texts(cfg: Config) -> dict[str, TextSet]:
    return {
        name: _cross(load_texts(src, cfg.data.hub_split), cfg.data.max_cross, cfg.study.seed)
        for name, src in cfg.data.cross_texts.items()
    }


def video_source(cfg: Config) -> Path | None:
    src = data_sources(cfg)["videos"]
    return Path(src) if src else None
