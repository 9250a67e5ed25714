"""The format of the decoded-image cache (:mod:`dfmm.data.decoded` builds it): where it lives, the key that names
one cache (the resize method and every item's identity, in order), ``DecodedImages`` over its memory-mapped
uint8 array, ``_read_meta`` that opens a complete cache, and ``DecodedImageDataset``, whose items are those of
:class:`~dfmm.data.batches.ImageDataset` read from the cache."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dfmm.data.arrow import Column, Fetch, cache_dir
from dfmm.data.images import ImageSet

DECODED_VERSION = 1  # bump when what a row holds changes: older caches then get other keys


def decoded_dir() -> Path:
    """``<cache root>/decoded``: beside ``dfmm.data.arrow``'s tables (``$DFMM_CACHE_DIR``, else ~/.cache/dfmm)."""
    return cache_dir().parent / "decoded"


def resize_method() -> str:
    """What made the pixels: a new PIL or torchvision may resize differently, so it is part of the key."""
    import PIL
    import torchvision

    return (
        f"dfmm-decoded-v{DECODED_VERSION}: load_image RGB -> v2.Resize(antialias=True); "
        f"PIL {PIL.__version__}, torchvision {torchvision.__version__}"
    )


def _resize(size: int) -> Any:
    from torchvision.transforms import v2

    return v2.Resize((size, size), antialias=True)


# ----------------------------------------------------------------------------------------------------- key
def _column_identity(seq: Any) -> list[Any] | None:
    """A Column over an Arrow file of the data cache: the file's name (a key of its source files), the column,
    how rows are read and which rows. None for anything else (a Hub table, a list)."""
    if not isinstance(seq, Column):
        return None
    fetch, rows = seq._fetch, seq._rows  # noqa: SLF001 - the view's own parts, read-only
    if not isinstance(fetch, Fetch) or fetch.table.path is None:
        return None
    read = f"{fetch.read.__module__}.{fetch.read.__qualname__}"
    picked = np.arange(seq._size) if rows is None else np.asarray(rows, dtype=np.int64)  # noqa: SLF001
    rows_digest = hashlib.blake2b(np.ascontiguousarray(picked, dtype=np.int64).tobytes(), digest_size=16)
    return ["arrow", Path(fetch.table.path).name, fetch.column, read, fetch.origin, rows_digest.hexdigest()]


def _item_identity(source: Any) -> Any:
    """One item's identity as JSON-able values; what ``load_image`` would decode, without decoding it."""
    if isinstance(source, dict):  # a datasets Image feature with decode=False, as load_image reads it
        source = source.get("bytes") or source.get("path")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ["bytes", len(source), hashlib.blake2b(source, digest_size=16).hexdigest()]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            st = path.stat()
        except OSError:
            return ["missing", str(path.absolute())]
        return ["file", str(path.resolve()), st.st_size, st.st_mtime_ns]
    if isinstance(source, np.ndarray):
        data = np.ascontiguousarray(source)
        return ["array", str(data.dtype), list(data.shape), hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()]
    from PIL import Image

    if isinstance(source, Image.Image):
        return ["pil", source.mode, list(source.size), hashlib.blake2b(source.tobytes(), digest_size=16).hexdigest()]
    return ["other", type(source).__name__]  # load_image refuses it: the row is unreadable


def _feed(h: Any, seq: Sequence[Any], per_item: Any) -> None:
    ident = _column_identity(seq)
    if ident is not None:
        h.update(json.dumps(ident).encode())
        return
    h.update(f"items {len(seq)}\n".encode())
    for item in seq:
        h.update(json.dumps(per_item(item), default=str).encode())
        h.update(b"\n")


def decoded_key(images: ImageSet, size: int) -> str:
    """The cache key of ``images`` (in their order) at ``size`` px; any change to an item changes it."""
    h = hashlib.sha256()
    h.update(json.dumps([resize_method(), int(size), len(images)]).encode())
    _feed(h, images.sources, _item_identity)
    _feed(h, images.names, str)  # an unreadable row's message names its item
    return h.hexdigest()[:32]


