"""Texts, human (0) vs AI-generated (1).

Sources: the Hub dataset ``artem9k/ai-text-detection-pile`` (``text``, ``source`` = human/ai), local parquet
files with that schema, and JSONL/CSV files with ``text`` + ``label`` (and optional ``group``, ``domain``,
``generator``). A human text and its AI rewrites share a ``group`` so a split never separates them.

Every source is checked row by row once (a bad row stops the load with a one-line error naming it) and kept in a
memory-mapped Arrow table (``dfmm.data.arrow``, cached per file and per Hub split): a ``TextSet`` reads a text
when asked for, and never holds every text of a source as Python strings.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.data.arrow import (
    Column,
    Fetch,
    MappedTable,
    cached_table,
    default_names,
    file_key,
    hub_key,
    parquet_batches,
    parquet_error,
    take,
)
from dfmm.data.labels import FAKE, REAL, parse_label
from dfmm.errors import DataError

MAX_TEXT_CHARS = 1_000_000  # longer texts are cut here before tokenising (the tokenizer truncates anyway)


class TextSet:
    """Texts with labels (0 human, 1 AI), groups and per-row ``meta`` columns (domain, generator).

    Loaded sources hold their texts in a memory-mapped Arrow table (``dfmm.data.arrow``): :meth:`text` reads one,
    :meth:`iter_texts` streams them, and ``texts`` builds the list of this set's texts when asked for (the
    tokenizer takes a list); the set itself never holds them as Python objects. Sets made from lists keep them.
    """

    def __init__(
        self,
        texts: Sequence[str],
        labels: np.ndarray,
        groups: Sequence[str],
        meta: dict[str, Sequence[Any]] | None = None,
        origin: str = "",
    ) -> None:
        self._texts = texts
        self.labels = labels
        self.groups = groups
        self.meta = {} if meta is None else meta
        self.origin = origin

    @property
    def texts(self) -> list[str]:
        """This set's texts as a list: the list it was made from, or one built now from the Arrow table."""
        return self._texts if isinstance(self._texts, list) else list(self._texts)

    def text(self, i: int) -> str:
        return self._texts[i]

    def iter_texts(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def subset(self, index: np.ndarray | list[int]) -> TextSet:
        index = np.asarray(index, dtype=int)
        meta = {k: take(v, index) for k, v in self.meta.items()}
        return TextSet(take(self._texts, index), self.labels[index], take(self.groups, index), meta, self.origin)

    def counts(self) -> dict[str, int]:
        return {"human": int((self.labels == REAL).sum()), "ai": int((self.labels == FAKE).sum())}

    def __repr__(self) -> str:
        return f"TextSet({len(self)} texts from {self.origin or 'memory'}: {self.counts()})"


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


def _row_to_item(row: dict[str, Any], where: str) -> tuple[str, int, str | None, dict[str, Any]]:
    """One row checked: ``(text, label, group or None for the row's own group, extra columns)``."""
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
    group = str(group) if group not in (None, "") else None
    extra = {k: row.get(k) for k in META_COLUMNS if k in row}
    return text, label, group, extra


# ------------------------------------------------------------------------------------------- Arrow tables
# Every source is checked row by row once and stored in this schema (dfmm.data.arrow caches it, memory-mapped):
# the text as cut by check_text, the 0/1 label, the group (UTF-8 with surrogatepass: a JSON group may hold a
# lone surrogate; null: the row's own group, "{origin}#{row}") and the meta columns as JSON (null: None).
META_COLUMNS = ("domain", "generator")
_BATCH_ROWS = 2048
_BATCH_CHARS = 32_000_000


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [("text", pa.large_string()), ("label", pa.int8()), ("group", pa.large_binary())]
        + [(k, pa.large_string()) for k in META_COLUMNS]
    )


def _normalise(rows: Iterable[tuple[str, dict[str, Any]]], origin: str) -> Iterator[Any]:
    """Record batches of checked rows (a ``DataError`` names the first bad one)."""
    import pyarrow as pa

    schema = _schema()
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    chars = n = 0
    for where, row in rows:
        text, label, group, extra = _row_to_item(row, where)
        cols["text"].append(text)
        cols["label"].append(label)
        cols["group"].append(None if group is None else group.encode("utf-8", "surrogatepass"))
        for k in META_COLUMNS:
            v = extra.get(k)
            cols[k].append(None if v is None else json.dumps(v, default=str))
        n += 1
        chars += len(text)
        if len(cols["text"]) >= _BATCH_ROWS or chars >= _BATCH_CHARS:
            yield pa.record_batch([cols[c] for c in schema.names], schema=schema)
            cols = {name: [] for name in schema.names}
            chars = 0
    if not n:
        raise DataError(f"{origin}: no texts found")
    if cols["text"]:
        yield pa.record_batch([cols[c] for c in schema.names], schema=schema)


