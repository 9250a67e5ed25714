"""The decoded-image cache (``visual.cache: decoded``, ``dfmm.data.decoded``): the same batches and the same
training as the JPEG files for a fixed seed, a new cache whenever the items or the size change, unreadable images
skipped and counted, and a killed build never read. Every test keeps its cache under its own ``tmp_path``."""

from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dfmm.config import Config, load_config
from dfmm.data import decoded as dec
from dfmm.data.batches import ImageDataset
from dfmm.data.images import load_image, load_image_folder, load_image_parquet
from dfmm.errors import ConfigError

from .conftest import ROOT, tiny_overrides

TIMING = {"epoch_seconds", "train_samples_per_s"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DFMM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(dec, "_OPEN", {})  # nothing opened by another test
    return tmp_path / "cache" / "decoded"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("decoded")
    runs = ["study.name=tiny", f"study.runs_dir={tmp / 'runs'}", f"study.reports_dir={tmp / 'reports'}"]
    return runs + tiny_overrides(32) + ["visual.recipes.improved.augment=flip"]


def _cfg(overrides, *extra):
    return load_config([ROOT / "params" / "demo.yaml"], [*overrides, *extra])


def _jpeg(rng, size=(40, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _folder(root, n=3, seed=0):
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / label / f"{i}.jpg").write_bytes(_jpeg(rng))
    return root


def _expected(images, size):
    return np.stack(
        [np.asarray(dec._resize(size)(load_image(s, n))) for s, n in zip(images.sources, images.names, strict=True)]
    )


def _batches(loader, seed):
    torch.manual_seed(seed)
    return [b for _ in range(2) for b in loader]  # two epochs: the sampler's and the flips' draws go on


@pytest.mark.parametrize("augment", ["none", "flip", "card"])
def test_loader_batches_from_the_cache_equal_those_from_the_files(tiny, augment):
    from dfmm.data import image_splits
    from dfmm.training.loaders import image_loader

    cfg = _cfg(tiny)
    train = image_splits(cfg)["train"]
    kw = {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "seed": 3, "train": True, "augment": augment}
    files = image_loader(train, cfg, **kw, batch_size=8, cache=False)
    cached = image_loader(train, cfg, **kw, batch_size=8, cache=True)
    assert isinstance(files.dataset, ImageDataset) and isinstance(cached.dataset, dec.DecodedImageDataset)
    assert cached.dataset.groups == files.dataset.groups and len(cached.dataset) == len(files.dataset)
    a, b = _batches(files, 0), _batches(cached, 0)
    assert len(a) == len(b) > 2
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["inputs"], y["inputs"]) and torch.equal(x["labels"], y["labels"])
        assert torch.equal(x["index"], y["index"]) and x["skipped"] == y["skipped"] == []


def test_training_on_the_cache_gives_the_same_history_and_metrics(tiny):
    from dfmm.data import image_splits
    from dfmm.training.experiments import train_visual

    runs = {}
    for cache in ("none", "decoded"):
        cfg = _cfg(tiny, f"visual.cache={cache}")
        runs[cache] = train_visual(cfg, "improved", image_splits(cfg), save=False)
    strip = [[{k: v for k, v in h.items() if k not in TIMING} for h in r.history] for r in runs.values()]
    assert strip[0] == strip[1] and strip[0]
    files, cached = runs["none"], runs["decoded"]
    assert json.dumps(files.val, sort_keys=True) == json.dumps(cached.val, sort_keys=True)
    assert json.dumps(files.test, sort_keys=True) == json.dumps(cached.test, sort_keys=True)
    assert files.best_epoch == cached.best_epoch
    splits, size = image_splits(_cfg(tiny)), _cfg(tiny).visual.image_size
    for split in ("train", "val", "test"):  # each split's cache was built (once: the subset reads val's)
        assert (dec.decoded_dir() / f"{dec.decoded_key(splits[split], size)}.json").is_file()
    assert len(list(dec.decoded_dir().glob("*.json"))) == 3


def test_a_changed_image_or_another_size_is_another_cache(tmp_path, own_cache):
    images = load_image_folder(_folder(tmp_path / "faces"))
    first = dec.build_decoded(images, 32, workers=1, progress=False)
    np.testing.assert_array_equal(first.pixels, _expected(images, 32))
    assert dec.build_decoded(images, 32) is first  # memoised in this process
    dec._OPEN.clear()
    again = dec.build_decoded(load_image_folder(tmp_path / "faces"), 32, workers=1)
    assert again.key == first.key and again.path == first.path  # opened from disk, not built again

    other_size = dec.build_decoded(images, 24, workers=1)
    assert other_size.key != first.key and other_size.pixels.shape == (6, 24, 24, 3)

    target = tmp_path / "faces" / "fake" / "1.jpg"
    target.write_bytes(_jpeg(np.random.default_rng(99)))  # new content (and a new size and mtime)
    changed = load_image_folder(tmp_path / "faces")
    rebuilt = dec.build_decoded(changed, 32, workers=1)
    assert rebuilt.key != first.key
    np.testing.assert_array_equal(rebuilt.pixels, _expected(changed, 32))
    row = changed.sources.index(str(target))
    assert not np.array_equal(rebuilt.pixels[row], first.pixels[row])
    # the old caches of these files are removed once a later build sees their files changed
    assert not (own_cache / f"{first.key}.json").exists() and not (own_cache / f"{first.key}.u8").exists()
    assert not (own_cache / f"{other_size.key}.json").exists()

    # same bytes, same path, only a new mtime: still another key (the file may have changed)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert dec.decoded_key(load_image_folder(tmp_path / "faces"), 32) != rebuilt.key


def test_an_unreadable_image_is_skipped_and_counted(tmp_path, own_cache):
    root = _folder(tmp_path / "faces", n=10)
    (root / "fake" / "bad.jpg").write_bytes(b"this is not a jpeg at all")
    images = load_image_folder(root)
    built = dec.build_decoded(images, 32, workers=2, progress=False)  # pool processes, chunks of 8 rows
    bad = images.names.index("fake/bad.jpg")
    assert built.unreadable.sum() == 1 and built.unreadable[bad]
    assert "fake/bad.jpg" in built.errors[bad] and not built.pixels[bad].any()
    meta = json.loads((own_cache / f"{built.key}.json").read_text())
    assert meta["unreadable_count"] == 1 and meta["count"] == len(images)
    good = ~built.unreadable
    np.testing.assert_array_equal(built.pixels[good], _expected(images.subset(np.flatnonzero(good)), 32))

    from dfmm.training.loaders import image_loader

    cfg = Config()
    cfg.visual.image_size, cfg.visual.batch_size = 32, 8
    kw = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "seed": 0}
    files, cached = (list(image_loader(images, cfg, **kw, cache=c)) for c in (False, True))
    skipped = [m for b in cached for m in b["skipped"]]
    assert skipped == [m for b in files for m in b["skipped"]] == [built.errors[bad]]
    for x, y in zip(files, cached, strict=True):
        assert torch.equal(x["inputs"], y["inputs"]) and torch.equal(x["index"], y["index"])


