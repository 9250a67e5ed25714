"""``dfmm score``: score many images, clips or texts into a CSV, one row per item, resumable.

Rows are appended as batches finish (flushed and synced), so a run stopped by Ctrl-C or ``kill -9`` keeps every
row it wrote; a rerun with the same ``--out`` reads what is there, drops a last row cut short by the kill, and
scores only the items that have no row yet. An unreadable item gets a row with its ``error`` and the run goes
on; error rows count as scored on a rerun (delete them to retry). Every row names the model by the digest of its
checkpoint file, and a rerun with another checkpoint is refused rather than mixing two models' scores in one file.

An item is known by its content: an image or clip by its resolved path and the digest of its bytes (the same
folder typed as an absolute or a relative path is the same items; a file whose bytes changed is scored again and
its old row dropped), a text by the digest of the text alone (rows inserted or reordered in a JSONL keep their
scores; ``item`` names the row where the text stood when it was scored).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from dfmm.data.batches import in_background
from dfmm.errors import DataError, failure

COLUMNS = [
    "item",
    "content_digest",
    "probability_fake",
    "label",
    "in_distribution",  # dfmm.models.ood: share of in-domain validation items as far from the training data
    "uncertain",  # true: unlike the training data (farther than 95% of them); empty: not measured
    "true_label",
    "face_found",
    "error",
    "model_digest",
]
PREVIOUS_HEADERS = {  # headers of older dfmm versions' score files, and what they lack
    "item,probability_fake,": "content digests",
    "item,content_digest,probability_fake,label,true_label,": "the in_distribution and uncertain columns",
}
KINDS = ("images", "videos", "texts")


class Item(NamedTuple):
    """One thing to score: its name in the CSV, what to load, its true label (or None) and its content digest."""

    name: str
    what: Any
    true_label: int | None
    digest: str


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def text_digest(text: str) -> str:
    """The first 16 hex digits of the SHA-256 of the text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _digest_or_none(path: Path) -> str:
    """A file's digest; an unreadable file gets a digest of its path, so it still gets its error row once."""
    try:
        return file_digest(path)
    except OSError:
        return "unreadable:" + hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def list_items(kind: str, source: str) -> list[Item]:
    """Every item of the source, named by its resolved path (a text: the file's resolved path and its row) and
    keyed by its content digest; read before any model loads, so a bad source costs no model."""
    if kind == "images":
        from dfmm.data.images import IMAGE_EXTENSIONS

        root = Path(source)
        if root.is_file():
            return [Item(str(root.resolve()), root, None, _digest_or_none(root))]
        if not root.is_dir():
            raise DataError(f"--images {source}: no such file or folder")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"--images {source}: no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        parts = [set(p.relative_to(root).parts[:-1]) for p in files]
        labels = [1 if "fake" in s else 0 if "real" in s else None for s in parts]
        return [Item(str(p.resolve()), p, lab, _digest_or_none(p)) for p, lab in zip(files, labels, strict=True)]
    if kind == "videos":
        from dfmm.data.video import list_videos

        return [Item(str(p.resolve()), p, lab, _digest_or_none(p)) for p, lab in list_videos(source)]
    if kind == "texts":
        from dfmm.data.text import load_texts

        texts = load_texts(source)
        name = str(Path(texts.origin).resolve()) if not texts.origin.startswith("hub:") else texts.origin
        return [
            Item(f"{name}#{i}", t, int(lab), text_digest(t))
            for i, (t, lab) in enumerate(zip(texts.iter_texts(), texts.labels, strict=True))
        ]
    raise DataError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def check_out(out: Path) -> None:
    """``--out`` can be written: not a folder, and its folder exists or can be made (checked before any work)."""
    if out.is_dir():
        raise DataError(f"--out {out}: is a folder, expected a CSV file")
    for p in out.parents:
        if p.exists():
            if not p.is_dir():
                raise DataError(f"--out {out}: {p} is a file, expected a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                raise DataError(f"--out {out}: {p} is not writable")
            break
    if out.exists() and not os.access(out, os.R_OK | os.W_OK):
        raise DataError(f"--out {out}: not readable and writable")


def read_rows(out: Path, digest: str | None) -> list[dict[str, str]]:
    """The rows already in ``out``; a last line cut short (no newline) is removed from the file first. A file that
    is not a score file (of this checkpoint, given its ``digest``) is refused untouched."""
    check_out(out)
    if not out.exists():
        return []
    try:
        data = out.read_bytes()
    except OSError as e:
        raise DataError(f"--out {out}: cannot read ({e.strerror or e})") from None
    if not data:
        return []
    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if header != ",".join(COLUMNS):  # before touching it
        lacks = next((what for start, what in PREVIOUS_HEADERS.items() if header.startswith(start)), None)
        hint = f" (written by an older dfmm without {lacks}: use a new --out file)" if lacks else ""
        raise DataError(f"--out {out}: not a dfmm score file (expected the header {','.join(COLUMNS)}){hint}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"--out {out}: not valid UTF-8 at byte {e.start}; not a file dfmm score wrote") from None
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(out, "r+b") as fh:
            fh.truncate(keep)
        text = data[:keep].decode("utf-8")
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as e:
        raise DataError(f"--out {out}: not valid CSV ({e})") from None
    if any(None in r or None in r.values() for r in rows):
        raise DataError(f"--out {out}: a row does not have the {len(COLUMNS)} columns of a dfmm score file")
    other = {r["model_digest"] for r in rows} - {digest}
    if other and digest is not None:
        raise DataError(
            f"--out {out}: holds scores of another checkpoint (digest {sorted(other)[0]}); use a new --out file"
        )
    return rows


def pending(kind: str, items: list[Item], rows: list[dict[str, str]]) -> tuple[list[Item], list[dict[str, str]]]:
    """(items still to score, rows to keep). An image or clip is done when a row has its resolved path and its
    digest; a row for a path whose content has changed since is dropped and the item scored again. A text is done
    when a row has its digest, wherever it stood: the row is renamed to where the text stands now (rows inserted or
    reordered in the file keep their scores), and a row naming a current position whose text has changed is dropped
    (the new text there is scored), so every current row of the source has exactly one row."""
    if kind == "texts":
        return _pending_texts(items, rows)
    current = {it.name: it.digest for it in items}
    keep = [r for r in rows if current.get(r["item"], r["content_digest"]) == r["content_digest"]]
    done = {(r["item"], r["content_digest"]) for r in keep}
    return [it for it in items if (it.name, it.digest) not in done], keep


def _pending_texts(items: list[Item], rows: list[dict[str, str]]) -> tuple[list[Item], list[dict[str, str]]]:
    names = {it.name for it in items}
    free: dict[str, list[str]] = {}  # digest -> the current names of that text not yet given a row, in file order
    for it in items:
        free.setdefault(it.digest, []).append(it.name)
    keep, taken = [], set()
    for r in rows:
        places = free.get(r["content_digest"])
        if places:  # this text is in the source: the row now names where it stands
            r = {**r, "item": places.pop(0)}
            taken.add(r["item"])
            keep.append(r)
        elif r["item"] not in names:  # another file's row, or a text since removed from this one: left as it is
            keep.append(r)
        # else: a row for a position whose text has changed, or a second row of the same text: dropped
    return [it for it in items if it.name not in taken], keep


def _rewrite(out: Path, rows: list[dict[str, str]]) -> None:
    """Replace ``out`` with the header and ``rows``, atomically (a kill leaves the old file or the new one)."""
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(out)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for s in range(0, len(items), size):
        yield items[s : s + size]


def _row(item: Item, digest: str, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(item=item.name, content_digest=item.digest, model_digest=digest)
    row["true_label"] = "" if item.true_label is None else item.true_label
    row.update({k: ("" if v is None else v) for k, v in values.items()})
    for key in ("probability_fake", "in_distribution"):
        if isinstance(row[key], float):
            row[key] = f"{row[key]:.6f}"
    return row


def _judged(result: dict[str, Any]) -> dict[str, Any]:
    """The out-of-distribution columns of a classify result (or an ``ood_judgements`` entry)."""
    return {"in_distribution": result["in_distribution"], "uncertain": result["uncertain"]}


def _prepare_images(model: Any, batch: list[Item], face_crop: str) -> tuple[list[Item], Any, list[Any], dict]:
    """What the model scores for a batch, made in ``in_background``'s worker: the readable images, those to crop
    through the face detector in one call (``face_crop_images``), cut to their faces and made into input tensors;
    an unreadable image gets its error instead."""
    from dfmm.data.images import load_image
    from dfmm.serving.inference import _image_tensor, face_crop_images

    loaded, errors = {}, {}
    for i, item in enumerate(batch):
        try:
            loaded[i] = load_image(item.what)
        except Exception as e:  # noqa: BLE001 - any per-item failure is that item's error row (see failure)
            errors[i] = failure(e)
    try:
        seen = dict(zip(loaded, face_crop_images(model, list(loaded.values()), face_crop), strict=True))
    except Exception:  # noqa: BLE001 - one image failed the batch: each on its own, a failure its error row
        seen = {}
        for i, image in loaded.items():
            try:
                seen[i] = face_crop_images(model, [image], face_crop)[0]
            except Exception as e:  # noqa: BLE001 - see failure
                errors[i] = failure(e)
    ready: list[tuple[int, dict[str, Any]]] = []
    images = []
    for i, (image, face) in seen.items():
        try:
            x = _image_tensor(model, [image])
        except Exception as e:  # noqa: BLE001 - any per-item failure is that item's error row (see failure)
            errors[i] = failure(e)
            continue
        ready.append((i, face))
        images.append(x)
    return batch, ready, images, errors


def _score_images(model: Any, prepared: tuple[list[Item], Any, list[Any], dict], digest: str) -> list[dict]:
    import torch

    from dfmm.serving.inference import tensor_scores

    batch, ready, images, errors = prepared
    rule = model.rule("visual")
    rows = {i: _row(batch[i], digest, error=e) for i, e in errors.items()}
    logits, judged = tensor_scores(model, torch.cat(images) if images else None)
    for (i, face), p, j in zip(ready, rule.probability(logits), judged, strict=True):
        found = face.get("face_found")
        rows[i] = _row(batch[i], digest, probability_fake=float(p), label=rule.label(p), face_found=found, **_judged(j))
    return [rows[i] for i in range(len(batch))]


def _score_one(model: Any, kind: str, item: Item, digest: str, options: dict) -> dict:
    from dfmm.serving.inference import classify_text, classify_video

    try:
        if kind == "videos":
            r = classify_video(model, item.what, **options)
            found = not r["no_face"] if r["face_crop"] else None
            return _row(
                item, digest, probability_fake=r["probability_fake"], label=r["label"], face_found=found, **_judged(r)
            )
        r = classify_text(model, item.what)
        return _row(item, digest, probability_fake=r["probability_fake"], label=r["label"], **_judged(r))
    except Exception as e:  # noqa: BLE001 - any per-item failure is that item's error row (see failure)
        return _row(item, digest, error=failure(e))


def check_can_score(model: Any, kind: str) -> None:
    branch = "text" if kind == "texts" else "visual"
    if getattr(model, branch) is None:
        raise DataError(f"{model.path}: a {model.kind} checkpoint cannot score {kind}")


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
    items: list[Item] | None = None,
) -> dict[str, Any]:
    """Score every item of ``source`` not yet in ``out``; returns counts and the rate. ``items``: the source's
    ``list_items``, when the caller read them before loading the model."""
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    check_can_score(model, kind)
    out = Path(out)
    digest = model.digest()
    items = list_items(kind, source) if items is None else items
    rows_before = read_rows(out, digest)
    todo, keep = pending(kind, items, rows_before)
    if keep != rows_before:  # rows of items whose content changed (scored again below), or texts that moved
        _rewrite(out, keep)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None
    new_file = not out.exists() or out.stat().st_size == 0
    t0 = time.perf_counter()
    errors = 0
    options = {"num_frames": num_frames, "aggregation": aggregation, "face_crop": face_crop != "never"}
    with (
        open(out, "a", newline="", encoding="utf-8") as fh,
        tqdm(total=len(todo), desc=f"score {kind}", disable=not progress or None, mininterval=2, unit="item") as bar,
    ):
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        if kind == "images":  # the next batches are decoded and cropped in a worker while the model scores this one
            work = in_background(_prepare_images(model, b, face_crop) for b in _batches(todo, batch_size))
        else:
            work = _batches(todo, 1)
        for batch in work:
            if kind == "images":
                rows = _score_images(model, batch, digest)
                batch = batch[0]
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
        "rescored_changed": len(rows_before) - len(keep),
        "scored": len(todo) - errors,
        "errors": errors,
        "seconds": round(seconds, 2),
        "items_per_s": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
        "model_digest": digest,
    }
