"""Faces in the wild: find faces with MTCNN and crop them the way the training faces were cropped.

The visual branch learns on tight face crops; a whole video frame or photo squashed to 224 px shows it a small
face in a large scene, which it calls real. This module detects faces with MTCNN (Zhang et al., "Joint Face
Detection and Alignment using Multi-task Cascaded Convolutional Networks", 2016; the weights ship inside the
``facenet-pytorch`` wheel, so nothing is downloaded) and cuts a square around each face so that the face sits in
it as it sits in the training crops.

``CropGeometry`` describes that placement: the detector's face box width and height as fractions of the crop
side, and the box centre's offset from the crop centre (in crop sides). ``measure_geometry`` measures it by
running the same detector on a sample of training crops; the study stores it in the visual checkpoint's
metadata (``face_crop``) so that inference reproduces it. On the DFDC crops the box is wider and taller than the
crop itself (the crops are tight) and its centre sits above the crop's centre: the defaults below are those
medians (``measure_geometry`` on 100 real DFDC training crops), used only for checkpoints that carry none.

OpenCV's Haar cascade, the previous detector, is gone from OpenCV 5 (no ``CascadeClassifier``); there is no
fallback detector: where facenet-pytorch is missing, face cropping fails with one line that says how to install it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dfmm.errors import DataError

DETECT_SIDE = 640  # frames are scaled to this longest side for detection; boxes are mapped back
MIN_FACE = 32  # pixels at the detection scale (5% of 640)
MIN_SCORE = 0.90  # MTCNN's final-stage probability for a box to count as a face
STAGE_THRESHOLDS = [
    0.8,
    0.9,
    0.9,
]  # MTCNN stage thresholds: above its defaults (0.6, 0.7, 0.7), fewer candidate boxes reach the slow later stages


@dataclass(frozen=True)
class CropGeometry:
    """Where the detected face box sits inside a training crop (fractions of the crop side)."""

    face_width: float = 1.081
    face_height: float = 1.390
    center_x: float = 0.011  # box centre minus crop centre; + is right
    center_y: float = -0.133  # + is down: the DFDC box reaches above the crop (forehead)
    measured_on: int = 0  # training crops the medians came from (0: the defaults)
    source: str = "defaults (100 real DFDC crops)"

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> CropGeometry:
        if not meta:
            return cls()
        return cls(**{k: meta[k] for k in cls.__dataclass_fields__ if k in meta})

    def crop_box(self, face_box: Any) -> tuple[float, float, float, float]:
        """The square (x0, y0, x1, y1) that places ``face_box`` the way the training crops place their faces."""
        x0, y0, x1, y1 = (float(v) for v in face_box[:4])
        side = math.sqrt(((x1 - x0) / self.face_width) * ((y1 - y0) / self.face_height))
        cx = (x0 + x1) / 2 - self.center_x * side
        cy = (y0 + y1) / 2 - self.center_y * side
        return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


@dataclass
class Face:
    """One detected face: its box and crop square in the original image's pixels, its score and the crop."""

    box: list[float]
    crop_box: list[int]
    score: float
    image: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], "crop_box": self.crop_box, "score": round(self.score, 4)}


