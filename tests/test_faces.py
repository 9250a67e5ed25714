"""Faces in the wild: crop geometry arithmetic, edge padding, MTCNN on real DFDC crops, geometry measurement."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dfmm.data.faces import CropGeometry, FaceDetector, crop_faces, cut_square, measure_geometry, training_crop_geometry
from dfmm.data.images import ImageSet
from dfmm.errors import DataError

from .conftest import ROOT, shared


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _face_box_in(geometry: CropGeometry, x0: float, y0: float, side: float) -> tuple[float, float, float, float]:
    """The detector box that sits in the square (x0, y0, side) as ``geometry`` says (its definition, written out)."""
    w, h = geometry.face_width * side, geometry.face_height * side
    cx = x0 + side / 2 + geometry.center_x * side
    cy = y0 + side / 2 + geometry.center_y * side
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


# ------------------------------------------------------------------------------------------ CropGeometry
@pytest.mark.parametrize("x0,y0,side", [(0, 0, 64), (10, 20, 64), (-16, 8, 128), (300, -40, 256)])
def test_crop_box_gives_back_the_square_exactly(x0, y0, side):
    g = CropGeometry(face_width=1.25, face_height=1.5, center_x=0.125, center_y=-0.25)  # all exact in binary
    box = _face_box_in(g, x0, y0, side)
    assert g.crop_box(box) == (x0, y0, x0 + side, y0 + side)
    assert g.crop_box(np.array([*box, 0.99])) == (x0, y0, x0 + side, y0 + side)  # MTCNN rows: extra columns ignored


def test_crop_box_round_trip_with_the_default_geometry():
    g = CropGeometry()
    rng = np.random.default_rng(0)
    for x0, y0, side in rng.uniform((-50, -50, 20), (500, 500, 900), size=(20, 3)):
        assert g.crop_box(_face_box_in(g, x0, y0, side)) == pytest.approx((x0, y0, x0 + side, y0 + side), abs=1e-9)
    # the DFDC box reaches above the crop (center_y < 0): the square lies lower than the box centre
    sq = g.crop_box((100, 100, 200, 240))
    assert (sq[1] + sq[3]) / 2 > 170 and sq[2] - sq[0] == pytest.approx(sq[3] - sq[1])


def test_geometry_meta_round_trip_and_defaults():
    g = CropGeometry(1.1, 1.3, 0.02, -0.1, measured_on=7, source="7 training crops of x")
    assert CropGeometry.from_meta(g.to_meta()) == g
    assert CropGeometry.from_meta(json.loads(json.dumps(g.to_meta()))) == g  # checkpoint metadata is JSON
    assert CropGeometry.from_meta(None) == CropGeometry() == CropGeometry.from_meta({})
    assert CropGeometry().measured_on == 0 and CropGeometry().face_width == pytest.approx(1.081)
    partial = CropGeometry.from_meta({"face_width": 1.2, "unknown_key": 3})
    assert partial == CropGeometry(face_width=1.2)


# ------------------------------------------------------------------------------------------- cut_square
def _edge_expected(image, x0, y0, x1, y1):
    """Edge replication by definition: pixel (r, c) of the cut is the image pixel at the clamped coordinates."""
    h, w = image.shape[:2]
    rows = np.clip(np.arange(y0, y1), 0, h - 1)
    cols = np.clip(np.arange(x0, x1), 0, w - 1)
    return image[np.ix_(rows, cols)]


@pytest.fixture
def ramp():
    h, w = 20, 30
    return (np.arange(h * w * 3, dtype=np.int32).reshape(h, w, 3)).copy()


def test_cut_square_inside_is_a_plain_slice(ramp):
    crop, square = cut_square(ramp, (5, 4, 15, 14))
    assert square == [5, 4, 15, 14] and crop.shape == (10, 10, 3)
    assert np.array_equal(crop, ramp[4:14, 5:15]) and crop.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(
    "square",
    [(-3, -2, 7, 8), (25, 15, 35, 25), (-5, -5, 35, 35), (40, 30, 50, 40), (-12, 6, -2, 16)],
    ids=["top-left", "bottom-right", "larger-than-image", "wholly-outside", "left-outside"],
)
def test_cut_square_pads_with_edge_pixels(ramp, square):
    crop, got = cut_square(ramp, square)
    x0, y0, x1, y1 = square
    assert got == [x0, y0, x1, y1] and crop.shape == (y1 - y0, x1 - x0, 3)
    assert np.array_equal(crop, _edge_expected(ramp, x0, y0, x1, y1))


def test_cut_square_rounds_and_never_returns_empty(ramp):
    crop, got = cut_square(ramp, (1.6, 2.4, 11.6, 12.4))
    assert got == [2, 2, 12, 12] and np.array_equal(crop, ramp[2:12, 2:12])
    crop, got = cut_square(ramp, (5, 5, 5, 5))
    assert got == [5, 5, 6, 6] and crop.shape == (1, 1, 3) and np.array_equal(crop[0, 0], ramp[5, 5])


# ------------------------------------------------------------------------------------------ the detector
@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_mtcnn_comes_from_the_pinned_facenet_wheel(detector):
    pins = (ROOT / "requirements-nodeps.txt").read_text()
    assert f"facenet-pytorch=={importlib.metadata.version('facenet-pytorch')}" in pins
    import facenet_pytorch

    weights = Path(facenet_pytorch.__file__).parent / "data"
    assert {"pnet.pt", "rnet.pt", "onet.pt"} <= {p.name for p in weights.iterdir()}  # shipped, never downloaded
    assert detector.mtcnn.keep_all and detector.min_score == 0.90


def test_no_face_in_blank_or_tiny_images(detector):
    grey = np.full((300, 400, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    tiny = np.zeros((8, 8, 3), np.uint8)  # smaller than MTCNN's smallest face: skipped, not an error
    assert detector.detect([grey, noise, tiny]) == [[], [], []]
    assert crop_faces(detector, [grey], CropGeometry()) == [[]]
    assert detector.detect([]) == []


# issue #25: facenet-pytorch's scale pyramid is empty for an image whose shorter side (after scaling to 640 px)
# is under MTCNN's min_face_size, and detect_face then fails in torch.cat of an empty list
ODD_IMAGES = {
    "24x24": np.full((24, 24, 3), 200, np.uint8),
    "31x31": np.full((31, 31, 3), 200, np.uint8),
    "16x16-noise": np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8),
    "1x1": np.zeros((1, 1, 3), np.uint8),
    "12x12": np.zeros((12, 12, 3), np.uint8),
    "panorama-6000x200": np.full((200, 6000, 3), 90, np.uint8),  # shorter side 21 px at 640
    "tower-200x6000": np.full((6000, 200, 3), 90, np.uint8),
    "32x6000": np.full((32, 6000, 3), 90, np.uint8),  # 3 px at 640
    "single-colour-800": np.full((800, 800, 3), 37, np.uint8),
    "grey-2d": np.full((300, 300), 128, np.uint8),
    "grey-1ch": np.full((300, 300, 1), 128, np.uint8),
    "rgba": np.full((300, 300, 4), 128, np.uint8),
    "grey-alpha-20px": np.full((20, 20, 2), 128, np.uint8),
    "noise-32x32": np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8),
}


@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_detector_never_raises_on_odd_images(detector, name):
    im = ODD_IMAGES[name]
    assert detector.detect([im]) == [[]]
    assert crop_faces(detector, [im], CropGeometry()) == [[]]
    assert crop_faces(detector, [im], CropGeometry(), all_faces=True) == [[]]


def test_all_odd_images_in_one_call(detector):
    images = list(ODD_IMAGES.values())
    assert detector.detect(images) == [[] for _ in images]
    assert detector.detect([ODD_IMAGES["24x24"]] * 3 + [ODD_IMAGES["single-colour-800"]] * 2) == [[]] * 5


def test_skip_condition_is_facenets_own(detector):
    """``searchable`` is exactly the size at which facenet-pytorch's pyramid gets its first scale."""
    m = detector.mtcnn
    assert m.min_face_size == 32
    for side in (12, 20, 31):
        assert not detector.searchable(side, 500) and not detector.searchable(500, side)
        with pytest.raises(ValueError, match="torch.cat"):  # what the skip avoids (facenet-pytorch 2.6.0)
            m.detect(np.full((1, side, 500, 3), 128, np.uint8))
    for side in (32, 33, 47):
        assert detector.searchable(side, side) and detector.searchable(side, 5000)
        m.detect(np.random.default_rng(side).integers(0, 256, (1, side, side + 7, 3), dtype=np.uint8))  # no error
    other = SimpleNamespace(mtcnn=SimpleNamespace(min_face_size=20))  # follows the detector's min_face_size
    assert not FaceDetector.searchable(other, 19, 100) and FaceDetector.searchable(other, 20, 100)


