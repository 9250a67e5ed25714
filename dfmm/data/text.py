"""Texts, human (0) vs AI-generated (1).

Sources: the Hub dataset ``artem9k/ai-text-detection-pile`` (``text``, ``source`` = human/ai), local parquet
files with that schema, and JSONL/CSV files with ``text`` + ``label`` (and optional ``group``, ``domain``,
``generator``). A human text and its AI rewrites share a ``group`` so a split never separates them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.data.labels import FAKE, REAL, parse_label
from dfmm.errors import DataError

MAX_TEXT_CHARS = 1_000_000  # longer texts are cut here before tokenising (the tokenizer truncates anyway)


@dataclass
class TextSet:
    texts: list[str]
    labels: np.ndarray
    groups: list[str]
    meta: dict[str, list[Any]] = field(default_factory=dict)  # per-row extra columns (domain, generator)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray | list[int]) -> TextSet:
        index = list(np.asarray(index, dtype=int))
        return TextSet(
            [self.texts[i] for i in index],
            self.labels[index],
            [self.groups[i] for i in index],
            {k: [v[i] for i in index] for k, v in self.meta.items()},
            self.origin,
        )

    def counts(self) -> dict[str, int]:
        return {"human": int((self.labels == REAL).sum()), "ai": int((self.labels == FAKE).sum())}


def check_text(text: object, where: str, *, words: bool = True) -> str:
    """A usable text (cut at ``MAX_TEXT_CHARS``) or a one-line ``DataError`` naming ``where``.

    Refused: ``None`` and non-strings; empty and whitespace-only texts; a lone surrogate (``"\\ud800"``: not
    Unicode text, the tokenizer cannot take it), named by its character position; and, with ``words`` (what
    the inference API asks), a text with no letter or digit in any script (``str.isalnum``): only punctuation,
    symbols, emoji or control characters leave no words to score. Dataset rows are read with ``words=False``:
    a public set may hold a few rows like ``"-- --"`` and one such row must not stop a study.
    """
    if text is None:
        raise DataError(f"{where}: text is missing (None)")
    if not isinstance(text, str):
        raise DataError(f"{where}: text must be a string, got {type(text).__name__}")
    text = text[:MAX_TEXT_CHARS]
    if not text.strip():
        raise DataError(f"{where}: text is empty or whitespace only")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(
            f"{where}: lone surrogate U+{ord(text[e.start]):04X} at character {e.start} (not valid Unicode text)"
        ) from None
    if words and not any(ch.isalnum() for ch in text):
        raise DataError(
            f"{where}: no words to score (no letter or digit; only punctuation, symbols, emoji or control characters)"
        )
    return text


def decode_utf8(data: bytes, where: str) -> str:
    """Bytes from a file or stdin as text: strictly UTF-8 (a leading byte-order mark is dropped), or a
    ``DataError`` giving the offset of the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not valid UTF-8 at byte {e.start}") from None
    return text.removeprefix("\ufeff")


def _row_to_item(row: dict[str, Any], where: str, origin: str, n: int) -> tuple[str, int, str, dict[str, Any]]:
    if "text" not in row:
        raise DataError(f"{where}: no 'text' field (fields: {sorted(row)})")
    text = check_text(row["text"], where, words=False)
    if "label" in row:
        label = parse_label(row["label"])
        if label is None:
            raise DataError(f"{where}: label {row['label']!r} is not 0 (human) or 1 (AI)")
    elif "source" in row:  # artem9k schema
        label = parse_label(row["source"])
        if label is None:
            raise DataError(f"{where}: source {row['source']!r} is not 'human' or 'ai'")
    else:
        raise DataError(f"{where}: no 'label' (0/1) or 'source' (human/ai) field")
    group = row.get("group")
    group = str(group) if group not in (None, "") else f"{origin}#{n}"
    extra = {k: row.get(k) for k in ("domain", "generator") if k in row}
    return text, label, group, extra


def _collect(rows: Any, origin: str) -> TextSet:
    texts, labels, groups = [], [], []
    meta: dict[str, list[Any]] = {"domain": [], "generator": []}
    for n, (where, row) in enumerate(rows):
        text, label, group, extra = _row_to_item(row, where, origin, n)
        texts.append(text)
        labels.append(label)
        groups.append(group)
        for k in meta:
            meta[k].append(extra.get(k))
    if not texts:
        raise DataError(f"{origin}: no texts found")
    meta = {k: v for k, v in meta.items() if any(x is not None for x in v)}
    return TextSet(texts, np.asarray(labels, dtype=np.int64), groups, meta, origin)


def _jsonl_rows(path: Path) -> Any:
    with path.open("rb") as fh:
        for i, raw in enumerate(fh, start=1):
            where = f"{path}:{i}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object")
            yield where, row


def _csv_rows(path: Path) -> Any:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                yield f"{path}:{i}", row
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason})") from None


def load_text_file(path: str | Path) -> TextSet:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _collect(_jsonl_rows(path), str(path))
    if suffix == ".csv":
        return _collect(_csv_rows(path), str(path))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return _from_table(table, str(path))
    raise DataError(f"{path}: expected a .jsonl, .csv or .parquet file of texts")


def _from_table(table: Any, origin: str) -> TextSet:
    cols = table.column_names
    if "text" not in cols or not ({"label", "source"} & set(cols)):
        raise DataError(f"{origin}: expected columns 'text' and 'source' (human/ai) or 'label', found {cols}")
    rows = table.select([c for c in cols if c in ("text", "label", "source", "group", "domain", "generator")])
    return _collect(((f"{origin} row {i}", r) for i, r in enumerate(rows.to_pylist())), origin)


def load_text_hub(name: str, split: str = "train") -> TextSet:
    from dfmm.data.hub import load_hub_table

    return _from_table(load_hub_table(name, split), f"hub:{name}")


def load_texts(source: str, hub_split: str = "train") -> TextSet:
    if source.startswith("hub:"):
        return load_text_hub(source[4:], hub_split)
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if len(files) != 1:
            raise DataError(f"{path}: expected one .jsonl file in the folder, found {len(files)}")
        path = files[0]
    return load_text_file(path)
