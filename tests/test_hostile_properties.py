"""Property tests for hostile input (#25 item 9): random bytes, random-size images and random text files fed to the
loaders give a result or one ``DfmmError`` line, never a traceback of another kind (random YAML: see
``tests/test_bad_input_params.py``)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dfmm.data.images import load_image
from dfmm.data.text import load_text_file
from dfmm.errors import DfmmError

SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line(e: DfmmError) -> None:
    msg = str(e)
    assert msg and "\n" not in msg and len(msg) < 1000, msg


def _image_file_bytes(data: st.DataObject) -> bytes:
    """A real image file of some format and size, then maybe cut or with bytes flipped."""
    w, h = data.draw(st.integers(1, 64)), data.draw(st.integers(1, 64))
    mode, fmt = data.draw(
        st.sampled_from([("RGB", "PNG"), ("L", "JPEG"), ("RGBA", "PNG"), ("F", "TIFF"), ("P", "GIF")])
    )
    arr = np.random.default_rng(data.draw(st.integers(0, 99))).random((h, w))
    img = (
        Image.fromarray((arr * 255).astype(np.uint8)).convert(mode)
        if mode != "F"
        else Image.fromarray(arr.astype(np.float32), "F")
    )
    buf = io.BytesIO()
    img.save(buf, fmt)
    raw = bytearray(buf.getvalue())
    cut = data.draw(st.integers(0, len(raw)))
    if data.draw(st.booleans()):
        raw = raw[:cut]
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    return bytes(raw)


@SOME
@given(st.data())
def test_any_bytes_decode_to_an_rgb_image_or_one_error_line(data):
    raw = data.draw(st.binary(max_size=512))
    if data.draw(st.booleans()):
        raw = _image_file_bytes(data)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / data.draw(st.sampled_from(["x.png", "x.jpg", "x.tif", "x.gif", "x.webp"]))
        p.write_bytes(raw)
        for source in (p, raw):
            try:
                img = load_image(source)
            except DfmmError as e:
                _one_line(e)
            else:
                assert img.mode == "RGB" and img.width >= 1 and img.height >= 1


@SOME
@given(st.data())
def test_any_array_or_tensor_gives_an_rgb_image_or_one_error_line(data):
    import torch

    shape = data.draw(st.lists(st.integers(0, 9), min_size=0, max_size=4))
    dtype = data.draw(st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_, np.int8]))
    values = data.draw(st.sampled_from([0.0, 0.5, 1.0, 300.0, -5.0, np.nan, np.inf]))
    arr = np.full(shape, values if np.issubdtype(dtype, np.floating) else 1).astype(dtype)
    source = torch.from_numpy(arr) if data.draw(st.booleans()) and dtype != np.bool_ else arr
    try:
        img = load_image(source)
    except DfmmError as e:
        _one_line(e)
    else:
        assert img.mode == "RGB" and np.isfinite(np.asarray(img, dtype=float)).all()


_LINES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda text, label: json.dumps({"text": text, "label": label}), st.text(max_size=20), st.integers(-2, 3)),
    st.builds(
        lambda text, label: f"{text},{label}",
        st.text(alphabet="ab ,\"'\r\n\ufeff", max_size=20),
        st.sampled_from(["0", "1", "x", ""]),
    ),
)


@SOME
@given(st.lists(_LINES, max_size=6), st.sampled_from(["t.jsonl", "t.csv"]), st.booleans(), st.binary(max_size=6))
def test_any_text_file_loads_or_gives_one_error_line(lines, name, header, junk):
    body = ("text,label\n" if header and name.endswith(".csv") else "") + "\n".join(lines)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(body.encode("utf-8", "surrogatepass") + junk)
        try:
            texts = load_text_file(p)
        except DfmmError as e:
            _one_line(e)
        else:
            assert len(texts) >= 1 and set(texts.labels.tolist()) <= {0, 1}
            assert all(isinstance(t, str) and t.strip() for t in texts.iter_texts())


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 900), st.integers(1, 900), st.sampled_from(["auto", "always"]), st.integers(0, 255))
def test_any_image_size_classifies_or_says_no_face(tiny_models, w, h, face_crop, grey):
    """Face detection never raises on a decodable image of any size or shape (#25 item 1)."""
    from dfmm.serving.inference import classify_image, load_model

    model = _model(tiny_models["visual"], load_model)
    img = np.full((h, w, 3), grey, np.uint8)
    img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 255 - grey
    r = classify_image(model, img, face_crop=face_crop)
    assert r["label"] in ("real", "fake") and r["face"]["cropped"] is (r["face"].get("face_found") is True)


_MODELS: dict[str, object] = {}


def _model(path, load_model):
    if str(path) not in _MODELS:
        _MODELS[str(path)] = load_model(path)[0]
    return _MODELS[str(path)]