class _Box:
    """A stand-in for MTCNN.detect: a batch of more than one image fails (as facenet can), and so does any image
    whose top-left pixel is 0; other images get one face box (in the scaled image's pixels)."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(len(batch))
        if len(batch) > 1 or batch[0][0, 0, 0] == 0:
            raise RuntimeError("stage 2 got no boxes")
        h, w = batch[0].shape[:2]
        return np.array([np.array([[1.0, 2.0, w - 1.0, h - 2.0]])], dtype=object), np.array([[0.99]], dtype=object)


def test_failing_batch_is_detected_image_by_image(monkeypatch):
    d = FaceDetector()
    fake = _Box()
    monkeypatch.setattr(d.mtcnn, "detect", fake)
    good, bad = np.full((100, 80, 3), 50, np.uint8), np.zeros((100, 80, 3), np.uint8)
    big = np.full((1280, 960, 3), 50, np.uint8)  # detected at 640 x 480: boxes mapped back x2
    out = d.detect([good, bad, good, big])
    assert fake.batches == [3, 1, 1, 1, 1]  # the 100x80 batch failed and was retried one by one; big alone
    assert out[1] == [] and out[0] == out[2] == [([1.0, 2.0, 79.0, 98.0], 0.99)]
    assert out[3] == [([2.0, 4.0, 958.0, 1276.0], 0.99)]
    faces = crop_faces(d, [good, bad], CropGeometry())
    assert len(faces[0]) == 1 and faces[1] == []


def test_grey_and_rgba_images_are_detected_as_rgb(monkeypatch):
    d = FaceDetector()
    seen = []

    def record(batch):
        seen.append((batch.shape, batch.dtype))
        return np.array([None] * len(batch), dtype=object), np.array([[None]] * len(batch), dtype=object)

    monkeypatch.setattr(d.mtcnn, "detect", record)
    d.detect([np.full((50, 60), 9, np.uint8), np.full((50, 60, 4), 9, np.uint8), np.full((50, 60, 3), 9.0)])
    assert sorted(seen) == [((1, 50, 60, 3), np.uint8), ((1, 50, 60, 3), np.uint8), ((1, 50, 60, 3), np.uint8)]
    crop, _ = cut_square(np.arange(16, dtype=np.uint8).reshape(4, 4), (-1, -1, 3, 3))  # 2-D images pad too
    assert crop.shape == (4, 4) and crop[0, 0] == 0 and crop[1, 1] == 0 and crop[3, 3] == 10


def test_missing_facenet_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails
    with pytest.raises(DataError, match="pip install --no-deps facenet-pytorch"):
        FaceDetector()
    # training never fails on it: the defaults come back, marked as not measured
    images = _grey_imageset(tmp_path, 3)
    g = training_crop_geometry(images, n=3)
    assert g.measured_on == 0 and "not installed" in g.source
    assert (g.face_width, g.face_height, g.center_x, g.center_y) == (1.081, 1.390, 0.011, -0.133)


def _grey_imageset(root: Path, n: int) -> ImageSet:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"blank_{i}.png"
        Image.fromarray(np.full((96, 96, 3), 60 + 20 * i, np.uint8)).save(p)
        paths.append(str(p))
    return ImageSet(paths, np.zeros(n, dtype=np.int64), [p for p in paths], [Path(p).name for p in paths], str(root))


def test_training_crop_geometry_without_faces_gives_the_defaults(tmp_path, monkeypatch):
    images = _grey_imageset(tmp_path / "blank", 4)
    g = training_crop_geometry(images, n=4, seed=0)
    assert g.measured_on == 0
    assert (g.face_width, g.face_height, g.center_x, g.center_y) == (1.081, 1.390, 0.011, -0.133)

    # measured once per image sample: a second call does not build a detector again
    class Boom:
        def __init__(self, *a, **k):
            raise AssertionError("detector built again")

    monkeypatch.setattr("dfmm.data.faces.FaceDetector", Boom)
    assert training_crop_geometry(images, n=4, seed=0) is g


# ------------------------------------------------------------------------------------------- real faces
def _dfdc_crops(n: int) -> list[np.ndarray]:
    folder = shared("faces", "dfdc", "real")
    files = sorted(folder.glob("*.jpg"))[:n]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


@pytest.mark.shared_data
@pytest.mark.slow
def test_mtcnn_finds_the_face_in_a_real_dfdc_crop(detector):
    crop = _dfdc_crops(1)[0]
    (faces,) = detector.detect([crop])
    assert len(faces) >= 1
    (x0, y0, x1, y1), score = faces[0]
    assert score >= 0.90
    h, w = crop.shape[:2]
    assert iou((x0, y0, x1, y1), (0, 0, w, h)) > 0.5  # the crop is tight: the face fills it
    # boxes of mixed-size batches come back in input order
    grey = np.full((300, 300, 3), 128, np.uint8)
    out = detector.detect([grey, crop, np.full((200, 100, 3), 90, np.uint8)])
    assert out[0] == [] and out[2] == [] and out[1] and out[1][0][0] == pytest.approx(faces[0][0], abs=1e-3)


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("canvas,scale,at", [((480, 640), 1, (100, 300)), ((1200, 1600), 2, (300, 900))],
                         ids=["640px-canvas", "1600px-canvas-detected-at-640"])  # fmt: skip
def test_crop_faces_finds_a_pasted_face(detector, canvas, scale, at):
    for face in _dfdc_crops(2):
        side = face.shape[0] * scale
        frame = np.full((*canvas, 3), 128, np.uint8)
        y, x = at
        frame[y : y + side, x : x + side] = np.asarray(Image.fromarray(face).resize((side, side)))
        (found,) = crop_faces(detector, [frame], CropGeometry())
        assert len(found) == 1
        f = found[0]
        pasted = (x, y, x + side, y + side)
        assert iou(f.crop_box, pasted) > 0.5, (f.crop_box, pasted)
        h, w = f.image.shape[:2]
        assert (h, w) == (f.crop_box[3] - f.crop_box[1], f.crop_box[2] - f.crop_box[0])
        assert np.array_equal(f.image, cut_square(frame, f.crop_box)[0])
        assert f.to_dict()["score"] >= 0.9


@pytest.mark.shared_data
@pytest.mark.slow
def test_all_faces_largest_first(detector):
    small, big = _dfdc_crops(2)
    frame = np.full((600, 900, 3), 128, np.uint8)
    frame[50:274, 50:274] = small
    frame[200:536, 450:786] = np.asarray(Image.fromarray(big).resize((336, 336)))
    (every,) = crop_faces(detector, [frame], CropGeometry(), all_faces=True)
    (largest,) = crop_faces(detector, [frame], CropGeometry())
    assert len(every) == 2 and len(largest) == 1
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in every]
    assert areas[0] > areas[1]
    assert iou(every[0].crop_box, (450, 200, 786, 536)) > 0.5 and iou(every[1].crop_box, (50, 50, 274, 274)) > 0.5
    assert largest[0].crop_box == every[0].crop_box


@pytest.mark.shared_data
@pytest.mark.slow
def test_measure_geometry_on_real_crops(detector):
    crops = _dfdc_crops(14)
    found = detector.detect(crops)
    with_face = sum(bool(f) for f in found)
    g = measure_geometry(detector, crops, source="DFDC crops")
    assert with_face >= 10 and g.measured_on == with_face and g.source == "DFDC crops"
    assert 0.8 < g.face_width < 1.4 and 1.0 < g.face_height < 1.8 and -0.3 < g.center_y < 0.0
    # the medians place a typical crop's own face box on a square that covers most of that crop
    ious = [iou(g.crop_box(f[0][0]), (0, 0, c.shape[1], c.shape[0])) for c, f in zip(crops, found, strict=True) if f]
    assert np.median(ious) > 0.65, ious


@pytest.mark.shared_data
@pytest.mark.slow
def test_measure_geometry_needs_faces_in_half_the_crops_and_round_trips(detector):
    crop = _dfdc_crops(1)[0]
    (faces,) = detector.detect([crop])
    h, w = crop.shape[:2]
    grey = np.full_like(crop, 128)
    # one crop ten times: the medians are that crop's own placement, which maps its box back onto the crop
    g = measure_geometry(detector, [crop] * 10 + [grey] * 10)
    assert g.measured_on == 10 and g.crop_box(faces[0][0]) == pytest.approx((0, 0, w, h), abs=0.1)
    # a face in fewer than half of them (or in fewer than 10): false detections, the defaults are kept
    for images, found in (([crop] * 10 + [grey] * 11, 10), ([crop] * 9, 9)):
        d = measure_geometry(detector, images)
        assert d.measured_on == 0 and d.face_width == CropGeometry().face_width
        assert f"{found} of {len(images)}" in d.source


@pytest.mark.shared_data
@pytest.mark.slow
def test_training_crop_geometry_measures_real_crops():
    folder = shared("faces", "dfdc", "real")
    files = [str(p) for p in sorted(folder.glob("*.jpg"))[:14]]
    images = ImageSet(files, np.zeros(14, dtype=np.int64), files, [Path(f).name for f in files], str(folder))
    g = training_crop_geometry(images, n=12, seed=1)
    assert 10 <= g.measured_on <= 12 and g.source == f"12 training crops of {folder}"
    assert 0.8 < g.face_width < 1.4


# =========================================================================== videos: faces, seeking, rotation
def write_clip(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4", pix_fmt: str = "yuv420p",
               rotation: float | None = None) -> Path:  # fmt: skip
    """Encode RGB (HxWx3) or grey (HxW, with pix_fmt gray) frames with PyAV, as tests/test_video.py's clips are."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="gray" if arr.ndim == 2 else "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _faceless_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Smooth colour ramps drifting sideways: no face anywhere."""
    yy, xx = np.mgrid[0:h, 0:w]
    return [
        np.stack([(xx * 255 // w + 7 * t) % 256, yy * 255 // h, np.full_like(xx, 90 + 3 * t)], -1).astype(np.uint8)
        for t in range(n)
    ]


@pytest.fixture
def vis(tiny_models):
    """A fresh tiny visual model per test (tests set its face detector)."""
    from dfmm.serving.inference import load_model

    return load_model(tiny_models["visual"])[0]


class FakeFaces:
    """A stand-in for FaceDetector: ``boxes[i]`` are the (box, score) pairs of image i (largest first)."""

    def __init__(self, boxes=None):
        self.boxes = boxes or {}
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        return [list(self.boxes.get(i, [])) for i in range(len(images))]


class NoDetector:
    def detect(self, images):
        raise AssertionError("the face detector must not run here")


def test_clip_without_faces_is_scored_on_whole_frames(vis, tmp_path):
    from dfmm.serving.inference import classify_video

    clip = write_clip(tmp_path / "ramps.mp4", _faceless_frames(20, 64, 96))
    r = classify_video(vis, clip, num_frames=4)
    assert r["face_crop"] is True and r["no_face"] is True and r["frames_with_face"] == 0
    assert [f["face_found"] for f in r["frames"]] == [False] * 4 and all(f["faces"] == [] for f in r["frames"])
    probs = np.array([f["probability_fake"] for f in r["frames"]], dtype=float)
    assert np.isfinite(probs).all() and np.isfinite(r["probability_fake"])
    assert r["probability_fake"] == pytest.approx(probs.mean(), abs=1e-9)
    # without face cropping: the same whole frames, the same scores, and no face fields at all
    plain = classify_video(vis, clip, num_frames=4, face_crop=False)
    assert plain["face_crop"] is False and plain["no_face"] is False and plain["frames_with_face"] is None
    assert all(set(f) == {"time_s", "probability_fake"} for f in plain["frames"])
    assert [f["probability_fake"] for f in plain["frames"]] == pytest.approx(probs.tolist(), abs=1e-5)
    assert plain["timings_ms"]["detect"] == 0.0


def test_video_faces_skip_faceless_frames_and_all_faces_takes_the_most_fake(vis, tmp_path):
    from dfmm.data.video import read_frames
    from dfmm.serving.inference import _visual_logits, classify_video

    clip = write_clip(tmp_path / "c.mp4", _faceless_frames(20, 64, 64))
    big, small = ([4.0, 6.0, 52.0, 60.0], 0.99), ([30.0, 30.0, 50.0, 52.0], 0.95)
    vis._faces = FakeFaces({0: [big, small], 2: [small], 3: [big]})  # frame 1: no face
    frames = read_frames(clip, 4, max_side=1280).frames
    g, rule = vis.crop_geometry(), vis.rule("visual")

    def p(frame, box):
        return float(rule.probability(_visual_logits(vis, [cut_square(frame, g.crop_box(box))[0]]))[0])

    want = [max(p(frames[0], big[0]), p(frames[0], small[0])), None, p(frames[2], small[0]), p(frames[3], big[0])]
    r = classify_video(vis, clip, num_frames=4, all_faces=True)
    got = [f["probability_fake"] for f in r["frames"]]
    assert got[1] is None and got[0] == pytest.approx(want[0], abs=1e-5)
    assert got[2:] == pytest.approx(want[2:], abs=1e-5)
    assert [f["face_found"] for f in r["frames"]] == [True, False, True, True] and r["frames_with_face"] == 3
    assert len(r["frames"][0]["faces"]) == 2 and r["no_face"] is False
    assert r["frames"][0]["faces"][0]["crop_box"] == cut_square(frames[0], g.crop_box(big[0]))[1]
    assert r["probability_fake"] == pytest.approx(np.mean([want[0], *want[2:]]), abs=1e-5)
    # the largest face only (default): frame 0 takes the big face's score
    largest = classify_video(vis, clip, num_frames=4)
    assert largest["frames"][0]["probability_fake"] == pytest.approx(p(frames[0], big[0]), abs=1e-5)
    assert len(largest["frames"][0]["faces"]) == 1
    # vote counts only the frames that were scored
    vote = classify_video(vis, clip, num_frames=4, aggregation="vote", all_faces=True)
    share = np.mean([rule.is_fake(q) for q in [want[0], *want[2:]]])
    assert vote["probability_fake"] == pytest.approx(share) and vote["label"] == ("fake" if share >= 0.5 else "real")


def test_cli_video_face_flags(tiny_models, tmp_path, capsys, monkeypatch):
    from dfmm.cli import main

    clip = write_clip(tmp_path / "c.mp4", _faceless_frames(20, 64, 64))
    box = ([4.0, 6.0, 52.0, 60.0], 0.99), ([30.0, 30.0, 50.0, 52.0], 0.95)
    monkeypatch.setattr("dfmm.serving.detector.FaceDetector", lambda: FakeFaces({i: list(box) for i in range(4)}))
    args = ["classify", "video", str(clip), "--model", str(tiny_models["visual"]), "--num-frames", "4"]
    runs = {}
    for name, extra in {"largest": [], "all": ["--all-faces"], "never": ["--face-crop", "never"]}.items():
        capsys.readouterr()
        assert main(args + extra) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    assert [len(f["faces"]) for f in runs["largest"]["frames"]] == [1] * 4
    assert [len(f["faces"]) for f in runs["all"]["frames"]] == [2] * 4
    assert runs["never"]["face_crop"] is False and all("faces" not in f for f in runs["never"]["frames"])


@pytest.fixture(scope="module")
def drifting_clip(tmp_path_factory):
    from dfmm.data.synthetic import write_videos

    root = write_videos(tmp_path_factory.mktemp("drift"), 1, 64, seed=3, frames=40, fps=10)
    return next(root.rglob("*.mp4"))


def test_seek_failure_falls_back_to_forward_decoding(drifting_clip, monkeypatch):
    import math

    from dfmm.data import video

    real = video._decode
    calls = []

    def seek_breaks(path, targets, info, seek_gap, max_side, on_frame=None):
        calls.append(seek_gap)
        if math.isfinite(seek_gap):
            raise DataError(f"{path}: cannot decode frames (avcodec_send_packet() failed after a seek)")
        return real(path, targets, info, seek_gap, max_side, on_frame)

    seeking = video.read_frames(drifting_clip, 8, seek_gap=0.2)  # 0.5 s between frames: a seek for every one
    assert seeking.info["read"] == "seek"
    monkeypatch.setattr(video, "_decode", seek_breaks)
    forward = video.read_frames(drifting_clip, 8, seek_gap=0.2)
    assert calls == [0.2, math.inf]
    assert len(forward.frames) == 8 and forward.info["read"].startswith("forward")
    assert forward.times == seeking.times
    for a, b in zip(forward.frames, seeking.frames, strict=True):
        assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    # both ways failing: the forward decode's error is reported (it is the one that says no frame decodes)
    monkeypatch.setattr(video, "_decode", lambda *a: (_ for _ in ()).throw(DataError(f"boom seek_gap={a[3]}")))
    with pytest.raises(DataError, match="boom seek_gap=inf"):
        video.read_frames(drifting_clip, 8)


def test_classify_video_drops_frames_streamed_before_seeking_failed(drifting_clip, tiny_models, monkeypatch):
    """Faces are found and scored while frames decode (read_frames' on_frame); when seeking fails after some frames
    were streamed, those are dropped and the frames read forward are scored: the same result as a clean read."""
    import math

    from dfmm.data import video
    from dfmm.serving.inference import classify_video, load_model

    model, _ = load_model(tiny_models["visual"])
    clean = classify_video(model, drifting_clip, num_frames=8, face_crop=False)
    real = video._decode

    def streams_then_breaks(path, targets, info, seek_gap, max_side, on_frame=None):
        if math.isfinite(seek_gap):
            for _ in range(5):  # frames that must not be scored
                on_frame(np.full((64, 64, 3), 255, np.uint8))
            raise DataError(f"{path}: cannot decode frames (a broken seek)")
        return real(path, targets, info, seek_gap, max_side, on_frame)

    monkeypatch.setattr(video, "_decode", streams_then_breaks)
    broken = classify_video(model, drifting_clip, num_frames=8, face_crop=False)
    assert broken["video"]["read"].startswith("forward") and len(broken["frames"]) == 8
    assert broken["probability_fake"] == pytest.approx(clean["probability_fake"], abs=1e-6)
    assert [f["probability_fake"] for f in broken["frames"]] == pytest.approx(
        [f["probability_fake"] for f in clean["frames"]], abs=1e-6
    )
    assert set(broken["timings_ms"]) == {"decode", "detect", "score", "total"}


def test_upright_rotates_as_rot90_says():
    from types import SimpleNamespace

    from dfmm.data.video import _upright

    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # 2 rows, 3 columns
    ccw = _upright(arr, SimpleNamespace(rotation=90))
    assert ccw.shape == (3, 2, 3) and np.array_equal(ccw, np.rot90(arr, k=1))
    assert np.array_equal(ccw[0, 0], arr[0, 2])  # counter-clockwise: the top-right pixel goes to the top-left
    cw = _upright(arr, SimpleNamespace(rotation=-90))
    assert cw.shape == (3, 2, 3) and np.array_equal(cw[0, 1], arr[0, 0])  # clockwise: top-left to top-right
    assert np.array_equal(_upright(arr, SimpleNamespace(rotation=180)), arr[::-1, ::-1])
    assert np.array_equal(_upright(arr, SimpleNamespace(rotation=270.0)), np.rot90(arr, k=3))
    for frame in (SimpleNamespace(rotation=0), SimpleNamespace(rotation=None), object()):
        assert _upright(arr, frame) is arr
    assert ccw.flags["C_CONTIGUOUS"]


def test_rotated_clip_is_read_upright(vis, tmp_path):
    from dfmm.data.video import read_frames
    from dfmm.serving.inference import classify_video

    frames = []
    for _ in range(20):
        a = np.full((32, 64, 3), 40, np.uint8)
        a[:12, :12] = 250  # a bright block in the stored top-left corner
        frames.append(a)
    clip = write_clip(tmp_path / "phone.mp4", frames, rotation=90)
    v = read_frames(clip, 4)
    f = v.frames[0]
    assert f.shape == (64, 32, 3)  # stored 64 wide x 32 tall, shown 32 wide x 64 tall
    assert f[-12:, :12].mean() > 200 and f[:12, :12].mean() < 80  # rot90 k=1: top-left goes to bottom-left
    assert read_frames(clip, 4, max_side=32).frames[0].shape == (32, 16, 3)  # scaled, then turned
    r = classify_video(vis, clip, num_frames=4, face_crop=False)
    assert 0.0 <= r["probability_fake"] <= 1.0 and len(r["frames"]) == 4


def test_grey_and_portrait_clips(vis, tmp_path):
    from dfmm.data.video import read_frames
    from dfmm.serving.inference import classify_video

    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    grey_yuv = write_clip(tmp_path / "grey.mp4", [np.stack([ramp] * 3, -1)] * 20)
    grey_plane = write_clip(tmp_path / "grey.mkv", [ramp] * 20, codec="ffv1", pix_fmt="gray")
    portrait = write_clip(tmp_path / "portrait.mp4", _faceless_frames(20, 96, 48))
    for clip, shape in ((grey_yuv, (48, 64, 3)), (grey_plane, (48, 64, 3)), (portrait, (96, 48, 3))):
        v = read_frames(clip, 4)
        assert len(v.frames) == 4 and v.frames[0].shape == shape and v.frames[0].dtype == np.uint8
        for face_crop in (True, False):
            r = classify_video(vis, clip, num_frames=4, face_crop=face_crop)
            assert np.isfinite(r["probability_fake"]) and len(r["frames"]) == 4
            assert r["no_face"] is face_crop  # nothing face-like in a ramp
    g = read_frames(grey_plane, 1).frames[0]
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])


# ============================================================================================ photos
def _photo(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_face_crop_never_and_auto_on_small_photos_skip_the_detector(vis):
    from dfmm.serving.inference import classify_image

    vis._faces = NoDetector()
    r = classify_image(vis, _photo(300, 300), face_crop="never")
    assert r["face"] == {"cropped": False, "reason": "face_crop=never"}
    # model input is 64 px: "auto" crops only photos whose shorter side is >= 128
    small = classify_image(vis, _photo(127, 400), face_crop="auto")
    assert small["face"]["cropped"] is False and "input near model size" in small["face"]["reason"]
    assert classify_image(vis, _photo(64, 64))["face"]["cropped"] is False  # the default is auto


def test_face_crop_auto_runs_the_detector_from_twice_the_input_size(vis):
    from dfmm.serving.inference import classify_image

    vis._faces = FakeFaces()
    r = classify_image(vis, _photo(128, 128), face_crop="auto")
    assert vis._faces.calls == 1 and r["face"]["cropped"] is False and r["face"]["face_found"] is False


def test_face_crop_always_on_a_blank_photo_scores_the_whole_image(vis):
    from dfmm.serving.inference import classify_image

    photo = _photo(200, 240, 150)
    r = classify_image(vis, photo, face_crop="always")  # the real MTCNN
    assert r["face"]["cropped"] is False and r["face"]["face_found"] is False
    assert r["face"]["reason"].startswith("no face found")
    whole = classify_image(vis, photo, face_crop="never")
    assert r["probability_fake"] == pytest.approx(whole["probability_fake"], abs=1e-6)


def test_face_crop_cuts_the_largest_face_with_the_checkpoint_geometry(vis):
    from dfmm.serving.inference import classify_image

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    big, small = ([150.0, 80.0, 260.0, 230.0], 0.99), ([20.0, 20.0, 60.0, 70.0], 0.97)
    vis._faces = FakeFaces({0: [big, small]})
    crop, square = cut_square(photo, vis.crop_geometry().crop_box(big[0]))
    r = classify_image(vis, photo, return_gradcam=True)  # auto: 300 >= 2 x 64
    f = r["face"]
    assert f["cropped"] is True and f["face_found"] is True and f["crop_box"] == square
    assert f["box"] == [150.0, 80.0, 260.0, 230.0] and f["score"] == 0.99
    assert r["gradcam"]["crop_box"] == square and r["gradcam"]["heatmap"].shape == (64, 64)
    alone = classify_image(vis, crop, face_crop="never")
    assert r["probability_fake"] == pytest.approx(alone["probability_fake"], abs=1e-5)
    always = classify_image(vis, photo, face_crop="always")
    assert always["face"]["crop_box"] == square


def test_unknown_face_crop_is_refused(vis, tiny_models, capsys):
    from dfmm.cli import main
    from dfmm.serving.inference import classify_image, classify_multimodal

    for call in (lambda: classify_image(vis, _photo(64, 64), face_crop="sometimes"),
                 lambda: classify_multimodal(vis, image_path_or_pil=_photo(64, 64), face_crop="yes")):  # fmt: skip
        with pytest.raises(DataError, match=r"unknown face_crop '\w+'; expected one of auto, always, never"):
            call()
    with pytest.raises(SystemExit) as e:
        main(["classify", "image", "x.png", "--model", str(tiny_models["visual"]), "--face-crop", "sometimes"])
    assert e.value.code == 2 and "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_dfmm_score_finds_the_faces_of_a_batch_of_photos_in_one_detector_call(tiny_models, tmp_path, monkeypatch):
    """Issue 27: a folder of photos goes through MTCNN a batch at a time (one call, one batch per image size), and
    each photo still gets its own face: the second one found none and is scored whole."""
    from PIL import Image

    from dfmm.serving.inference import load_model
    from dfmm.serving.score_files import score_to_csv

    model, _ = load_model(tiny_models["visual"])
    rng = np.random.default_rng(0)
    for i in range(6):
        (tmp_path / "photos").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (200, 160, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"p{i}.png")
    faces = FakeFaces({i: [([20.0, 30.0, 120.0, 150.0], 0.99)] for i in (0, 2, 3, 4, 5)})
    model._faces = faces
    out = tmp_path / "s.csv"
    s = score_to_csv(model, "images", str(tmp_path / "photos"), out, batch_size=6, face_crop="always", progress=False)
    assert s["scored"] == 6 and faces.calls == 1
    rows = sorted(csv.DictReader(open(out)), key=lambda r: r["item"])
    assert [r["face_found"] for r in rows] == ["True", "False", "True", "True", "True", "True"]
