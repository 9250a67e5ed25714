"""The decoded-image cache (``visual.cache: decoded``): every image of a split decoded and resized once, kept as
one uint8 memory-mapped array, so an epoch reads pixels instead of decoding JPEGs again.

Why: on a GPU a training step over a batch takes less time than decoding and resizing its JPEGs, so the data
loader, not the model, sets the pace (on a 2-core CPU it is the other way round: ~700 img/s decoded and resized
against ~39 img/s through a Lite0 forward pass; docs/scaling.md). The cache holds exactly what the file
pipeline has after its first step (``v2.Resize((size, size), antialias=True)`` on the decoded RGB image) and
runs the transform's remaining steps on the uint8 tensors:

- ``none`` and ``flip``: bit-identical to reading the files (same random draws, same pixels);
- ``card``: its rotation (nearest) rounds a few edge pixels differently on a tensor than on a PIL image, so a
  ``card`` dataset gives its transform the PIL image of the cached row (``Image.fromarray``: the very pixels the
  file pipeline's resize made): bit-identical too, at the cost of that conversion;
- ``strong``: starts with a random crop of the *original* image, which a resized cache no longer has, so a
  training loader with it reads the files (:func:`decoded_dataset` returns None and logs why); its evaluation
  loaders (``none``) still use the cache.

One cache file per (items, size): ``<cache root>/decoded/<key>.u8`` (N x size x size x 3) and ``<key>.json``.
The key digests the size, the resize method with the PIL and torchvision versions, and each item in order: a
path's resolved name, size and modification time; the bytes of an encoded image; the content of an array or
PIL image; a row range of an Arrow file in the data cache (named by its own source files' key). Another size, a
changed file or another order is another key, so a cache is never reused for anything else. The array is
written to ``<key>.<pid>.u8.tmp`` and renamed, and the JSON written last: a build killed midway leaves no JSON,
and the next call builds again. An unreadable image is a row of zeros, marked unreadable with its message, and
the dataset yields it as an error item exactly like :class:`~dfmm.data.batches.ImageDataset`.

This module builds the cache and hands out its datasets; the format (the key, ``DecodedImages``, the dataset
class) lives in :mod:`dfmm.data.decoded_format` and is re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.data.arrow import Column, prune_entries
from dfmm.data.decoded_format import (
    DECODED_VERSION,
    DecodedImageDataset,
    DecodedImages,
    _files_of,
    _item_identity,
    _read_meta,
    _resize,
    decoded_dir,
    decoded_key,
    resize_method,
)
from dfmm.data.images import ImageSet, load_image
from dfmm.data.transforms import image_transform
from dfmm.errors import DataError

__all__ = [
    "DECODED_VERSION",
    "DecodedImageDataset",
    "DecodedImages",
    "_resize",
    "build_decoded",
    "decoded_dataset",
    "decoded_dir",
    "decoded_key",
    "resize_method",
]


log = logging.getLogger("dfmm.data")

_OPEN: dict[str, DecodedImages] = {}  # caches opened in this process, by key (a study opens each split once)


def _decode_rows(path: str, shape: tuple[int, ...], start: int, sources: Any, names: Any) -> list[tuple[int, str]]:
    """Decode items ``start ...`` into rows of the array at ``path`` (mapped read-write); their errors."""
    pixels = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
    resize = _resize(shape[1])
    errors = []
    for k, (src, name) in enumerate(zip(sources, names, strict=True)):
        try:
            pixels[start + k] = np.asarray(resize(load_image(src, name)))
        except DataError as e:
            errors.append((start + k, str(e)))  # the row stays zero
    pixels.flush()
    del pixels
    return errors


def _pool_init() -> None:
    torch.set_num_threads(1)  # PIL does the work: one pool process per core, no thread pool each


def build_decoded(images: ImageSet, size: int, *, workers: int = 0, progress: bool = True) -> DecodedImages:
    """The cache of ``images`` at ``size`` px: opened if this process or an earlier one built it, else built.

    ``workers`` pool processes decode chunks of rows straight into the file (0: one per CPU; 1: in this process).
    Raises ``OSError`` when the cache folder cannot be written or the disk is full (the space is reserved before
    any row is decoded).
    """
    key = decoded_key(images, size)
    opened = _OPEN.get(key)
    if opened is not None and (opened._pixels is not None or opened.path.is_file()):
        return opened
    folder = decoded_dir()
    n = len(images)
    found = _read_meta(key, folder, size, n)
    if found is None:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / f"{key}.lock"):  # processes of one launch: one builds, the others wait and open it
            found = _read_meta(key, folder, size, n)
            if found is None:
                found = _build(images, size, key, folder, workers=workers, progress=progress)
    _OPEN[key] = found
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (released by the kernel if the process dies)."""
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _build(images: ImageSet, size: int, key: str, folder: Path, *, workers: int, progress: bool) -> DecodedImages:
    from tqdm.auto import tqdm

    n = len(images)
    shape = (n, size, size, 3)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.{os.getpid()}.u8.tmp"
    t0 = time.perf_counter()
    errors: list[tuple[int, str]] = []
    try:
        with open(tmp, "wb") as fh:
            _reserve(fh, math.prod(shape))
        workers = workers or os.cpu_count() or 1
        chunk = max(8, min(256, -(-n // (workers * 8)))) if n else 1
        starts = list(range(0, n, chunk))
        bar = tqdm(total=n, desc=f"decoding {n} images at {size} px", unit="img", disable=None if progress else True)
        with bar:
            if workers <= 1 or len(starts) <= 1:
                for s in starts:
                    part = range(s, min(n, s + chunk))
                    errors += _decode_rows(str(tmp), shape, s, _part(images.sources, part), _part(images.names, part))
                    bar.update(len(part))
            else:
                with ProcessPoolExecutor(min(workers, len(starts)), initializer=_pool_init) as pool:
                    jobs = {}
                    for s in starts:
                        part = range(s, min(n, s + chunk))
                        args = (str(tmp), shape, s, _part(images.sources, part), _part(images.names, part))
                        jobs[pool.submit(_decode_rows, *args)] = len(part)
                    for job in as_completed(jobs):
                        errors += job.result()
                        bar.update(jobs[job])
        final = folder / f"{key}.u8"
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    errors.sort()
    seconds = time.perf_counter() - t0
    meta = {
        "key": key,
        "shape": list(shape),
        "size": size,
        "count": n,
        "unreadable_count": len(errors),
        "unreadable": {str(i): m for i, m in errors},
        "method": resize_method(),
        "origin": images.origin,
        "seconds": round(seconds, 2),
        "files": _files_of(images),
    }
    side = folder / f"{key}.{os.getpid()}.json.tmp"
    side.write_text(json.dumps(meta))
    os.replace(side, folder / f"{key}.json")  # last: its presence marks a complete cache
    if errors:
        log.warning(
            "decoded-image cache: %d of %d images unreadable, skipped (first: %s)", len(errors), n, errors[0][1]
        )
    log.info("decoded-image cache: %d images at %d px in %.1f s -> %s", n, size, seconds, final)
    _prune(folder, keep=key)
    return DecodedImages(key, final, n, size, dict(errors))


def _reserve(fh: Any, nbytes: int) -> None:
    """Allocate the file's blocks now, so a full disk is an ``OSError`` here rather than a SIGBUS mid-build; where
    the file system (or platform) cannot, a sparse file of that size."""
    try:
        if nbytes:
            os.posix_fallocate(fh.fileno(), 0, nbytes)
            return
    except AttributeError:  # no posix_fallocate here
        pass
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    fh.truncate(nbytes)


def _part(seq: Sequence[Any], part: range) -> Any:
    """Items ``part`` of a sequence for a pool process: a Column view pickles as its file and rows."""
    if isinstance(seq, Column):
        return seq.take(np.arange(part.start, part.stop))
    return [seq[i] for i in part]


def _prune(folder: Path, keep: str) -> None:
    """Remove caches whose image files changed or disappeared, and temporary files a killed build left."""

    def stale(meta: dict[str, Any]) -> bool:
        files = meta.get("files") or []
        return any(_item_identity(p)[1:] != [str(Path(p).resolve()), sz, mt] for p, sz, mt in files)

    prune_entries(folder, ".u8", stale, keep=keep)
    for gone in [k for k in _OPEN if not (folder / f"{k}.json").is_file()]:
        del _OPEN[gone]


def decoded_dataset(
    images: ImageSet, size: int, mean: Sequence[float], std: Sequence[float], augment: str, *, workers: int = 0
) -> DecodedImageDataset | None:
    """The dataset of ``images`` read from the cache (built first when missing), or None when the cache cannot
    serve it: ``strong`` augmentation crops the original image (the caller reads the files), or the cache
    folder cannot be written (a warning says why)."""
    if augment == "strong":
        log.info("visual.cache: decoded: augment 'strong' crops the original image, so this loader reads the files")
        return None
    try:
        decoded = build_decoded(images, size, workers=workers)
    except OSError as e:
        log.warning("cannot write the decoded-image cache in %s (%s); reading the image files", decoded_dir(), e)
        return None
    transform = image_transform(size, mean, std, augment, resized=True)
    return DecodedImageDataset(decoded, images, transform, as_pil=augment not in ("none", "flip"))
