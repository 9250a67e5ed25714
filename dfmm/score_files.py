"""``dfmm score``: score many images, clips or texts into a CSV, one row per item, resumable.

Rows are appended as batches finish (flushed and synced), so a run stopped by Ctrl-C or ``kill -9`` keeps every
row it wrote; a rerun with the same ``--out`` reads what is there, drops a last row cut short by the kill, and
scores only the items that have no row yet. An unreadable item gets a row with its ``error`` and the run goes
on; error rows count as scored on a rerun (delete them to retry). Every row names the model by the digest of its checkpoint file, and a rerun with another checkpoint is
refused rather than mixing two models' scores in one file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dfmm.errors import DataError, DfmmError

COLUMNS = ["item", "probability_fake", "label", "true_label", "face_found", "error", "model_digest"]
KINDS = ("images", "videos", "texts")


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _items(kind: str, source: str) -> list[tuple[str, Any, int | None]]:
    """(item id, what to load, true label or None) for every item of the source."""
    if kind == "images":
        from dfmm.data.images import IMAGE_EXTENSIONS

        root = Path(source)
        if root.is_file():
            return [(str(root), root, None)]
        if not root.is_dir():
            raise DataError(f"--images {source}: no such file or folder")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"--images {source}: no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        parts = [set(p.relative_to(root).parts[:-1]) for p in files]
        labels = [1 if "fake" in s else 0 if "real" in s else None for s in parts]
        return [(str(p), p, lab) for p, lab in zip(files, labels, strict=True)]
    if kind == "videos":
        from dfmm.data.video import list_videos

        return [(str(p), p, lab) for p, lab in list_videos(source)]
    if kind == "texts":
        from dfmm.data.text import load_texts

        texts = load_texts(source)
        return [
            (f"{source}#{i}", t, int(lab)) for i, (t, lab) in enumerate(zip(texts.texts, texts.labels, strict=True))
        ]
    raise DataError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def read_done(out: Path, digest: str) -> set[str]:
    """Items already scored in ``out``; a last line cut short (no newline) is removed from the file first."""
    if not out.exists():
        return set()
    if out.is_dir():
        raise DataError(f"--out {out}: is a folder, expected a CSV file")
    data = out.read_bytes()
    if not data:
        return set()
    if data.split(b"\n", 1)[0].decode("utf-8", "replace").strip() != ",".join(COLUMNS):  # before touching it
        raise DataError(f"--out {out}: not a dfmm score file (expected the header {','.join(COLUMNS)})")
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(out, "r+b") as fh:
            fh.truncate(keep)
        data = data[:keep]
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    other = {r["model_digest"] for r in rows} - {digest}
    if other:
        raise DataError(
            f"--out {out}: holds scores of another checkpoint (digest {sorted(other)[0]}); use a new --out file"
        )
    return {r["item"] for r in rows}


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for s in range(0, len(items), size):
        yield items[s : s + size]


def _row(item: str, digest: str, true_label: int | None, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(item=item, model_digest=digest, true_label="" if true_label is None else true_label)
    row.update({k: ("" if v is None else v) for k, v in values.items()})
    if isinstance(row["probability_fake"], float):
        row["probability_fake"] = f"{row['probability_fake']:.6f}"
    return row


def _score_images(model: Any, batch: list[tuple[str, Any, int | None]], digest: str, face_crop: str) -> list[dict]:
    from dfmm.inference import _visual_logits, face_crop_image

    rule = model.rule("visual")
    rows: dict[int, dict[str, Any]] = {}
    ready: list[tuple[int, Any, dict[str, Any]]] = []
    for i, (item, path, lab) in enumerate(batch):
        try:
            seen, face = face_crop_image(model, path, face_crop)
            ready.append((i, seen, face))
        except DfmmError as e:
            rows[i] = _row(item, digest, lab, error=str(e))
    probs = rule.probability(_visual_logits(model, [seen for _, seen, _ in ready]))
    for (i, _, face), p in zip(ready, probs, strict=True):
        item, _, lab = batch[i]
        found = face.get("face_found")
        rows[i] = _row(item, digest, lab, probability_fake=float(p), label=rule.label(p), face_found=found)
    return [rows[i] for i in range(len(batch))]


def _score_one(model: Any, kind: str, item: tuple[str, Any, int | None], digest: str, options: dict) -> dict:
    from dfmm.inference import classify_text, classify_video

    name, what, lab = item
    try:
        if kind == "videos":
            r = classify_video(model, what, **options)
            found = not r["no_face"] if r["face_crop"] else None
            return _row(name, digest, lab, probability_fake=r["probability_fake"], label=r["label"], face_found=found)
        r = classify_text(model, what)
        return _row(name, digest, lab, probability_fake=r["probability_fake"], label=r["label"])
    except DfmmError as e:
        return _row(name, digest, lab, error=str(e))


def score_to_csv(
    model: Any,
    kind: str,
    source: str,
    out: str | Path,
    *,
    batch_size: int = 64,
    face_crop: str = "auto",
    num_frames: int = 32,
    aggregation: str = "mean",
    progress: bool = True,
) -> dict[str, Any]:
    """Score every item of ``source`` not yet in ``out``; returns counts and the rate."""
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    branch = "text" if kind == "texts" else "visual"
    if getattr(model, branch) is None:
        raise DataError(f"{model.path}: a {model.kind} checkpoint cannot score {kind}")
    out = Path(out)
    digest = file_digest(model.path)
    items = _items(kind, source)
    done = read_done(out, digest)
    todo = [it for it in items if it[0] not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not out.exists() or out.stat().st_size == 0
    t0 = time.perf_counter()
    errors = 0
    options = {"num_frames": num_frames, "aggregation": aggregation, "face_crop": face_crop != "never"}
    with (
        open(out, "a", newline="", encoding="utf-8") as fh,
        tqdm(total=len(todo), desc=f"score {kind}", disable=not progress or None, mininterval=2) as bar,
    ):
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for batch in _batches(todo, batch_size if kind == "images" else 1):
            if kind == "images":
                rows = _score_images(model, batch, digest, face_crop)
            else:
                rows = [_score_one(model, kind, it, digest, options) for it in batch]
            text = io.StringIO()
            csv.DictWriter(text, fieldnames=COLUMNS).writerows(rows)
            fh.write(text.getvalue())  # one write per batch: a kill leaves whole rows or a cut last line
            fh.flush()
            os.fsync(fh.fileno())
            errors += sum(1 for r in rows if r["error"])
            bar.update(len(batch))
    seconds = time.perf_counter() - t0
    return {
        "out": str(out),
        "items": len(items),
        "already_scored": len(items) - len(todo),
        "scored": len(todo) - errors,
        "errors": errors,
        "seconds": round(seconds, 2),
        "items_per_s": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
        "model_digest": digest,
    }
