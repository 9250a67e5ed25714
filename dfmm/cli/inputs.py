"""The command line's inputs, read and checked before torch is imported and a model loads: options that apply to
some inputs only (refused where they do not), files and folders expanded, texts read from arguments, files or
stdin, the multimodal pair, and the ``--gradcam`` folder with its overlays."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dfmm.errors import DfmmError

# Options that apply to some inputs only: (dest, flag, default). Parsed with default None so that one given where
# it does not apply is refused instead of silently ignored; the default is filled in after the check.
_SCOPED = {
    "num_frames": ("--num-frames", 32),
    "aggregation": ("--aggregation", "mean"),
    "face_crop": ("--face-crop", "auto"),
    "all_faces": ("--all-faces", False),
    "batch_size": ("--batch-size", None),
    "gradcam": ("--gradcam", None),
    "image": ("--image", None),
    "text": ("--text", None),
    "text_inputs": ("--file/--string", None),
}


def _options_for(a: argparse.Namespace, where: str, allowed: set[str], defaults: dict[str, Any] | None = None) -> None:
    """Refuse every scoped option given that ``where`` does not use, then fill in the defaults of the rest."""
    for dest, (flag, default) in _SCOPED.items():
        if not hasattr(a, dest):
            continue
        value = getattr(a, dest)
        if value is not None and dest not in allowed:
            flag = f"--{value}" if dest == "text_inputs" else flag
            raise DfmmError(f"{flag}: does not apply to {where}")
        if value is None:
            setattr(a, dest, (defaults or {}).get(dest, default))


def _expand(inputs: list[str], extensions: set[str]) -> list[Path]:
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in extensions)
            if not found:
                raise DfmmError(f"no files ({', '.join(sorted(extensions))}) under {p}")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise DfmmError(f"{p}: no such file or folder")
    return out


_TEXT_FILE_SUFFIXES = (".txt", ".md", ".json", ".jsonl", ".csv")


def _is_file(item: str) -> bool:
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # a long text is no file name (ENAMETOOLONG), nor one with a NUL character
        return False


def _looks_like_path(item: str) -> bool:
    """A name the user surely meant as a file: a text-file suffix (any case), or a separator and no whitespace."""
    if item.lower().endswith(_TEXT_FILE_SUFFIXES):
        return True
    separators = {"/", os.sep, os.altsep} - {None}
    return any(s in item for s in separators) and not any(ch.isspace() for ch in item)


def _text_inputs(items: list[str], how: str | None) -> list[tuple[str, str, str]]:
    """``(input, input_kind, text)`` for ``classify text``, read and checked before the model loads.

    ``-`` is stdin. By default an argument is a file when that file exists (any suffix) and the text itself
    otherwise, but one that looks like a path and does not exist is an error, not a text to score; ``--file``
    makes every argument a file, ``--string`` every argument a text. Files and stdin are strict UTF-8.
    """
    from dfmm.data.text import check_text, decode_utf8

    if not items:
        raise DfmmError("classify text: give at least one input")
    out = []
    for i, item in enumerate(items, start=1):
        if item == "-":
            name, kind, where = "<stdin>", "stdin", "<stdin>"
            stream = getattr(sys.stdin, "buffer", None)
            text = decode_utf8(stream.read(), where) if stream is not None else sys.stdin.read()
        elif how != "string" and _is_file(item):
            name, kind, where = item, "file", item
            try:
                text = decode_utf8(Path(item).read_bytes(), where)
            except OSError as e:
                raise DfmmError(f"{item}: cannot read ({e.strerror})") from None
        elif how == "file" or (how is None and _looks_like_path(item)):
            if Path(item).is_dir():
                raise DfmmError(f"{item}: is a directory, expected a text file")
            if Path(item).exists():  # /dev/zero, a FIFO: reading could block or never end
                raise DfmmError(f"{item}: not a regular file, expected a text file")
            hint = "" if how == "file" else " (use --string to classify the text itself)"
            raise DfmmError(f"{item}: no such file{hint}")
        else:
            name, kind, where, text = item[:60], "string", f"text argument {i}", item
        out.append((name, kind, check_text(text, where)))
    return out


def _gradcam_folder(path: str) -> Path:
    """The ``--gradcam`` folder, checked before the model loads: a file in its place, or a place where no folder can
    be made, is an error, not a crash later. It is made when the first overlay is written (no empty folder is left
    behind when no image can be read)."""
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"{p} is a file"
                raise DfmmError(f"--gradcam {path}: {what}, expected a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                what = "the folder is not writable" if p == out else f"cannot create the folder ({p} is not writable)"
                raise DfmmError(f"--gradcam {path}: {what}")
            break
    return out


def _write_overlay(folder: Path, stem: str, overlay: Any, written: set[Path]) -> Path:
    from PIL import Image

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DfmmError(f"--gradcam {folder}: cannot create the folder ({e.strerror})") from None
    png, n = folder / f"{stem}_gradcam.png", 1
    while png in written:  # a/face.jpg and b/face.jpg: one overlay each
        n += 1
        png = folder / f"{stem}_{n}_gradcam.png"
    written.add(png)
    try:
        Image.fromarray(overlay).save(png)
    except OSError as e:  # a full disk, a folder made read-only meanwhile
        raise DfmmError(f"--gradcam {folder}: cannot write {png.name} ({e.strerror or e})") from None
    return png


def _multimodal_inputs(a: argparse.Namespace) -> tuple[Any, str | None]:
    """The image (decoded) and text of ``classify multimodal``, read and checked before the model loads."""
    from dfmm.data.images import load_image
    from dfmm.data.text import check_text, decode_utf8

    if a.inputs:
        raise DfmmError("classify multimodal: give the inputs as --image FILE and --text TEXT ('-' reads stdin)")
    if a.image is None and a.text is None:
        raise DfmmError("classify multimodal: give --image, --text or both")
    image = load_image(a.image) if a.image is not None else None
    text = None
    if a.text is not None:
        if a.text == "-":
            stream = getattr(sys.stdin, "buffer", None)
            text = decode_utf8(stream.read(), "<stdin>") if stream is not None else sys.stdin.read()
        else:
            text = a.text
        text = check_text(text, "--text")
    return image, text
