"""Video frames: N frames spread uniformly over a clip, seeking instead of decoding every frame.

Frame ``k`` of ``N`` is taken at time ``(k + 0.5) / N * duration``. When the next wanted frame lies more than
``seek_gap`` seconds ahead, the decoder seeks to the keyframe before it (PyAV/FFmpeg) rather than decoding
the frames in between; a clip whose seeks fail is decoded forward instead. Face crops live in ``dfmm.data.faces``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.data.filecheck import check_file
from dfmm.errors import DataError

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


@dataclass
class VideoFrames:
    frames: list[np.ndarray]  # RGB uint8, HxWx3
    times: list[float]  # seconds
    info: dict[str, Any]


def _open(path: str | Path) -> Any:
    import av

    p = check_file(path, kind="video")
    try:
        container = av.open(str(p))
    except Exception as e:  # noqa: BLE001 - av raises several error types for bad containers
        raise DataError(f"{p}: not a readable video ({' '.join(str(e).split())[:120]})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{p}: has no video stream")
    return container


def video_info(path: str | Path) -> dict[str, Any]:
    """Metadata from the container header: frames, fps, duration, size, codec."""
    container = _open(path)
    try:
        s = container.streams.video[0]
        fps = float(s.average_rate or s.guessed_rate or 0) or 0.0
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        frames = int(s.frames) if s.frames else int(round(duration * fps))
        return {
            "file": str(path),
            "frames": frames,
            "fps": round(fps, 3),
            "duration_s": round(duration, 3),
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "codec": s.codec_context.name,
        }
    finally:
        container.close()


def read_frames(path: str | Path, num_frames: int, seek_gap: float = 1.0, max_side: int = 0) -> VideoFrames:
    """``num_frames`` RGB frames spread uniformly over the clip, upright (the stream's rotation applied).

    ``max_side`` > 0 scales frames down (aspect kept) in the same FFmpeg pass that converts them to RGB, which is
    much cheaper than converting a full 1080p frame and resizing it afterwards. When seeking fails (some H.264
    files shared online end in ``avcodec_send_packet()`` errors after a seek although they decode fine from the
    start) or yields too few frames, the clip is read again by decoding forward from the first frame
    (``info["read"]`` says which way was used).
    """
    if num_frames < 1:
        raise DataError(f"num_frames must be at least 1, got {num_frames}")
    info = video_info(path)
    if info["frames"] and info["frames"] < num_frames:
        raise DataError(
            f"{path}: has {info['frames']} frames, fewer than num_frames={num_frames} — ask for fewer frames"
        )
    duration = info["duration_s"]
    if duration <= 0:
        raise DataError(f"{path}: duration unknown or zero; cannot spread {num_frames} frames over it")
    targets = [(k + 0.5) / num_frames * duration for k in range(num_frames)]
    try:
        frames, times = _decode(path, targets, info, seek_gap, max_side)
        info["read"] = "seek"
    except DataError as seek_error:
        try:
            frames, times = _decode(path, targets, info, math.inf, max_side)
        except DataError:
            raise seek_error from None
        info["read"] = "forward (seeking failed)"
    return VideoFrames(frames, times, info)


def _decode(
    path: str | Path, targets: list[float], info: dict[str, Any], seek_gap: float, max_side: int
) -> tuple[list[np.ndarray], list[float]]:
    """Frames at ``targets`` (seconds from the stream start): seek when the next target is more than ``seek_gap``
    ahead, otherwise decode forward (``seek_gap=inf``: never seek)."""
    num_frames = len(targets)
    container = _open(path)
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 1000)
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        half_frame = 0.5 / max(info["fps"], 1.0)
        k = 0
        position = -1.0
        while k < num_frames:
            target = targets[k] + start
            if target - position > seek_gap:
                container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                position = float(frame.pts * tb)
                if position + half_frame >= target:
                    arr = _upright(
                        frame.to_ndarray(format="rgb24", **_scaled(frame.width, frame.height, max_side)), frame
                    )
                    # one decoded frame can serve several targets when the clip has few frames
                    while k < num_frames and position + half_frame >= targets[k] + start:
                        frames.append(arr)
                        times.append(round(position - start, 4))
                        k += 1
                    break
            else:
                break  # the stream ended
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg decode errors
        raise DataError(f"{path}: cannot decode frames ({' '.join(str(e).split())[:120]})") from None
    finally:
        container.close()
    if len(frames) < num_frames:
        raise DataError(f"{path}: could decode only {len(frames)} of {num_frames} frames (corrupt or truncated clip)")
    return frames, times


def _upright(arr: np.ndarray, frame: Any) -> np.ndarray:
    """Apply the display rotation a phone stores beside the pixels (FFmpeg's counter-clockwise angle)."""
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(arr, k=turns)) if turns else arr


def _scaled(width: int, height: int, max_side: int) -> dict[str, int]:
    if max_side <= 0 or max(width, height) <= max_side:
        return {}
    f = max_side / max(width, height)
    return {"width": max(2, round(width * f)), "height": max(2, round(height * f))}


def list_videos(root: str | Path) -> list[tuple[Path, int | None]]:
    """Clips under ``root``: ``real/`` and ``fake/`` give labels; other clips are unlabelled (None)."""
    root = Path(root)
    if root.is_file():
        return [(root, None)]
    if not root.is_dir():
        raise DataError(f"video folder not found: {root}")
    out: list[tuple[Path, int | None]] = []
    labelled = False
    for label, sub in ((0, "real"), (1, "fake")):
        d = root / sub
        if d.is_dir():
            labelled = True
            out += [(p, label) for p in sorted(d.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
    if not labelled:
        out = [(p, None) for p in sorted(root.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
    if not out:
        raise DataError(f"no videos under {root} (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return out