def cut_square(image: np.ndarray, square: tuple[float, float, float, float]) -> tuple[np.ndarray, list[int]]:
    """Cut a square from an HxWx3 image; parts outside the image are filled by replicating its edge pixels."""
    h, w = image.shape[:2]
    side = max(1, int(round(min(square[2] - square[0], square[3] - square[1]))))
    x0, y0 = int(round(square[0])), int(round(square[1]))
    x1, y1 = x0 + side, y0 + side
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    crop = image[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return np.ascontiguousarray(crop), [x0, y0, x1, y1]


class FaceDetector:
    """MTCNN over batches of same-size frames (one detector call per batch), largest face first."""

    def __init__(self, device: str = "cpu", min_score: float = MIN_SCORE, detect_side: int = DETECT_SIDE) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise DataError(
                "face cropping needs facenet-pytorch (MTCNN weights ship in its wheel): "
                "pip install --no-deps facenet-pytorch==2.6.0"
            ) from None
        self.mtcnn = MTCNN(
            keep_all=True, select_largest=True, min_face_size=MIN_FACE, thresholds=STAGE_THRESHOLDS, device=device
        )
        self.min_score = min_score
        self.detect_side = detect_side

    NETS = ("pnet", "rnet", "onet")  # MTCNN's three stages: proposals (any size), refinement (24 px), output (48 px)

    def use_nets(self, nets: dict[str, Any]) -> None:
        """Run MTCNN's stages with other callables of the same inputs and outputs (``dfmm.serving.runtimes``: the
        nets as exported graphs under OpenVINO or ONNX Runtime; the same boxes within 1e-3 px)."""
        for name, net in nets.items():
            if name not in self.NETS:
                raise ValueError(f"unknown MTCNN stage {name!r}")
            setattr(self.mtcnn, name, net)

    def searchable(self, height: int, width: int) -> bool:
        """Whether MTCNN can search an image of this size (at the detection scale) at all.

        facenet-pytorch's ``detect_face`` builds its scale pyramid from ``m = 12 / min_face_size`` and
        ``minl = min(h, w) * m``, adding scales while ``minl >= 12``; an image whose shorter side is under
        ``min_face_size`` gets no scale and fails in ``torch.cat`` of the empty list. The same arithmetic here.
        """
        return min(height, width) * (12.0 / self.mtcnn.min_face_size) >= 12

    def detect(self, images: list[np.ndarray]) -> list[list[tuple[list[float], float]]]:
        """For each image, its faces as (box x0 y0 x1 y1 in the image's pixels, score), largest first.

        Images are RGB uint8 (grayscale and RGBA arrays are converted). Never raises on an image: one too small
        to search at the detection scale (a thumbnail, a 6000 x 200 panorama) has no face, and one on which the
        detector fails anyway counts as faceless (a batch that fails is detected again one image at a time).
        """
        import cv2

        out: list[list[tuple[list[float], float]]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(np.shape(im), []).append(i)
        for shape, idx in by_shape.items():
            if len(shape) < 2 or min(shape[:2]) < 1:
                continue
            h, w = shape[:2]
            scale = min(1.0, self.detect_side / max(h, w))
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if not self.searchable(size[1], size[0]):  # no face of min_face_size fits: none can be found
                continue
            small = [_rgb(images[i]) for i in idx]
            if scale != 1.0:
                small = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in small]
            for i, found in zip(idx, self._detect_batch(small), strict=True):
                out[i] = [([v / scale for v in box], q) for box, q in found]
        return out

    def landmarks(self, images: list[np.ndarray], batch: int = 32) -> list[np.ndarray | None]:
        """MTCNN's five landmarks (left eye, right eye, nose, mouth corners; (5, 2) pixels) of the largest face of
        each same-size RGB image above ``min_score``, or None where none is found (for self-blend masks)."""
        out: list[np.ndarray | None] = []
        for start in range(0, len(images), batch):
            chunk = [_rgb(im) for im in images[start : start + batch]]
            try:
                boxes, probs, points = self.mtcnn.detect(np.stack(chunk), landmarks=True)
            except (ValueError, RuntimeError, IndexError):  # facenet-pytorch's empty torch.cat and kin
                out += [self.landmarks([im])[0] if len(chunk) > 1 else None for im in chunk]
                continue
            for b, p, pts in zip(boxes, probs, points, strict=True):
                if b is None or pts is None:
                    out.append(None)
                    continue
                good = [k for k, q in enumerate(p) if q is not None and q >= self.min_score]
                area = [(b[k][2] - b[k][0]) * (b[k][3] - b[k][1]) for k in good]
                out.append(np.asarray(pts[good[int(np.argmax(area))]], dtype=float) if good else None)
        return out

    def _detect_batch(self, images: list[np.ndarray]) -> list[list[tuple[list[float], float]]]:
        """MTCNN on same-size images; if the batch fails, image by image, a failing image counting as faceless."""
        try:
            boxes, probs = self.mtcnn.detect(np.stack(images))
        except (ValueError, RuntimeError, IndexError):  # facenet-pytorch's empty torch.cat and kin
            if len(images) == 1:
                return [[]]
            return [self._detect_batch([im])[0] for im in images]
        out = []
        for b, p in zip(boxes, probs, strict=True):
            keep = []
            if b is not None:
                keep = [
                    ([float(v) for v in box[:4]], float(q))
                    for box, q in zip(b, p, strict=True)
                    if q is not None and q >= self.min_score
                ]
            keep.sort(key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]), reverse=True)
            out.append(keep)
        return out


