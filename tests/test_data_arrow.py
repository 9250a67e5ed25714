"""Arrow-backed sources (#17 item 1): parquet, JSONL, CSV and Hub sources read per item from a memory-mapped
table, selecting exactly the items the list-based loaders selected; the converted-table cache; the array
versions of the group splits against the dict versions they replace; the one file check."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfmm.data import _cross, _splits
from dfmm.data import splits as splits_module
from dfmm.data.arrow import Column, MappedTable, cache_dir, take
from dfmm.data.images import ImageSet, load_image_parquet, load_images
from dfmm.data.splits import SPLITS, _split_by_group_dicts, _subset_by_group_dicts, split_by_group, subset_by_group
from dfmm.data.text import TextSet, load_text_file, load_texts
from dfmm.errors import DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DFMM_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------- same selection
def _write_sources(d: Path) -> dict[str, str]:
    """Three sources whose every quirk the old loaders handled: null images, images with bytes but no path,
    groups on some rows only, label words and numbers, a meta column on some rows, parquet row groups."""
    rng = np.random.default_rng(17)
    n = 3000
    images = []
    for i in range(n):
        if i % 97 == 0:
            images.append(None)  # a null image: kept, unreadable when decoded
        else:
            data = bytes(rng.integers(0, 256, 8, dtype=np.uint8))
            images.append({"bytes": data, "path": f"f{i}.jpg" if i % 5 else None})
    groups = [f"video{i // 3}" if i % 4 else None for i in range(n)]
    labels = rng.integers(0, 2, n).tolist()
    table = pa.table({"image": images, "label": labels, "pair_group": groups})
    pq.write_table(table, d / "hemg.parquet", row_group_size=500)
    rows = []
    for i in range(n):
        words = " ".join(map(str, rng.integers(0, 99, int(rng.integers(1, 9)))))
        row = {"text": f"text {i} " + words, "label": ["human", "ai", 0, 1][int(rng.integers(0, 4))]}
        if i % 3:
            row["group"] = f"g{i // 5}"
        if i % 7 == 0:
            row["domain"] = ["news", "essays"][i % 2]
        rows.append(row)
    (d / "texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sources = np.where(rng.integers(0, 2, n) == 1, "ai", "human").tolist()
    pile = [f"pile {i} " + "w" * int(rng.integers(1, 30)) for i in range(n)]
    table = pa.table({"id": list(range(n)), "source": sources, "text": pile})
    pq.write_table(table, d / "pile.parquet", row_group_size=700)
    return {"hemg": "hemg.parquet", "texts": "texts.jsonl", "pile": "pile.parquet"}  # relative: see below


def _selection_digests(paths: dict[str, str]) -> dict[str, str]:
    """sha256 (16 hex) of the names (images) or texts, labels and groups each split and cross set selects."""
    out = {}
    for key, path in paths.items():
        items = load_images(path) if key == "hemg" else load_texts(path)
        for seed, train, ev in ((0, 1000, 0), (0, 500, 1000), (2, 40, 30)):
            data = SimpleNamespace(val_fraction=0.15, test_fraction=0.15)
            parts = dict(_splits(items, SimpleNamespace(data=data, study=SimpleNamespace(seed=seed)), train, ev))
            parts["cross"] = _cross(items, 300, seed)
            for name, part in parts.items():
                values = list(part.names) if key == "hemg" else part.texts
                blob = json.dumps([values, part.labels.tolist(), list(part.groups)]).encode()
                out[f"{key}/{seed}/{train}/{ev}/{name}"] = hashlib.sha256(blob).hexdigest()[:16]
    return out


# Computed with the list-based loaders and dict-based splits this layer replaced (dfmm at 6575cbe) on the
# sources above, loaded by relative path (a row's default group, "{origin}#{row}", names the path as given).
BEFORE = {
    "hemg/0/1000/0/train": "28d156aea82210c1", "hemg/0/1000/0/val": "02f5b3b63b2a33ef",
    "hemg/0/1000/0/test": "455671c454f8c6c1", "hemg/0/1000/0/cross": "74d6e2e4205d8006",
    "hemg/0/500/1000/train": "d2cc42a25795256c", "hemg/0/500/1000/val": "02f5b3b63b2a33ef",
    "hemg/0/500/1000/test": "455671c454f8c6c1", "hemg/0/500/1000/cross": "74d6e2e4205d8006",
    "hemg/2/40/30/train": "02e88f7e2c84fc60", "hemg/2/40/30/val": "932d632b6eb57567",
    "hemg/2/40/30/test": "9a1f4190d7013ff1", "hemg/2/40/30/cross": "4096a95e6cd149f2",
    "texts/0/1000/0/train": "45f30148f75ef8da", "texts/0/1000/0/val": "4cd19d2756316df1",
    "texts/0/1000/0/test": "55386ca87ded9737", "texts/0/1000/0/cross": "f637c9eff9a5c784",
    "texts/0/500/1000/train": "0ebb95f39f7356d6", "texts/0/500/1000/val": "4cd19d2756316df1",
    "texts/0/500/1000/test": "55386ca87ded9737", "texts/0/500/1000/cross": "f637c9eff9a5c784",
    "texts/2/40/30/train": "cfb6fbe64591bcf9", "texts/2/40/30/val": "37a4e8b374788aa6",
    "texts/2/40/30/test": "415deaff43e6fd14", "texts/2/40/30/cross": "dce6d2e8a9fc4288",
    "pile/0/1000/0/train": "a12bece2c77a4e38", "pile/0/1000/0/val": "1c74414542da4728",
    "pile/0/1000/0/test": "b8c873f6f8e65c1c", "pile/0/1000/0/cross": "9bfbe50dbd9c5d77",
    "pile/0/500/1000/train": "b2e35ebbab28e7e4", "pile/0/500/1000/val": "1c74414542da4728",
    "pile/0/500/1000/test": "b8c873f6f8e65c1c", "pile/0/500/1000/cross": "9bfbe50dbd9c5d77",
    "pile/2/40/30/train": "87b6e32601539cbb", "pile/2/40/30/val": "9018702652622fbb",
    "pile/2/40/30/test": "55fabf159a086f24", "pile/2/40/30/cross": "9f590acdc3694564",
}  # fmt: skip


def test_splits_select_the_same_items_as_the_list_based_loaders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = _write_sources(tmp_path)
    assert _selection_digests(paths) == BEFORE
    assert _selection_digests(paths) == BEFORE  # again, from the cache


def test_every_item_reads_as_the_rows_did(tmp_path):
    paths = {k: tmp_path / v for k, v in _write_sources(tmp_path).items()}
    images = load_image_parquet(paths["hemg"])
    rows = pq.read_table(paths["hemg"]).to_pylist()
    origin = str(paths["hemg"])
    want_sources = [(r["image"] or {}).get("bytes") or (r["image"] or {}).get("path") for r in rows]
    want_names = [(r["image"] or {}).get("path") or f"row{i}" for i, r in enumerate(rows)]
    want_groups = [r["pair_group"] or f"{origin}#{i}" for i, r in enumerate(rows)]
    assert list(images.sources) == want_sources and images.names == want_names and images.groups == want_groups
    assert images.labels.tolist() == [1 - r["label"] for r in rows]

    texts = load_text_file(paths["texts"])
    lines = [json.loads(line) for line in paths["texts"].read_text().splitlines()]
    assert texts.texts == [r["text"] for r in lines]
    assert texts.groups == [r.get("group") or f"{paths['texts']}#{i}" for i, r in enumerate(lines)]
    assert texts.meta["domain"] == [r.get("domain") for r in lines]


def test_sets_hold_views_of_a_memory_mapped_table_not_lists(tmp_path):
    from dfmm.data.synthetic import write_hemg_parquet, write_pile_parquet

    hemg = write_hemg_parquet(tmp_path / "hemg.parquet", 2000, size=32)
    pile = write_pile_parquet(tmp_path / "pile.parquet", 20_000)
    for load, path in ((load_image_parquet, hemg), (load_text_file, pile)):
        load(path)  # convert once
        before = pa.total_allocated_bytes()
        items = load(path)
        assert pa.total_allocated_bytes() - before < 1_000_000  # the data stays in the mapped file
        per_item = items.sources if isinstance(items, ImageSet) else items._texts
        assert isinstance(per_item, Column) and isinstance(items.groups, Column)
        sub = items.subset(np.arange(len(items))[::7]).subset([0, -1])
        assert len(sub) == 2 and isinstance(take(per_item, np.array([1, 0])), Column)
        assert len(pickle.dumps(items)) < len(items) * 40  # a worker gets the file's path, not the data
        again = pickle.loads(pickle.dumps(sub))
        assert list(again.groups) == list(sub.groups) and np.array_equal(again.labels, sub.labels)


def test_a_column_behaves_like_the_list_it_replaces():
    values = [f"v{i}" for i in range(10)]
    col = Column(values.__getitem__, len(values))
    assert len(col) == 10 and col[3] == "v3" and col[-1] == "v9" and col[np.int64(2)] == "v2"
    assert col[2:5] == ["v2", "v3", "v4"] and col[::-3] == values[::-3]
    assert col == values and col != values[:-1] and list(col) == values
    sub = col.take(np.array([9, 0, -2]))
    assert sub == ["v9", "v0", "v8"] and sub.take([2, 0]) == ["v8", "v9"]
    assert np.array_equal(np.asarray(col), np.asarray(values))
    assert set(col) == set(values) and "v4" in col and col.index("v5") == 5
    with pytest.raises(IndexError):
        col[10]
    with pytest.raises(IndexError):
        col.take([10])
    assert take(values, np.array([1, 1])) == ["v1", "v1"]  # lists stay lists


def test_sets_made_from_lists_keep_them(tmp_path):
    texts = TextSet(["a", "b", "c"], np.array([0, 1, 0]), ["g", "g", "h"], {"domain": ["x", "y", "z"]})
    assert texts.texts == ["a", "b", "c"] and texts.text(1) == "b"
    sub = texts.subset([2, 0])
    assert sub.texts == ["c", "a"] and sub.groups == ["h", "g"] and sub.meta == {"domain": ["z", "x"]}
    images = ImageSet(["p0", "p1"], np.array([0, 1]), ["g0", "g1"], ["n0", "n1"], "o").subset([1])
    assert images.sources == ["p1"] and images.names == ["n1"] and images.labels.tolist() == [1]


# ---------------------------------------------------------------------------------------------- the cache
def test_conversion_is_cached_and_redone_when_the_file_changes(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "one", "label": 0}\n{"text": "two", "label": 1}\n')
    assert load_text_file(p).texts == ["one", "two"]
    (first,) = cache_dir().glob("*.arrow")
    mtime = first.stat().st_mtime_ns
    assert load_text_file(p).texts == ["one", "two"] and first.stat().st_mtime_ns == mtime  # reused
    p.write_text('{"text": "three", "label": 1}\n')
    assert load_text_file(p).texts == ["three"]
    assert not first.exists() and len(list(cache_dir().glob("*.arrow"))) == 1  # the stale entry is gone


def test_a_bad_row_leaves_no_cache_entry(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(f'{{"text": "t{i}", "label": 0}}\n' for i in range(5000)) + '{"text": "x", "label": 7}\n')
    with pytest.raises(DataError, match="t.jsonl:5001: label 7"):
        load_text_file(p)
    assert not list(cache_dir().glob("*.arrow")) and not list(cache_dir().glob("*.tmp"))


def test_an_unwritable_cache_folder_falls_back_to_memory(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("DFMM_CACHE_DIR", str(blocker))
    p = tmp_path / "t.csv"
    p.write_text("text,label\nhello,0\nbye,1\n")
    assert load_texts(str(p)).texts == ["hello", "bye"]
    assert "holding the table in memory" in caplog.text


def test_a_damaged_cache_file_is_rebuilt(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"text": "one", "label": 0}\n')
    load_text_file(p)
    (entry,) = cache_dir().glob("*.arrow")
    entry.write_bytes(b"\x00" * 10)
    assert load_text_file(p).texts == ["one"]


# ------------------------------------------------------------------------------------------ bad parquet
def _hemg_table(n: int, **extra) -> pa.Table:
    return pa.table(
        {"image": [{"bytes": b"x", "path": f"{i}.png"} for i in range(n)], "label": [0, 1] * (n // 2), **extra}
    )


def test_shards_are_read_in_order_and_a_foreign_shard_is_named(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(_hemg_table(4), shards / "a.parquet")
    pq.write_table(_hemg_table(2), shards / "b.parquet")
    s = load_images(str(shards))
    assert len(s) == 6 and s.names == ["0.png", "1.png", "2.png", "3.png", "0.png", "1.png"]
    assert s.groups[5] == f"{shards}#5"
    pq.write_table(pa.table({"img": [b"x"], "label": [0]}), shards / "c.parquet")
    with pytest.raises(DataError, match=r"c\.parquet: expected columns 'image' and 'label'"):
        load_images(str(shards))
    pq.write_table(_hemg_table(2).set_column(1, "label", pa.array(["0", "1"])), shards / "c.parquet")
    with pytest.raises(DataError, match=r"c\.parquet: columns .*'label': 'string'.* differ from those of a\.parquet"):
        load_images(str(shards))
    (shards / "c.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"c\.parquet: cannot read parquet"):
        load_images(str(shards))


def test_a_corrupt_text_parquet_is_one_line(tmp_path):
    p = tmp_path / "pile.parquet"
    p.write_bytes(b"garbage")
    with pytest.raises(DataError, match="pile.parquet: cannot read parquet"):
        load_text_file(p)


# ----------------------------------------------------------------------------- the Hub path, offline
@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """``datasets.load_dataset(name)`` answered from a local parquet file with the Hub dataset's schema, through
    the real ``datasets`` builder and its memory-mapped Arrow cache."""
    import datasets

    files: dict[str, Path] = {}
    real = datasets.load_dataset

    def load_dataset(name, split="train", **kw):
        return real("parquet", data_files={"train": str(files[name])}, split=split, cache_dir=str(tmp_path / "hf"))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return files


def test_hub_images_read_the_datasets_cache_by_row(tmp_path, local_hub):
    from dfmm.data.images import load_image_hub
    from dfmm.data.synthetic import write_hemg_parquet

    local_hub["Hemg/deepfake-and-real-images"] = write_hemg_parquet(tmp_path / "hemg.parquet", 300, size=16)
    hub = load_images("hub:Hemg/deepfake-and-real-images")
    local = load_image_parquet(tmp_path / "hemg.parquet")
    assert hub.origin == "hub:Hemg/deepfake-and-real-images" and len(hub) == 300
    assert list(hub.sources) == list(local.sources) and hub.names == local.names
    assert np.array_equal(hub.labels, local.labels) and hub.groups[7] == "hub:Hemg/deepfake-and-real-images#7"
    table = hub.sources._fetch.table
    assert isinstance(table, MappedTable) and table.hub is not None  # the datasets cache, memory-mapped
    assert len(pickle.dumps(hub)) < 100_000
    assert load_image_hub("Hemg/deepfake-and-real-images").names == hub.names


def test_hub_texts_are_checked_once_and_cached(tmp_path, local_hub):
    from dfmm.data.synthetic import write_pile_parquet

    local_hub["artem9k/ai-text-detection-pile"] = write_pile_parquet(tmp_path / "pile.parquet", 500)
    hub = load_texts("hub:artem9k/ai-text-detection-pile")
    local = load_text_file(tmp_path / "pile.parquet")
    assert hub.texts == local.texts and np.array_equal(hub.labels, local.labels)
    assert hub.groups[3] == "hub:artem9k/ai-text-detection-pile#3"
    assert len(list(cache_dir().glob("*.arrow"))) == 2  # the Hub split and the local file
    assert load_texts("hub:artem9k/ai-text-detection-pile").texts == hub.texts


# ------------------------------------------------------------------- splits: arrays against the dicts
groups_st = st.lists(st.text(max_size=3), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(groups_st, st.data(), st.floats(0, 0.5), st.floats(0, 0.5), st.integers(-5, 5), st.booleans())
def test_array_splits_equal_the_dict_splits(groups, data, val, test, seed, collide):
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(groups), max_size=len(groups))))
    limit = data.draw(st.integers(-1, len(groups) + 1))
    balanced = data.draw(st.booleans())
    rank = splits_module._rank
    with pytest.MonkeyPatch.context() as m:
        if collide:  # two groups share a rank: the array versions must notice and give the same answer
            m.setattr(splits_module, "_rank", lambda s, k: rank(s, k) % 3)
        a = split_by_group(labels, groups, val, test, seed)
        b = _split_by_group_dicts(labels, groups, val, test, seed)
        assert all(np.array_equal(a[n], b[n]) and a[n].dtype == b[n].dtype for n in SPLITS)
        for index in (np.arange(len(groups)), a.train, np.arange(len(groups))[::-2]):
            x = subset_by_group(index, labels, groups, limit, seed, balanced)
            y = _subset_by_group_dicts(index, labels, groups, limit, seed, balanced)
            assert np.array_equal(x, y) and x.dtype == y.dtype


def test_splits_take_a_column_of_groups(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text(
        "".join(json.dumps({"text": f"t{i}", "label": i % 2, "group": f"g{i // 2}"}) + "\n" for i in range(60))
    )
    s = load_text_file(p)
    assert isinstance(s.groups, Column)
    a, b = split_by_group(s.labels, s.groups, 0.2, 0.2, 1), split_by_group(s.labels, list(s.groups), 0.2, 0.2, 1)
    assert all(np.array_equal(a[n], b[n]) for n in SPLITS)


# ----------------------------------------------------------------------------------------- file checks
def test_one_file_check_for_images_and_videos(tmp_path):
    from dfmm.data.filecheck import check_file

    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = [
        (tmp_path / "none.jpg", "image", "none.jpg: no such file"),
        (tmp_path, "image", "is a directory, expected an image file"),
        (tmp_path / "empty.mp4", "video", "empty.mp4: empty video file (0 bytes)"),
        (tmp_path / "none.mp4", "video", "none.mp4: no such video file"),
        (tmp_path, "video", "is a directory, expected a video file"),
    ]
    for path, kind, message in cases:
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_file(path, kind=kind)
