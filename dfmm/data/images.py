"""Face images: where they come from, how they are decoded, and the card's transforms.

Three sources share one schema (``ImageSet``: an image reference, a 0/1 label, a group):
the Hub dataset ``Hemg/deepfake-and-real-images`` (``image``, ``label`` with 0 = Fake, 1 = Real, flipped on load),
local parquet files with that schema, and folders laid out as ``real/`` + ``fake/`` with an optional
``labels.csv`` whose group column (``pair_group`` or ``group``) keeps a real face and its fakes together.
Parquet and Hub images stay in a memory-mapped Arrow table (``dfmm.data.arrow``); an image's bytes are read when
a Dataset asks for that item.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile

from dfmm.data.arrow import (
    Column,
    Fetch,
    MappedTable,
    cached_table,
    default_names,
    file_key,
    parquet_batches,
    parquet_error,
    take,
)
from dfmm.data.filecheck import check_file
from dfmm.data.labels import FAKE, REAL
from dfmm.errors import DataError, HubUnavailable

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # above this an image is refused as a decompression bomb
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a silently grey tensor


@dataclass
class ImageSet:
    """Image references with labels (0 real, 1 fake) and groups; ``sources`` are paths or encoded bytes.

    Folder sources keep lists of paths; parquet and Hub sources keep ``dfmm.data.arrow.Column`` views of a
    memory-mapped Arrow table, so ``sources[i]`` reads image ``i``'s bytes when a Dataset asks for it and the set
    never holds every image. Both index, iterate and subset alike.
    """

    sources: Sequence[Any]
    labels: np.ndarray
    groups: Sequence[str]
    names: Sequence[str]
    origin: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, index: np.ndarray | list[int]) -> ImageSet:
        index = np.asarray(index, dtype=int)
        sources, groups, names = (take(column, index) for column in (self.sources, self.groups, self.names))
        return ImageSet(sources, self.labels[index], groups, names, self.origin, dict(self.meta))

    def counts(self) -> dict[str, int]:
        return {"real": int((self.labels == REAL).sum()), "fake": int((self.labels == FAKE).sum())}


# ------------------------------------------------------------------------------------------------ decoding
def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Every mode we meet in the wild to 8-bit RGB, the right way for each."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise DataError(f"{name}: float image of {img.width}x{img.height} pixels holds NaN or infinite values")
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # transparent areas become black
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")  # L, P, CMYK, YCbCr, 1 ...
    except (ValueError, OSError) as e:
        raise DataError(f"{name}: cannot convert image mode {mode} to RGB ({e})") from None


def load_image(source: Any, name: str | None = None) -> Image.Image:
    """Decode a path, bytes, PIL image or HxWxC array to an RGB PIL image, or raise ``DataError`` naming it.

    Arrays: uint8 as is; other integers clipped to 0-255; floats in [0, 1] scaled by 255, others clipped. An
    empty array, one with NaN or inf, or one that is not HxW / HxWxC (C = 1, 3, 4) is refused. A torch tensor is
    read as an array, CxHxW (C = 1, 3, 4) when its first axis is that short and its last is not. Float images
    (TIFF, PIL mode F) with NaN or inf are refused like arrays: no path scores a picture of nothing.
    """
    if _is_tensor(source):
        source = _tensor_to_array(source)
    if isinstance(source, Image.Image):
        return _to_rgb(source, name or "image")
    if isinstance(source, np.ndarray):
        arr = source
        label = name or "array"
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise DataError(f"{label}: expected an HxW or HxWxC (C = 1, 3, 4) array, got shape {arr.shape}")
        if arr.size == 0:
            raise DataError(f"{label}: empty array of shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
            raise DataError(f"{label}: expected a uint8 or float array, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError(f"{label}: array of shape {arr.shape} holds NaN or infinite values")
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return _to_rgb(Image.fromarray(arr), name or "array")
    if isinstance(source, dict):  # a datasets Image feature with decode=False
        source = source.get("bytes") or source.get("path")
    if not isinstance(source, (str, os.PathLike, bytes, bytearray)):
        raise DataError(
            f"{name or 'image'}: expected a path, PIL image or HxWxC uint8/float array, got {type(source).__name__}"
        )
    label = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
    try:
        if isinstance(source, (bytes, bytearray)):
            if len(source) == 0:
                raise DataError(f"{label}: empty image data")
            fh: Any = io.BytesIO(source)
        else:
            fh = check_file(source, label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the pixels decide, not a stray line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{label}: {img.width}x{img.height} pixels is over the {MAX_PIXELS:,} limit")
                img.load()
                return _to_rgb(img, label)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"{label}: refused as a decompression bomb (over dfmm's limit of {MAX_PIXELS:,} pixels)"
        ) from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{label}: not an image file PIL can read") from None
    except PermissionError as e:
        raise DataError(f"{label}: cannot read ({e.strerror or 'permission denied'})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{label}: corrupt or truncated image ({e})") from None


def _is_tensor(source: Any) -> bool:
    return type(source).__module__.startswith("torch") and hasattr(source, "detach")


def _tensor_to_array(t: Any) -> np.ndarray:
    """A tensor as an HxW(xC) array: CxHxW when the first axis holds 1, 3 or 4 channels and the last does not."""
    arr = t.detach().cpu().float().numpy() if t.is_floating_point() else t.detach().cpu().numpy()
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return arr


def image_format(source: Any) -> tuple[str, int, int]:
    """(format, width, height) from the header only, for the exploration notebook."""
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
    fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with Image.open(fh) as img:
            return (img.format or "?", img.width, img.height)
    except Exception:  # noqa: BLE001 - exploration reports unreadable files as such
        return ("unreadable", 0, 0)


# ------------------------------------------------------------------------------------------------- sources
def _group_column(header: list[str]) -> str | None:
    for name in ("pair_group", "group", "original"):
        if name in header:
            return name
    return None


def load_image_folder(root: str | Path) -> ImageSet:
    """``root/real`` and ``root/fake`` (any depth), with an optional ``labels.csv`` giving groups. A folder with only
    one of them loads (a fake-only set such as SDFD is a held-out test set); training refuses it (``dfmm.data``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} — expected folders real/ and fake/")
    files: dict[int, list[Path]] = {}
    for label, sub in ((REAL, "real"), (FAKE, "fake")):
        d = root / sub
        if not d.is_dir():
            continue  # one class only: a held-out test set (a training source is refused in dfmm.data)
        found = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise DataError(f"no images under {d} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        files[label] = found
    if not files:
        raise DataError(f"no folder {root / 'real'} or {root / 'fake'} — expected folders real/ and fake/ under {root}")
    groups_by_file: dict[str, str] = {}
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:  # a byte-order mark is no part of a name
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if "file" not in header:
                raise DataError(f"{csv_path}: expected a 'file' column, found {header}")
            gcol = _group_column(header)
            for row in reader:
                group = (row.get(gcol) or "").strip() if gcol else ""
                if group:
                    groups_by_file[row["file"].strip()] = group
    sources, labels, groups, names = [], [], [], []
    for label, paths in files.items():
        for p in paths:
            rel = p.relative_to(root).as_posix()
            sources.append(str(p))
            labels.append(label)
            groups.append(groups_by_file.get(rel, rel))
            names.append(rel)
    return ImageSet(sources, np.asarray(labels, dtype=np.int64), groups, names, origin=str(root))


# The Hemg schema: ``image`` ({bytes, path}, or bytes), ``label`` (0 = Fake, 1 = Real), optional group column.
# These read one row of the memory-mapped table (dfmm.data.arrow.Fetch), exactly as the rows were read when they
# were Python lists: bytes, else the path; the path or "row{i}" as the name; the group, else "{origin}#{i}".
_PARQUET_BATCH_ROWS = 256


def _read_source(col: Any, row: int, origin: str) -> Any:
    img = col[row].as_py()
    data = img.get("bytes") if isinstance(img, dict) else img
    if not data:
        data = img.get("path") if isinstance(img, dict) else None
    return data


def _read_name(col: Any, row: int, origin: str) -> str:
    from pyarrow import StructScalar

    cell = col[row]  # the path field alone: a name never copies the image bytes
    has_path = isinstance(cell, StructScalar) and cell.is_valid and cell.type.get_field_index("path") >= 0
    return str((cell["path"].as_py() if has_path else None) or f"row{row}")


def _read_group(col: Any, row: int, origin: str) -> str:
    group = col[row].as_py()
    return str(group) if group else f"{origin}#{row}"


def _hemg_labels(col: Any, origin: str) -> np.ndarray:
    """Internal 0/1 labels of a Hemg ``label`` column; a row with another value is refused, naming it."""
    raw = np.empty(len(col), dtype=np.int64)
    i = 0
    for chunk in col.chunks:
        values = chunk.to_pylist()
        for lab in values:
            if lab not in (0, 1):
                raise DataError(f"{origin}: row {i}: label {lab!r} is not 0 (Fake) or 1 (Real)")
            i += 1
        raw[i - len(values) : i] = values
    return 1 - raw  # hemg_to_internal, for the whole column


def _from_hemg_table(table: MappedTable, origin: str) -> ImageSet:
    """A table with the Hemg schema: ``image`` ({bytes, path}) and ``label`` (0 = Fake, 1 = Real)."""
    cols = set(table.column_names)
    if not {"image", "label"} <= cols:
        raise DataError(f"{origin}: expected columns 'image' and 'label' (Hemg schema), found {sorted(cols)}")
    labels = _hemg_labels(table.column("label"), origin)
    n = table.num_rows
    group_col = next((c for c in ("pair_group", "group") if c in cols), None)
    groups = Column(Fetch(table, group_col, _read_group, origin), n) if group_col else default_names(f"{origin}#", n)
    sources = Column(Fetch(table, "image", _read_source), n)
    return ImageSet(sources, labels, groups, Column(Fetch(table, "image", _read_name), n), origin=origin)


def load_image_parquet(path: str | Path) -> ImageSet:
    """A parquet file, or a folder of shards, with the Hemg schema; converted once to a memory-mapped table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"parquet not found: {path}")
    schemas = []
    for f in files:
        try:
            schemas.append(pq.read_schema(f))
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds
            raise parquet_error(f, e) from None
        if not {"image", "label"} <= set(schemas[-1].names):
            found = sorted(schemas[-1].names)
            raise DataError(f"{f}: expected columns 'image' and 'label' (Hemg schema), found {found}")
    first = schemas[0]
    keep = ["image", "label"] + [c for c in ("pair_group", "group") if c in first.names][:1]
    target = pa.schema([first.field(c) for c in keep])

    def types(schema: Any) -> dict[str, str]:
        return {c: str(schema.field(c).type) if c in schema.names else "missing" for c in keep}

    for f, schema in zip(files[1:], schemas[1:], strict=True):  # shards that disagree: named, before any work
        if types(schema) != types(first):
            raise DataError(f"{f}: columns {types(schema)} differ from those of {files[0].name}: {types(first)}")

    def batches() -> Any:
        for f in files:
            try:
                for batch in parquet_batches(f, keep, _PARQUET_BATCH_ROWS):
                    yield pa.RecordBatch.from_arrays([batch.column(c) for c in keep], schema=target)
            except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds
                raise parquet_error(f, e) from None

    key, stats = file_key("hemg-images", files, keep)
    return _from_hemg_table(cached_table(key, batches, stats), str(path))


def load_image_hub(name: str, split: str = "train") -> ImageSet:
    """The card's image dataset from the Hugging Face Hub (needs internet once; the ``datasets`` cache after)."""
    from dfmm.data.hub import load_hub_dataset

    return _from_hemg_table(MappedTable(hub=load_hub_dataset(name, split).data), f"hub:{name}")


def load_images(source: str, hub_split: str = "train") -> ImageSet:
    """Dispatch on the source string of ``data.images``."""
    if source.startswith("hub:"):
        return load_image_hub(source[4:], hub_split)
    p = Path(source)
    if p.suffix == ".parquet" or (p.is_dir() and any(p.glob("*.parquet")) and not (p / "real").exists()):
        return load_image_parquet(p)
    return load_image_folder(p)


__all__ = [
    "HubUnavailable",
    "ImageSet",
    "image_format",
    "load_image",
    "load_image_folder",
    "load_image_hub",
    "load_image_parquet",
    "load_images",
]