def _rgb(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 array from a grayscale, grey+alpha, RGB or RGBA array (alpha dropped)."""
    im = np.asarray(image)
    if im.dtype != np.uint8:
        im = np.clip(im, 0, 255).astype(np.uint8)
    if im.ndim == 2:
        im = im[:, :, None]
    if im.shape[2] in (1, 2):
        im = np.repeat(im[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(im[:, :, :3])


def crop_faces(
    detector: FaceDetector, images: list[np.ndarray], geometry: CropGeometry, all_faces: bool = False
) -> list[list[Face]]:
    """Every image's faces (the largest only unless ``all_faces``), each cut as ``geometry`` says."""
    found = detector.detect(images)
    out = []
    for im, faces in zip(images, found, strict=True):
        faces = faces if all_faces else faces[:1]
        im = _rgb(im) if faces else im
        crops = []
        for box, score in faces:
            crop, square = cut_square(im, geometry.crop_box(box))
            crops.append(Face(box, square, score, crop))
        out.append(crops)
    return out


def measure_geometry(detector: FaceDetector, images: list[np.ndarray], source: str = "") -> CropGeometry:
    """Medians, over training crops where a face is found, of the largest face box's size and offset.

    Returns the defaults (``measured_on`` 0) unless a face is found in at least half of them (and 10): every
    training crop holds a face, so fewer detections are false ones (the synthetic demo faces give 2 in 100).
    """
    rows = []
    for im, faces in zip(images, detector.detect(images), strict=True):
        if not faces:
            continue
        (x0, y0, x1, y1), _ = faces[0]
        h, w = im.shape[:2]
        rows.append(((x1 - x0) / w, (y1 - y0) / h, (x0 + x1) / 2 / w - 0.5, (y0 + y1) / 2 / h - 0.5))
    if len(rows) < max(10, len(images) / 2):
        return CropGeometry(source=f"defaults (a face in only {len(rows)} of {len(images)} training crops)")
    med = np.median(np.asarray(rows), axis=0)
    return CropGeometry(*(round(float(v), 4) for v in med), measured_on=len(rows), source=source or "training crops")


_GEOMETRY_CACHE: dict[tuple[str, ...], CropGeometry] = {}


def training_crop_geometry(images: Any, n: int = 100, seed: int = 0) -> CropGeometry:
    """``measure_geometry`` on ``n`` training images drawn with ``seed`` (cached: one measurement per study).

    Without facenet-pytorch the defaults are returned, marked as not measured: training never fails on it.
    """
    from dfmm.data.images import load_image

    rng = np.random.default_rng(seed)
    pick = sorted(rng.permutation(len(images))[: min(n, len(images))].tolist())
    key = (images.origin, *(images.names[i] for i in pick))
    if key not in _GEOMETRY_CACHE:
        try:
            detector = FaceDetector()
        except DataError:
            return CropGeometry(source="defaults (facenet-pytorch not installed: not measured)")
        arrays = []
        for i in pick:
            try:
                arrays.append(np.asarray(load_image(images.sources[i], images.names[i])))
            except DataError:
                continue
        _GEOMETRY_CACHE[key] = measure_geometry(detector, arrays, f"{len(arrays)} training crops of {images.origin}")
    return _GEOMETRY_CACHE[key]