def test_a_killed_build_is_built_again(tmp_path, own_cache):
    images = load_image_folder(_folder(tmp_path / "faces"))
    key = dec.decoded_key(images, 32)
    own_cache.mkdir(parents=True)
    (own_cache / f"{key}.12345.u8.tmp").write_bytes(b"\x07" * 100)  # killed while decoding
    (own_cache / f"{key}.u8").write_bytes(b"\x07" * (6 * 32 * 32 * 3))  # killed after the rename, before the JSON
    built = dec.build_decoded(images, 32, workers=1)
    assert (own_cache / f"{key}.json").is_file()
    np.testing.assert_array_equal(built.pixels, _expected(images, 32))
    # a worker process gets the file's path, never the pixels, and maps the same pages
    copy = pickle.loads(pickle.dumps(built))
    assert copy._pixels is None and len(pickle.dumps(built)) < 1000
    np.testing.assert_array_equal(copy.pixels, built.pixels)


def test_arrow_sources_are_keyed_by_their_table_and_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    images = [{"bytes": _jpeg(rng), "path": f"{i}.jpg"} for i in range(12)]
    pq.write_table(pa.table({"image": images, "label": [i % 2 for i in range(12)]}), tmp_path / "faces.parquet")
    s = load_image_parquet(tmp_path / "faces.parquet")
    built = dec.build_decoded(s, 32, workers=2, progress=False)
    np.testing.assert_array_equal(built.pixels, _expected(s, 32))
    assert dec.decoded_key(load_image_parquet(tmp_path / "faces.parquet"), 32) == built.key
    part = s.subset(np.arange(6))
    assert dec.decoded_key(part, 32) != built.key
    as_bytes = type(s)([x["bytes"] for x in images], s.labels, list(s.groups), list(s.names))
    np.testing.assert_array_equal(dec.build_decoded(as_bytes, 32, workers=1).pixels, built.pixels)


def test_strong_training_reads_the_files_and_its_evaluation_the_cache(tmp_path):
    from dfmm.training.loaders import image_loader

    images = load_image_folder(_folder(tmp_path / "faces"))
    cfg = Config()
    cfg.visual.image_size, cfg.visual.cache = 32, "decoded"
    kw = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "seed": 0}
    assert isinstance(image_loader(images, cfg, **kw, train=True, augment="strong").dataset, ImageDataset)
    assert isinstance(image_loader(images, cfg, **kw).dataset, dec.DecodedImageDataset)
    assert isinstance(image_loader(images, cfg, **kw, cache=False).dataset, ImageDataset)
    card = image_loader(images, cfg, **kw, train=True, augment="card")  # on the rows as PIL images
    assert card.dataset.as_pil and next(iter(card))["inputs"].shape == (6, 3, 32, 32)


def test_an_unknown_cache_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"visual\.cache = 'bogus'; expected one of \['decoded', 'none'\]") as e:
        load_config([ROOT / "params" / "demo.yaml"], ["visual.cache=bogus"])
    assert "\n" not in str(e.value)
