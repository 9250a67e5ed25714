"""Arrow-backed items: a source's images and texts stay in an Arrow table and one item is read when asked for.

A parquet, JSONL or CSV source is converted once into an Arrow IPC stream file under :func:`cache_dir` (keyed by
the source files' paths, sizes and modification times) and memory-mapped; a Hub dataset is read from the
memory-mapped Arrow files of the ``datasets`` cache. Nothing holds every image or text as Python objects: the
bytes live in the page cache, shared by every process that maps the file (DataLoader workers included), and an
item's bytes or text become a Python object only when a Dataset asks for that item.

- :class:`MappedTable`: a picklable handle on such a table (pickled as its file's path, not its data);
- :class:`Column`: a read-only sequence view of one column through a row selection: ``col[i]`` reads row
  ``rows[i]``; :meth:`Column.take` selects a subset by composing row indices, without reading anything;
- :func:`take`: the one subset rule for every per-item sequence, a :class:`Column` or a plain list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("dfmm.data")

CACHE_VERSION = 1  # bump when what a cache file holds changes: older files are then never read
_STALE_TMP_S = 24 * 3600


def cache_dir() -> Path:
    """Where converted tables live: ``$DFMM_CACHE_DIR/arrow``, else ``${XDG_CACHE_HOME:-~/.cache}/dfmm/arrow``."""
    root = os.environ.get("DFMM_CACHE_DIR")
    if root:
        return Path(root) / "arrow"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dfmm" / "arrow"


# ------------------------------------------------------------------------------------------------- tables
class MappedTable:
    """An Arrow table held as a memory-mapped IPC stream file (``path``), a ``datasets`` table (``hub``: the Hub
    cache's memory-mapped files) or, when no cache folder can be written, in memory (``table``).

    Pickling keeps the path (or the ``datasets`` table, which pickles as its files' paths), so a worker process
    maps the same file instead of receiving a copy of the data.
    """

    def __init__(self, table: Any = None, *, path: str | Path | None = None, hub: Any = None) -> None:
        self.path = str(path) if path is not None else None
        self.hub = hub
        self._table = table
        self._columns: dict[str, Any] = {}

    @property
    def table(self) -> Any:
        if self._table is None:
            if self.hub is not None:
                self._table = self.hub.table
            else:
                import pyarrow as pa

                self._table = pa.ipc.open_stream(pa.memory_map(self.path)).read_all()
        return self._table

    def column(self, name: str) -> Any:
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self.table.column(name)
        return col

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def column_names(self) -> list[str]:
        return list(self.table.column_names)

    def __getstate__(self) -> dict[str, Any]:
        data = None if (self.path is not None or self.hub is not None) else self._table
        return {"path": self.path, "hub": self.hub, "table": data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["table"], path=state["path"], hub=state["hub"])

    def __repr__(self) -> str:
        where = self.path or ("datasets cache" if self.hub is not None else "memory")
        return f"MappedTable({where})"


class Fetch:
    """``row -> value``: ``read(column, row, origin)`` on one column of a :class:`MappedTable` (``column`` None:
    no column, ``read`` gets ``None``). Picklable when ``read`` is a module-level function."""

    __slots__ = ("column", "origin", "read", "table")

    def __init__(self, table: MappedTable, column: str | None, read: Callable[[Any, int, str], Any], origin: str = ""):
        self.table, self.column, self.read, self.origin = table, column, read, origin

    def __call__(self, row: int) -> Any:
        return self.read(self.table.column(self.column) if self.column else None, row, self.origin)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.table, self.column, self.read, self.origin)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.table, self.column, self.read, self.origin = state


# ------------------------------------------------------------------------------------------------ columns
class Column(Sequence):
    """A read-only sequence whose item ``i`` is ``fetch(rows[i])``, read when asked for (``rows`` None: all
    ``size`` rows in order). Slices and :meth:`tolist` return lists; ``==`` compares items with any list, tuple
    or Column; ``np.asarray(col)`` is the array of its items, as for a list."""

    __slots__ = ("_fetch", "_rows", "_size")

    def __init__(self, fetch: Callable[[int], Any], size: int, rows: np.ndarray | None = None) -> None:
        self._fetch, self._size, self._rows = fetch, int(size), rows

    def __len__(self) -> int:
        return self._size if self._rows is None else len(self._rows)

    def _row(self, i: Any) -> int:
        n = len(self)
        i = int(i) if isinstance(i, np.integer) else i.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a column of {n} items")
        return i if self._rows is None else int(self._rows[i])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            rows = range(self._size)[i] if self._rows is None else self._rows[i]
            return [self._fetch(int(r)) for r in rows]
        return self._fetch(self._row(i))

    def __iter__(self) -> Iterator[Any]:
        rows: Iterable[Any] = range(self._size) if self._rows is None else self._rows
        fetch = self._fetch
        for r in rows:
            yield fetch(int(r))

    def take(self, index: Any) -> Column:
        """The view of items ``index`` (positions in this column, negative from the end), nothing read."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        n = len(self)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"index out of range for a column of {n} items")
        index = np.where(index < 0, index + n, index)
        return Column(self._fetch, self._size, index if self._rows is None else self._rows[index])

    def tolist(self) -> list[Any]:
        return list(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (Column, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # compares by items, like a list

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array(list(self), dtype=dtype)

    def __repr__(self) -> str:
        return f"Column({len(self)} items)"

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._fetch, self._size, self._rows)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._fetch, self._size, self._rows = state


def take(items: Sequence[Any], index: np.ndarray) -> Sequence[Any]:
    """Items ``index`` of one per-item sequence: a :class:`Column` gives a view, a list gives a list."""
    if isinstance(items, Column):
        return items.take(index)
    return [items[i] for i in index]


def default_names(prefix: str, size: int) -> Column:
    """``f"{prefix}{row}"`` for each row, computed when asked for (default groups and names)."""
    return Column(_Formatted(prefix), size)


class _Formatted:
    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, row: int) -> str:
        return f"{self.prefix}{row}"

    def __getstate__(self) -> str:
        return self.prefix

    def __setstate__(self, state: str) -> None:
        self.prefix = state


# --------------------------------------------------------------------------------------------------- cache
def _stat(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def file_key(kind: str, files: Sequence[Path], *extra: Any) -> tuple[str, list[list[Any]]]:
    """``(key, stats)``: a cache key for ``files`` read as ``kind``; a changed file (size or mtime) changes it."""
    stats = [_stat(Path(f)) for f in files]
    return _key(kind, stats, *extra), stats


def _key(kind: str, *parts: Any) -> str:
    blob = json.dumps([CACHE_VERSION, kind, *parts], default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def hub_key(kind: str, name: str, split: str, fingerprint: str) -> str:
    return _key(kind, name, split, fingerprint)


def cached_table(key: str, build: Callable[[], Iterator[Any]], sources: list[list[Any]] | None = None) -> MappedTable:
    """The table cached under ``key``, memory-mapped; built first from ``build()`` (record batches) if missing.

    The file is written beside its final name and renamed once complete, so a kill never leaves half a table
    that a later run would read. ``sources`` (``[path, size, mtime_ns]`` each) are recorded so that entries whose
    files changed or disappeared are removed when the next entry is written. When the cache folder cannot be
    written the table is built in memory instead (same content, not memory-mapped) and a warning says why.
    """
    import pyarrow as pa

    folder = cache_dir()
    path = folder / f"{key}.arrow"
    if path.is_file():
        try:
            return _open(path)
        except (OSError, pa.ArrowException):
            with contextlib.suppress(OSError):
                path.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        sink = pa.OSFile(str(tmp), "wb")
    except OSError as e:
        log.warning("cannot write the data cache in %s (%s); holding the table in memory", folder, e)
        return MappedTable(pa.Table.from_batches(list(build())))
    writer = None
    try:
        with sink:
            for batch in build():
                if writer is None:
                    writer = pa.ipc.new_stream(sink, batch.schema)
                writer.write_batch(batch)
            if writer is None:
                raise ValueError("build() gave no record batch")
            writer.close()
        (folder / f"{key}.json").write_text(json.dumps({"sources": sources or []}))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    pa.default_memory_pool().release_unused()  # the conversion's buffers, kept by the allocator otherwise
    _prune(folder)
    return _open(path)


def parquet_error(path: str | Path, e: Exception) -> Exception:
    """The one-line ``DataError`` for a parquet file pyarrow cannot read."""
    from dfmm.errors import DataError

    return DataError(f"{path}: cannot read parquet ({' '.join(str(e).split())[:200]})")


def parquet_batches(path: str | Path, columns: list[str], rows: int) -> Iterator[Any]:
    """Record batches of ``columns``, ``rows`` at a time, read on this thread without pre-buffering: a conversion
    then holds about one batch, where threaded reads leave memory in per-thread allocator caches that grows with
    the file."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=rows, columns=columns, use_threads=False)


def _open(path: Path) -> MappedTable:
    table = MappedTable(path=path)
    table.table  # noqa: B018 - map it now: a damaged file fails here, where it can be rebuilt
    return table


def _prune(folder: Path) -> None:
    """Remove entries whose source files changed or disappeared, and temporary files a killed build left."""

    def stale(meta: dict[str, Any]) -> bool:
        sources = meta.get("sources", [])
        return any(not Path(p).is_file() or _stat(Path(p))[1:] != [size, mtime] for p, size, mtime in sources)

    prune_entries(folder, ".arrow", stale)


def prune_entries(folder: Path, suffix: str, stale: Callable[[dict[str, Any]], bool], keep: str = "") -> None:
    """Remove each cache entry of ``folder`` (``KEY.json`` beside ``KEY<suffix>``) whose JSON is unreadable or
    ``stale(json)``, except ``keep``; and temporary files older than a day (a killed build's)."""
    now = time.time()
    for side in folder.glob("*.json"):
        if side.stem == keep:
            continue
        try:
            gone = stale(json.loads(side.read_text()))
        except (OSError, ValueError, TypeError, AttributeError):
            gone = True
        if gone:
            for p in (side.with_suffix(suffix), side):
                with contextlib.suppress(OSError):
                    p.unlink()
    for tmp in folder.glob("*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                tmp.unlink()
