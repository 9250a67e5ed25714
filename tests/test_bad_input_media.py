"""Issue #25: odd but decodable photos and clips are scored, never a traceback.

Face detection (MTCNN) cannot search an image whose shorter side, at the 640 px detection scale, is under its
smallest face (32 px): thumbnails, panoramas, towers and tiny clips give "no face found" and the whole image is
scored, as for any faceless photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def vis(tiny_models):
    from dfmm.serving.inference import load_model

    return load_model(tiny_models["visual"])[0]


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    im = Image.fromarray(arr)
    (im.convert(mode) if mode else im).save(path)
    return path


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


PHOTOS = {  # name: (image, face_crop)
    "24x24-png-always": (lambda d: _png(d / "tiny.png", _noise(24, 24)), "always"),
    "16x16-always": (lambda d: _noise(16, 16, 1), "always"),
    "1x1-png-always": (lambda d: _png(d / "dot.png", _noise(1, 1, 2)), "always"),
    "31x200-always": (lambda d: _noise(31, 200, 3), "always"),
    "panorama-6000x200-auto": (lambda d: _noise(200, 6000, 4), "auto"),
    "tower-200x6000-auto": (lambda d: _noise(6000, 200, 5), "auto"),
    "panorama-png-auto": (lambda d: _png(d / "pano.png", _noise(200, 6000, 6)), "auto"),
    "single-colour-800-auto": (lambda d: np.full((800, 800, 3), 173, np.uint8), "auto"),
    "grayscale-png-always": (lambda d: _png(d / "grey.png", _noise(300, 400, 7), "L"), "always"),
    "rgba-png-auto": (lambda d: _png(d / "rgba.png", _noise(300, 300, 8), "RGBA"), "auto"),
    "grey-24px-png-always": (lambda d: _png(d / "grey24.png", _noise(24, 30, 9), "L"), "always"),
}


@pytest.mark.parametrize("name", list(PHOTOS))
def test_odd_photos_are_scored_whole_with_no_face(vis, tmp_path, name):
    from dfmm.serving.inference import classify_image

    make, face_crop = PHOTOS[name]
    image = make(tmp_path)
    r = classify_image(vis, image, face_crop=face_crop)
    assert r["face"] == {"cropped": False, "face_found": False, "reason": "no face found: whole image scored"}
    assert 0.0 <= r["probability_fake"] <= 1.0
    whole = classify_image(vis, image, face_crop="never")
    assert r["probability_fake"] == pytest.approx(whole["probability_fake"], abs=1e-6)


def test_odd_photos_with_gradcam_and_multimodal(vis):
    from dfmm.serving.inference import classify_image, classify_multimodal

    r = classify_image(vis, _noise(24, 24), return_gradcam=True, face_crop="always")
    assert r["face"]["face_found"] is False and r["gradcam"]["crop_box"] is None
    m = classify_multimodal(vis, image_path_or_pil=_noise(200, 6000), face_crop="auto")
    assert m["face"]["face_found"] is False and m["modalities"] == ["visual"]


def _clip(path: Path, h: int, w: int, n: int = 20, fps: int = 10) -> Path:
    import av

    rng = np.random.default_rng(h * w)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for _ in range(n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("h,w", [(16, 16), (24, 32), (64, 1920), (1920, 64)], ids=["16x16", "32x24", "wide", "tall"])
def test_tiny_and_thin_clips_give_no_face_not_a_traceback(vis, tmp_path, h, w):
    from dfmm.serving.inference import classify_video

    clip = _clip(tmp_path / f"c{h}x{w}.mp4", h, w)
    r = classify_video(vis, clip, num_frames=4)  # default settings: face crop on
    assert r["face_crop"] is True and r["no_face"] is True and r["frames_with_face"] == 0
    assert [f["face_found"] for f in r["frames"]] == [False] * 4
    assert np.isfinite(r["probability_fake"])
    every = classify_video(vis, clip, num_frames=4, all_faces=True)
    assert every["no_face"] is True