def _read_value(col: Any, row: int, origin: str) -> Any:
    return col[row].as_py()


def _read_group(col: Any, row: int, origin: str) -> str:
    group = col[row].as_py()
    return f"{origin}#{row}" if group is None else group.decode("utf-8", "surrogatepass")


def _read_json(col: Any, row: int, origin: str) -> Any:
    value = col[row].as_py()
    return None if value is None else json.loads(value)


def _text_set(table: MappedTable, origin: str) -> TextSet:
    """The set over a checked table: labels in memory (numpy), texts, groups and meta read per row."""
    n = table.num_rows
    labels = table.column("label").to_numpy().astype(np.int64)
    if table.column("group").null_count == n:
        groups: Sequence[str] = default_names(f"{origin}#", n)
    else:
        groups = Column(Fetch(table, "group", _read_group, origin), n)
    meta = {k: Column(Fetch(table, k, _read_json), n) for k in META_COLUMNS if table.column(k).null_count < n}
    return TextSet(Column(Fetch(table, "text", _read_value), n), labels, groups, meta, origin)


def _checked(key: str, stats: list[list[Any]] | None, rows: Callable[[], Any], origin: str) -> TextSet:
    return _text_set(cached_table(key, lambda: _normalise(rows(), origin), stats), origin)


# ------------------------------------------------------------------------------------------------ sources
def _jsonl_rows(path: Path) -> Any:
    with path.open("rb") as fh:
        for i, raw in enumerate(fh, start=1):
            where = f"{path}:{i}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if i == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as Windows editors write
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object")
            yield where, row


# A CSV field may be as long as a JSONL text (in UTF-8 bytes, the csv module counts characters).
CSV_FIELD_LIMIT = 4 * MAX_TEXT_CHARS


def _csv_rows(path: Path) -> Any:
    """Rows of a CSV of texts: UTF-8 with or without a byte-order mark, fields up to ``CSV_FIELD_LIMIT``."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:  # the module's default, 128 KB, is far below a long essay
        csv.field_size_limit(CSV_FIELD_LIMIT)
    line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise DataError(f"{path}:{line}: more fields than the header has")
                yield f"{path}:{line}", row
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 after line {line} ({e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{path}:{line + 1}: not valid CSV ({e})") from None


_COLUMNS = ("text", "label", "source", "group", *META_COLUMNS)


def _check_columns(cols: list[str], origin: str) -> list[str]:
    """The columns to read from a table of texts (``text`` and ``source`` or ``label`` must be there)."""
    if "text" not in cols or not ({"label", "source"} & set(cols)):
        raise DataError(f"{origin}: expected columns 'text' and 'source' (human/ai) or 'label', found {cols}")
    return [c for c in cols if c in _COLUMNS]


def _table_rows(batches: Iterable[Any], origin: str) -> Any:
    i = 0
    for batch in batches:
        for row in batch.to_pylist():
            yield f"{origin} row {i}", row
            i += 1


def _parquet_rows(path: Path, origin: str) -> Callable[[], Any]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds
        raise parquet_error(path, e) from None
    keep = _check_columns(names, origin)

    def rows() -> Any:
        try:
            yield from _table_rows(parquet_batches(path, keep, _BATCH_ROWS), origin)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds
            raise parquet_error(path, e) from None

    return rows


def load_text_file(path: str | Path) -> TextSet:
    """JSONL, CSV or parquet (artem9k schema) texts, checked once and then read from the memory-mapped cache."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    suffix = path.suffix.lower()
    origin = str(path)
    if suffix in (".jsonl", ".json"):
        rows: Callable[[], Any] = partial(_jsonl_rows, path)
    elif suffix == ".csv":
        rows = partial(_csv_rows, path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path, origin)
    else:
        raise DataError(f"{path}: expected a .jsonl, .csv or .parquet file of texts")
    key, stats = file_key("texts", [path], suffix)
    return _checked(key, stats, rows, origin)


def load_text_hub(name: str, split: str = "train") -> TextSet:
    """The card's texts from the Hugging Face Hub (needs internet once; the ``datasets`` cache after)."""
    from dfmm.data.hub import load_hub_dataset

    origin = f"hub:{name}"
    ds = load_hub_dataset(name, split)
    table = ds.data.table
    keep = _check_columns(list(table.column_names), origin)
    key = hub_key("texts", name, split, ds._fingerprint)
    return _checked(key, None, lambda: _table_rows(table.select(keep).to_batches(_BATCH_ROWS), origin), origin)


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
