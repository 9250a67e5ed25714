from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dfmm.data.batches import ImageDataset, collate_images
from dfmm.data.images import load_image, load_image_folder, load_image_hub, load_image_parquet, load_images
from dfmm.data.transforms import image_transform
from dfmm.errors import DataError, HubUnavailable

from .conftest import shared


def _jpeg(color, size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _folder(tmp_path, n=3, with_csv=True):
    for label in ("real", "fake"):
        (tmp_path / label).mkdir(parents=True)
        for i in range(n):
            (tmp_path / label / f"{i}.jpg").write_bytes(_jpeg((200, 10, 10) if label == "fake" else (10, 10, 200)))
    if with_csv:
        rows = ["file,label,pair_group"] + [f"{lab}/{i}.jpg,{lab},g{i}" for lab in ("real", "fake") for i in range(n)]
        (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_folder_labels_and_groups(tmp_path):
    s = load_image_folder(_folder(tmp_path))
    assert len(s) == 6 and s.counts() == {"real": 3, "fake": 3}
    by_name = dict(zip(s.names, zip(s.labels.tolist(), s.groups, strict=True), strict=True))
    assert by_name["real/1.jpg"] == (0, "g1") and by_name["fake/1.jpg"] == (1, "g1")


def test_folder_without_csv_gives_each_file_its_own_group(tmp_path):
    s = load_image_folder(_folder(tmp_path, with_csv=False))
    assert len(set(s.groups)) == 6


def test_missing_folder_and_empty_class(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        load_images(str(tmp_path / "nowhere"))
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    (tmp_path / "real" / "a.jpg").write_bytes(_jpeg((1, 2, 3)))
    with pytest.raises(DataError, match=r"no images under .*fake"):
        load_image_folder(tmp_path)


def _hemg_parquet(path, labels):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": _jpeg((i * 40, 0, 0)), "path": f"{i}.jpg"} for i in range(len(labels))], "label": labels},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["Fake", "Real"])}),
    )
    ds.to_parquet(str(path))
    return path


def test_parquet_with_hemg_schema_flips_labels(tmp_path):
    p = _hemg_parquet(tmp_path / "hemg.parquet", [0, 1, 1, 0])  # Hemg: 0 = Fake, 1 = Real
    s = load_image_parquet(p)
    assert s.labels.tolist() == [1, 0, 0, 1]  # internal: 0 = real, 1 = fake
    assert load_image(s.sources[1]).size == (32, 32)
    assert load_images(str(p)).labels.tolist() == [1, 0, 0, 1]


def test_unreachable_hub_is_one_line_with_offline_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailable) as e:
        load_image_hub("Hemg/deepfake-and-real-images")
    msg = str(e.value)
    assert "Hemg/deepfake-and-real-images" in msg and "params/sources/local.yaml" in msg and "\n" not in msg


# ---------------------------------------------------------------------------- bad images, one per kind
def _save(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make,expected_px",
    [
        (lambda: _save(Image.new("L", (8, 8), 128), "PNG"), (128, 128, 128)),
        (lambda: _save(Image.new("RGBA", (8, 8), (255, 0, 0, 255)), "PNG"), (255, 0, 0)),
        (lambda: _save(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG"), (0, 0, 0)),  # transparent -> black
        (lambda: _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), None),  # red in CMYK
        (lambda: _save(Image.fromarray(np.full((8, 8), 65535, np.uint16)), "PNG"), (255, 255, 255)),
        (lambda: _save(Image.fromarray(np.full((8, 8), 32768, np.uint16)), "PNG"), (127, 127, 127)),
    ],
    ids=["gray", "rgba", "rgba-transparent", "cmyk", "16bit-white", "16bit-mid"],
)
def test_modes_become_correct_rgb(make, expected_px):
    img = load_image(make())
    assert img.mode == "RGB" and img.size == (8, 8)
    px = img.getpixel((4, 4))
    if expected_px is None:
        assert px[0] > 200 and px[1] < 60 and px[2] < 60
    else:
        assert all(abs(a - b) <= 2 for a, b in zip(px, expected_px, strict=True))


def test_broken_files_raise_naming_the_file(tmp_path):
    good = _jpeg((1, 2, 3), (64, 64))
    cases = {
        "zero.jpg": b"",
        "corrupt.jpg": b"not an image at all" * 10,
        "truncated.jpg": good[: len(good) // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as e:
            load_image(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="is a directory"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path):
    big = Image.new("L", (9000, 9000))  # 81 Mpx > the 40 Mpx limit; PNG of zeros is small on disk
    p = tmp_path / "bomb.png"
    big.save(p)
    with pytest.raises(DataError, match="bomb.png"):
        load_image(p)


def test_training_dataset_skips_and_counts_unreadable(tmp_path):
    root = _folder(tmp_path, n=2, with_csv=False)
    (root / "fake" / "broken.jpg").write_bytes(b"garbage")
    s = load_image_folder(root)
    ds = ImageDataset(s, image_transform(32, (0.5,) * 3, (0.5,) * 3, "card"))
    batch = collate_images([ds[i] for i in range(len(ds))])
    assert batch["inputs"].shape == (4, 3, 32, 32)
    assert len(batch["skipped"]) == 1 and "broken.jpg" in batch["skipped"][0]
    assert batch["labels"].tolist().count(1.0) == 2


def test_transforms_normalise_as_the_backbone_expects():
    img = Image.new("RGB", (50, 40), (255, 0, 127))
    x = image_transform(224, (0.5,) * 3, (0.5,) * 3, "none")(img)
    assert x.shape == (3, 224, 224)
    assert x[0].mean().item() == pytest.approx(1.0, abs=1e-3) and x[1].mean().item() == pytest.approx(-1.0, abs=1e-3)
    for aug in ("card", "strong"):
        assert image_transform(224, (0.5,) * 3, (0.5,) * 3, aug)(img).shape == (3, 224, 224)


def test_flip_augmentation_only_mirrors():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    plain = image_transform(64, (0.5,) * 3, (0.5,) * 3, "none")(img)
    torch.manual_seed(0)
    outs = [image_transform(64, (0.5,) * 3, (0.5,) * 3, "flip")(img) for _ in range(16)]
    flipped = [torch.equal(o, plain.flip(-1)) for o in outs]
    assert all(f or torch.equal(o, plain) for f, o in zip(flipped, outs, strict=True))
    assert 0 < sum(flipped) < 16


@pytest.mark.shared_data
def test_real_dfdc_folder_reads_pairs():
    s = load_image_folder(shared("faces", "dfdc"))
    assert s.counts() == {"real": 8000, "fake": 8000}
    assert len(set(s.groups)) == 8000  # each real and its fake share a pair_group
    assert load_image(s.sources[0]).size == (224, 224)


def test_color_jitter_is_a_bounded_colour_change():
    from dfmm.data.transforms import ColorJitter

    torch.manual_seed(0)
    x = torch.rand(3, 16, 16)
    assert torch.allclose(ColorJitter(0, 0, 0, 0)(x.clone()), x, atol=1e-5)  # zero ranges: identity
    grey = torch.full((3, 8, 8), 0.4)
    out = ColorJitter(0, 0, 0.5, 0.5)(grey)  # hue and saturation move chroma only: grey stays grey
    assert torch.allclose(out, grey, atol=1e-5)
    ys = [ColorJitter(0.2, 0.2, 0.2, 0.05)(x.clone()) for _ in range(20)]
    assert all(y.shape == x.shape and y.min() >= 0 and y.max() <= 1 for y in ys)
    diffs = [float((y - x).abs().mean()) for y in ys]
    assert 0 < min(diffs) and max(diffs) < 0.25  # random, and a jitter, not a different image
    half = ColorJitter(0, 0, 0, 0.5)  # hue rotated by up to half a turn: red turns into cyan-ish at 180 degrees
    red = torch.zeros(3, 2, 2)
    red[0] = 0.8
    assert any(float(half(red)[0].mean()) < 0.6 for _ in range(20))
