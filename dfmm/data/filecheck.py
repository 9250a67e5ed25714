"""The one check of a file before it is decoded (images, videos): present, not a folder, not empty."""

from __future__ import annotations

import os
from pathlib import Path

from dfmm.errors import DataError

# kind -> (how a missing or empty one is called, what a folder was expected to be)
_WORDS = {"image": ("file", "an image file"), "video": ("video file", "a video file")}


def check_file(path: str | os.PathLike, label: str | None = None, kind: str = "image") -> Path:
    """``path`` as a ``Path``, or a one-line ``DataError`` starting with ``label`` (default: the path).

    Images: "no such file", "is a directory, expected an image file", "not a regular file", "empty file (0 bytes)"; videos: "no such
    video file", "is a directory, expected a video file", "empty video file (0 bytes)".
    """
    noun, expected = _WORDS[kind]
    p = Path(path)
    label = label or str(p)
    if not p.exists():
        raise DataError(f"{label}: no such {noun}")
    if p.is_dir():
        raise DataError(f"{label}: is a directory, expected {expected}")
    if not p.is_file():  # /dev/zero, a FIFO, a socket: reading it could block or never end
        raise DataError(f"{label}: not a regular file")
    if p.stat().st_size == 0:
        raise DataError(f"{label}: empty {noun} (0 bytes)")
    return p