def _files_of(images: ImageSet) -> list[list[Any]] | None:
    """``[path, size, mtime_ns]`` of every item when all are files: a later build prunes this cache once they
    change (the key then differs, so nothing would ever read it again)."""
    if isinstance(images.sources, Column):
        return None
    out = []
    for s in images.sources:
        if not isinstance(s, (str, os.PathLike)):
            return None
        ident = _item_identity(s)
        if ident[0] != "file":
            return None
        out.append(ident[1:])
    return out


# -------------------------------------------------------------------------------------------------- cache
class DecodedImages:
    """One built cache: ``pixels`` (N x size x size x 3 uint8, memory-mapped read-only when first used),
    ``unreadable`` (N booleans) and each unreadable row's message. Pickles as its file's path, so every
    DataLoader worker maps the same pages instead of receiving a copy."""

    def __init__(self, key: str, path: Path, count: int, size: int, errors: dict[int, str]) -> None:
        self.key, self.path, self.count, self.size = key, Path(path), int(count), int(size)
        self.errors = {int(i): str(m) for i, m in errors.items()}
        self.unreadable = np.zeros(self.count, dtype=bool)
        self.unreadable[list(self.errors)] = True
        self._pixels: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.count, self.size, self.size, 3)

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            if self.count == 0:
                self._pixels = np.zeros(self.shape, dtype=np.uint8)
            else:
                self._pixels = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._pixels

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "count": self.count, "size": self.size, "errors": self.errors}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["key"], Path(state["path"]), state["count"], state["size"], state["errors"])

    def __repr__(self) -> str:
        return f"DecodedImages({self.count} x {self.size} px, {len(self.errors)} unreadable, {self.path})"


def _read_meta(key: str, folder: Path, size: int, count: int) -> DecodedImages | None:
    """The cache of ``key`` when complete (JSON present, array of the right length), else None."""
    meta_path, data_path = folder / f"{key}.json", folder / f"{key}.u8"
    try:
        meta = json.loads(meta_path.read_text())
        expected = count * size * size * 3
        if meta.get("key") != key or meta.get("shape") != [count, size, size, 3]:
            return None
        if count and data_path.stat().st_size != expected:
            return None
        errors = {int(i): m for i, m in meta.get("unreadable", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return DecodedImages(key, data_path, count, size, errors)


# ------------------------------------------------------------------------------------------------ dataset
class DecodedImageDataset(Dataset):
    """:class:`~dfmm.data.batches.ImageDataset`'s items from a :class:`DecodedImages` cache: the same
    ``{"inputs", "label", "index"}`` (or ``{"error", "index"}``) items, ``labels``, ``groups`` and length.

    ``transform`` is the pipeline without its Resize step (``image_transform(..., resized=True)``); it gets a
    uint8 CHW tensor (a copy of the row: the mapping stays read-only and shared), or with ``as_pil`` the row as
    an RGB PIL image (for transforms that differ between the two, see the module docstring).
    """

    def __init__(self, decoded: DecodedImages, images: ImageSet, transform: Any, *, as_pil: bool = False) -> None:
        if len(decoded) != len(images):
            raise ValueError(f"the cache holds {len(decoded)} images, the set {len(images)}")
        self.decoded = decoded
        self.transform = transform
        self.as_pil = as_pil
        self.groups = list(images.groups)
        self.labels = images.labels

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.decoded.unreadable[i]:
            return {"error": self.decoded.errors[int(i)], "index": i}
        row = np.array(self.decoded.pixels[i])
        img = Image.fromarray(row, "RGB") if self.as_pil else torch.from_numpy(row).permute(2, 0, 1)
        return {"inputs": self.transform(img), "label": int(self.labels[i]), "index": i}
