"""Video frames: N frames spread uniformly over a clip, seeking instead of decoding every frame.

Frame ``k`` of ``N`` is taken at time ``(k + 0.5) / N * duration``. When the next wanted frame lies more than
``seek_gap`` seconds ahead, the decoder seeks to the keyframe before it (PyAV/FFmpeg) rather than decoding
the frames in between; a clip whose seeks fail is decoded forward instead. A clip short enough to be read forward
(no target more than ``seek_gap`` after the one before) skips the non-reference frames (most B-frames) that no
target needs: FFmpeg's ``skip_frame`` per packet, the same pixels for the frames taken. Face crops live in
``dfmm.data.faces``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
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
    return _probe(path)[0]


def _probe(path: str | Path) -> tuple[dict[str, Any], float]:
    """``video_info`` and the duration unrounded (frame times are spread over it)."""
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
        }, duration
    finally:
        container.close()


def labelled_clips(source: str | Path) -> list[tuple[Path, int]]:
    """The labelled clips under ``source`` (``real/`` and ``fake/``), or one ``DataError``."""
    clips = [(p, lab) for p, lab in list_videos(source) if lab is not None]
    if not clips:
        raise DataError(f"{source}: no labelled clips (expected real/ and fake/ folders)")
    return clips


def read_frames(
    path: str | Path,
    num_frames: int,
    seek_gap: float = 1.0,
    max_side: int = 0,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> VideoFrames:
    """``num_frames`` RGB frames spread uniformly over the clip, upright (the stream's rotation applied).

    ``max_side`` > 0 scales frames down (aspect kept) in the same FFmpeg pass that converts them to RGB, which is
    much cheaper than converting a full 1080p frame and resizing it afterwards. Each wanted time gets the decoded
    frame nearest to it (one frame serves several times when the clip has fewer frames than asked for). When
    seeking fails with any error (some H.264 files shared online end in ``avcodec_send_packet()`` errors after a
    seek although they decode fine from the start), decodes a frame FFmpeg flags corrupt (a keyframe that still
    refers to frames before it: a green picture after the seek in two of the shared FF++ clips) or yields too few
    frames, the clip is read again by decoding
    forward from the first frame; a clip whose frames end before its header says (cut or mislabelled files) has
    the frames spread over the part that decodes. Only a clip of which no frame decodes is reported unreadable.
    ``info["read"]`` says which way was used.

    ``on_frame`` is called with each frame of the first (seeking) pass as soon as it is decoded, in order, so that a
    caller can find faces in the first frames while the next ones decode; when ``info["read"]`` is not ``seek``,
    the frames returned are not those it was given and it should use the returned ones.
    """
    if num_frames < 1:
        raise DataError(f"num_frames must be at least 1, got {num_frames}")
    info, duration = _probe(path)
    if info["frames"] and info["frames"] < num_frames:
        raise DataError(
            f"{path}: has {info['frames']} frames, fewer than num_frames={num_frames} — ask for fewer frames"
        )
    duration = duration if duration > 0 else _packet_duration(path)
    if duration <= 0:
        raise DataError(f"{path}: duration unknown or zero; cannot spread {num_frames} frames over it")
    targets = _spread(num_frames, duration)
    try:
        frames, times, _ = _decode(path, targets, info, seek_gap, max_side, on_frame)
        info["read"] = "seek"
        return VideoFrames(frames, times, info)
    except DataError as e:
        why = str(e).removeprefix(f"{path}: ")
    frames, times, end = _decode(path, targets, info, math.inf, max_side)
    info["read"] = f"forward (seeking failed: {why})"
    if end is not None:  # the frames end before the header's duration: spread the times over what decodes
        frames, times, _ = _decode(path, _spread(num_frames, end), info, math.inf, max_side)
        info["read"] = f"forward (frames end at {end:.3f} s, before the header's {duration:.3f} s)"
    return VideoFrames(frames, times, info)


def _spread(num_frames: int, duration: float) -> list[float]:
    return [(k + 0.5) / num_frames * duration for k in range(num_frames)]


def _packet_duration(path: str | Path) -> float:
    """The stream's length from its packets' timestamps (no decoding), for headers that give none; 0 if unknown."""
    container = _open(path)
    first = last = None
    try:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 1000)
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            end = packet.pts + (packet.duration or 0)
            last = end if last is None else max(last, end)
    except Exception:  # noqa: BLE001 - what was read so far is the answer
        pass
    finally:
        container.close()
    return float((last - first) * tb) if first is not None and last is not None else 0.0


def _decode(
    path: str | Path,
    targets: list[float],
    info: dict[str, Any],
    seek_gap: float,
    max_side: int,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> tuple[list[np.ndarray], list[float], float | None]:
    """The frames nearest to ``targets`` (seconds from the stream start) and their times.

    Seeks when the next target is more than ``seek_gap`` ahead, otherwise decodes forward. Seeking
    (finite ``seek_gap``) raises a DataError on any decode error and when the stream ends before the last target.
    Decoding forward (``seek_gap=inf``, never seeks) stops at the first error as if the stream ended there, gives
    targets past the end the last frame, and returns as third value where the frames ended (seconds from the
    start, one frame past the last one) when targets lay past it (else None); it raises only when no frame decodes.
    """
    forward = math.isinf(seek_gap)
    num_frames = len(targets)
    container = _open(path)
    frames: list[np.ndarray] = []
    times: list[float] = []
    overrun = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 1000)
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        frame_time = 1.0 / info["fps"] if info["fps"] > 0 else 0.04
        cache: tuple[float, np.ndarray] | None = None

        def take(position: float, frame: Any) -> None:
            nonlocal cache
            if cache is None or cache[0] != position:
                rgb = frame.to_ndarray(format="rgb24", **_scaled(frame.width, frame.height, max_side))
                cache = (position, _upright(rgb, frame))
            frames.append(cache[1])
            times.append(round(position - start, 4))
            if on_frame is not None:
                on_frame(cache[1])

        # One frame generator per seek: starting a new one after the demuxer reached the end (while the decoder
        # still drains its buffered frames) sends the decoder a second end-of-stream packet, which FFmpeg answers
        # with EOF from avcodec_send_packet(); that made short H.264 clips unreadable both ways.
        decoded = None
        needed = None if forward or _seeks_on(targets, seek_gap) else _needed_pts(path, [t + start for t in targets])
        prev: tuple[float, Any] | None = None  # the last decoded frame before the current target
        position = -1.0
        k = seeks = 0
        try:
            while k < num_frames:
                if targets[k] + start - position > seek_gap:
                    seeks += 1
                    if seeks > num_frames:  # every seek serves a target: more means seeking does not advance
                        raise DataError("seeking does not advance")
                    container.seek(int((targets[k] + start) / tb), stream=stream, backward=True, any_frame=False)
                    decoded, prev = _frames(container, stream, needed), None
                elif decoded is None:
                    decoded = _frames(container, stream, needed)
                for frame in decoded:
                    if frame.pts is None:
                        continue
                    if frame.is_corrupt and not forward:  # a keyframe that depends on frames before the seek
                        raise DataError("a frame decodes corrupt after seeking")  # read forward instead
                    if needed is not None and frame.pts not in needed[1]:
                        raise DataError("frame timestamps differ from the packets'")  # read forward, nothing skipped
                    position = float(frame.pts * tb)
                    served = k
                    while k < num_frames and targets[k] + start <= position:
                        t = targets[k] + start
                        if prev is not None and t - prev[0] <= position - t + 1e-6:  # a tie: the earlier
                            take(*prev)
                        else:
                            take(position, frame)
                        k += 1
                    prev = (position, frame)
                    # seek on only after serving a target: a seek lands on the keyframe before the target, and the
                    # frames up to the target are decoded, not seeked past (that would seek back there forever)
                    if k == num_frames or (k > served and targets[k] + start - position > seek_gap):
                        break
                else:
                    break  # the stream ended
        except Exception as e:  # noqa: BLE001 - FFmpeg decode errors and bad seeks (av.error.*, IndexError, ...)
            if not forward:
                raise DataError(f"{path}: cannot decode frames ({' '.join(str(e).split())[:120]})") from None
            if prev is None and not frames:
                raise DataError(
                    f"{path}: no frame decodes ({' '.join(str(e).split())[:120]}) — corrupt or not a video"
                ) from None
        # targets past the last frame: it covers one frame time; beyond that the header overstates the clip
        while k < num_frames and prev is not None:
            end = prev[0] + frame_time
            if targets[k] + start > end + 1e-6:
                if not forward:
                    break
                overrun = end - start
            take(*prev)
            k += 1
    finally:
        container.close()
    if not frames and forward:
        raise DataError(f"{path}: no frame decodes (corrupt or not a video)")
    if len(frames) < num_frames:
        raise DataError(f"{path}: could decode only {len(frames)} of {num_frames} frames (corrupt or truncated clip)")
    return frames, times, overrun


def _seeks_on(targets: list[float], seek_gap: float) -> bool:
    """Whether reading ``targets`` seeks after the first frame (a target more than ``seek_gap`` after the last)."""
    return any(b - a > seek_gap for a, b in zip(targets, targets[1:], strict=False))


def _needed_pts(path: str | Path, targets: list[float]) -> tuple[set[int], set[int]] | None:
    """The timestamps of the frames that reading ``targets`` (seconds, the stream's clock) compares: for each
    target the last frame before it and the first at or after it, and the stream's last frame; with every frame's
    timestamp. From the packets alone (no decoding). None when a packet has no timestamp or demuxing fails: then
    every frame is decoded."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 1000)
        pts = []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's closing empty packet
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
    except Exception:  # noqa: BLE001 - av raises several error types; decoding everything is always right
        return None
    finally:
        container.close()
    if not pts:
        return None
    pts.sort()
    times = [float(p * tb) for p in pts]
    needed = {pts[-1]}
    for t in targets:
        j = bisect.bisect_left(times, t)  # the first frame at or after t, as _decode takes it
        needed.update(pts[max(0, j - 1) : j + 1])
    return needed, set(pts)


def _frames(container: Any, stream: Any, needed: tuple[set[int], set[int]] | None) -> Any:
    """``container.decode(stream)``; with ``needed``, a packet whose frame no target needs is sent with
    ``skip_frame=NONREF``, so FFmpeg does not decode it unless another frame refers to it."""
    if needed is None:
        yield from container.decode(stream)
        return
    codec = stream.codec_context
    try:
        for packet in container.demux(stream):
            codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in needed[0] else "NONREF"
            yield from packet.decode()
    finally:
        codec.skip_frame = "DEFAULT"


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
