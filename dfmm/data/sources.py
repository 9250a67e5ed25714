"""Training sources as data: ``data.images`` / ``data.texts`` name one source (a string) or a list of them.

Each list item (:class:`dfmm.config.SourceItem`) carries its ``path`` and a ``source`` name, and where known the
``generator``/``family`` and ``domain`` of its rows (a value a row already has wins). Every source is split on its
own, by group (:func:`dfmm.data.splits.split_by_group`: pairs, rewrites and clips stay whole), and the splits are
concatenated, so each source has its share of train, validation and test; a budget (``max_texts``...) is shared
equally between the sources. Rows are tagged with their source (texts: ``meta["source"]``; images: the
``source/`` prefix of their group and name, :func:`row_sources`), a source with one class is refused as a training
source, and an item that repeats an earlier one (the same text after whitespace normalisation, the same image
bytes) is dropped and counted (``duplicates``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfmm.data.images import ImageSet, load_images
from dfmm.data.splits import SPLITS, split_by_group, subset_by_group
from dfmm.data.text import TextSet, load_texts
from dfmm.errors import DataError

if TYPE_CHECKING:
    from dfmm.config import Config, SourceItem


def source_name(path: str) -> str:
    """A short name for a data source: the folder of a ``data.jsonl`` / ``labels.csv``, else the file's stem."""
    if path.startswith("hub:"):
        return path[4:].split("/")[-1]
    p = Path(path)
    return p.parent.name if p.suffix and p.stem in ("data", "labels", "texts") else p.stem if p.suffix else p.name


def items_of(value: str | list[SourceItem]) -> list[SourceItem]:
    """The list form of a ``data.images`` / ``data.texts`` value (a string is one source named by its path)."""
    from dfmm.config import SourceItem

    if isinstance(value, str):
        return [SourceItem(path=value, source=source_name(value))]
    return [SourceItem(i.path, i.source or source_name(i.path), i.generator, i.family, i.domain) for i in value]


def check_both_classes(items: ImageSet | TextSet, where: str) -> None:
    """A training source needs real and fake items; a one-class set can only be a held-out test set."""
    labels = np.asarray(items.labels)
    n_fake = int((labels == 1).sum())
    if n_fake == 0 or n_fake == len(labels):
        raise DataError(
            f"{where}: {items.origin or 'the source'} has one class only ({len(labels) - n_fake} real, {n_fake} "
            "fake): it can be a cross-dataset test set (data.cross_images / data.cross_texts), not a training source"
        )


def _tag_texts(ts: TextSet, item: SourceItem) -> TextSet:
    n = len(ts)
    meta = dict(ts.meta)
    meta["source"] = [item.source] * n
    for key in ("generator", "domain", "family"):
        default = getattr(item, key)
        if key not in meta and default:
            meta[key] = [default] * n
    groups = [f"{item.source}/{g}" for g in ts.groups]
    return TextSet(list(ts.iter_texts()), ts.labels, groups, meta, ts.origin)


def _tag_images(images: ImageSet, item: SourceItem) -> ImageSet:
    groups = [f"{item.source}/{g}" for g in images.groups]
    names = [f"{item.source}/{n}" for n in images.names]
    return ImageSet(images.sources, images.labels, groups, names, images.origin, dict(images.meta))


def row_sources(items: ImageSet | TextSet) -> list[str]:
    """The source of each row of a pooled set (a set from one source: its origin's name for every row)."""
    if isinstance(items, TextSet):
        if "source" in items.meta:
            return [str(s) for s in items.meta["source"]]
        return [source_name(items.origin)] * len(items)
    if items.meta.get("pooled"):
        return [n.split("/", 1)[0] for n in items.names]
    return [source_name(items.origin)] * len(items)


def balanced_weights(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per-item training weights under which each (source, class) cell weighs the same in total (source- and
    class-balanced), scaled to a mean of 1."""
    w = np.zeros(len(labels))
    cells = {(s, y) for s, y in zip(sources, labels, strict=True)}
    for s, y in cells:
        m = (sources == s) & (labels == y)
        w[m] = 1.0 / m.sum()
    return w * len(labels) / w.sum()


def text_key(text: str) -> str:
    """What makes two texts the same one: their words, whitespace normalised."""
    return " ".join(text.split())


def _key(items: ImageSet | TextSet, i: int) -> str:
    if isinstance(items, TextSet):
        return text_key(items.text(i))
    src = items.sources[i]
    data = src if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _concat(parts: list[ImageSet | TextSet], origin: str) -> ImageSet | TextSet:
    labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    groups = [g for p in parts for g in p.groups]
    if isinstance(parts[0], TextSet):
        keys = sorted({k for p in parts for k in p.meta})
        meta = {k: [v for p in parts for v in (p.meta.get(k) or [""] * len(p))] for k in keys}
        return TextSet([t for p in parts for t in p.iter_texts()], labels, groups, meta, origin)
    sources = [s for p in parts for s in p.sources]
    names = [n for p in parts for n in p.names]
    return ImageSet(sources, labels, groups, names, origin, {"pooled": True})


def pooled_splits(cfg: Config, key: str, train_limit: int, eval_limit: int) -> tuple[dict[str, Any], int]:
    """The train/val/test splits of the sources ``data.<key>`` lists (``key``: images | texts) and how many
    duplicate items were dropped: each source loaded, checked for both classes, tagged, split on its own and
    capped at its share of the limits; a row repeating one of an earlier source is dropped."""
    d, seed = cfg.data, cfg.study.seed
    items = items_of(getattr(d, key))
    load = load_images if key == "images" else load_texts
    tag = _tag_images if key == "images" else _tag_texts
    share = [max(1, limit // len(items)) if limit else 0 for limit in (train_limit, eval_limit)]
    seen: set[str] = set()
    dropped = 0
    per_split: dict[str, list[Any]] = {name: [] for name in SPLITS}
    for item in items:
        loaded = load(item.path, d.hub_split)
        check_both_classes(loaded, f"data.{key} source '{item.source}'")
        loaded = tag(loaded, item)
        keep = []
        for i in range(len(loaded)):
            k = _key(loaded, i)
            if k in seen:
                dropped += 1
                continue
            seen.add(k)
            keep.append(i)
        loaded = loaded.subset(keep)
        split = split_by_group(loaded.labels, loaded.groups, d.val_fraction, d.test_fraction, seed)
        for name in SPLITS:
            limit = share[0] if name == "train" else share[1]
            index = subset_by_group(split[name], loaded.labels, loaded.groups, limit, seed, balanced=True)
            per_split[name].append(loaded.subset(index))
    origin = "+".join(i.source for i in items)
    return {name: _concat(parts, origin) for name, parts in per_split.items()}, dropped
