from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from dfmm.data.synthetic import write_videos
from dfmm.data.video import list_videos, read_frames, video_info
from dfmm.errors import DataError

from .conftest import shared


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("clips"), 2, 64, seed=0, frames=40, fps=10)


def test_frames_spread_uniformly(clips):
    (path, label), _ = list_videos(clips)
    assert label == 0
    info = video_info(path)
    assert info["frames"] == 40 and info["duration_s"] == pytest.approx(4.0, abs=0.15)
    v = read_frames(path, 8)
    assert len(v.frames) == 8 and v.frames[0].shape == (64, 64, 3) and v.frames[0].dtype == np.uint8
    expected = [(k + 0.5) / 8 * info["duration_s"] for k in range(8)]
    assert np.allclose(v.times, expected, atol=0.11)  # within one frame at 10 fps


def test_too_few_frames_and_bad_files(clips, tmp_path):
    (path, _), _ = list_videos(clips)
    with pytest.raises(DataError, match="fewer than num_frames=64"):
        read_frames(path, 64)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4: empty video file"):
        read_frames(tmp_path / "empty.mp4", 4)
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 100)
    with pytest.raises(DataError, match="junk.mp4"):
        read_frames(tmp_path / "junk.mp4", 4)
    with pytest.raises(DataError, match="no such video"):
        read_frames(tmp_path / "missing.mp4", 4)


@pytest.mark.shared_data
def test_real_clip_32_frames():
    path = shared("videos", "real", "004.mp4")
    v = read_frames(path, 32)
    assert len(v.frames) == 32 and v.frames[0].shape == (720, 1280, 3)
    assert v.times[0] < 0.5 and v.times[-1] > v.info["duration_s"] - 0.5


# ------------------------------------------------------------------ issue #25: short web re-encodes, cut clips
def _h264() -> str:
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - a wheel without libx264
        return "mpeg4"


def _encode(path, n: int, fps, options: dict | None = None, container_options: dict | None = None, size: int = 64):
    """``n`` frames of H.264 (mpeg4 without libx264): each frame a different flat grey, every 7th one noise."""
    import av

    rng = np.random.default_rng(n)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(_h264(), rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = options or {}
        for t in range(n):
            if t % 7 == 0:
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            else:
                arr = np.full((size, size, 3), (t * 5) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _all_frames(path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame, decoded front to back with one PyAV generator (up to the first error in a cut clip)."""
    import av

    got = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        try:
            for f in c.decode(s):
                got.append((float(f.pts * s.time_base), f.to_ndarray(format="rgb24")))
        except av.error.FFmpegError:
            pass
    start = got[0][0]
    return [a for _, a in got], [round(t - start, 4) for t, _ in got]


# the settings that failed with "End of file: 'avcodec_send_packet()'" both ways before the fix (#25)
WEB_CLIPS = {
    "49f-29.97fps-bframes3": (49, Fraction(30000, 1001), {"bf": "3", "g": "250"}),
    "60f-25fps-default": (60, 25, {}),
    "82f-30fps-gop12-bframes2": (82, 30, {"g": "12", "bf": "2"}),
}


@pytest.fixture(scope="module")
def web_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("web")
    return {name: (_encode(d / f"{name}.mp4", n, fps, opts), n) for name, (n, fps, opts) in WEB_CLIPS.items()}


@pytest.mark.parametrize("name", list(WEB_CLIPS))
def test_short_web_reencodes_read_every_way(web_clips, name):
    path, n = web_clips[name]
    every, every_t = _all_frames(path)
    assert len(every) == n  # PyAV decodes every frame front to back
    info = video_info(path)
    for num in (8, 16, 32, n - 1, n):
        v = read_frames(path, num)
        assert len(v.frames) == num and v.info["read"] == "seek", (num, v.info["read"])
        assert all(b > a for a, b in zip(v.times, v.times[1:], strict=False)), v.times
        want = [(k + 0.5) / num * info["duration_s"] for k in range(num)]
        assert np.allclose(v.times, want, atol=0.5 / info["fps"] + 1e-3)  # the nearest frame to each time
        for t, a in zip(v.times, v.frames, strict=True):
            assert np.array_equal(a, every[every_t.index(t)])
    # all the frames asked for: each frame once, in order, as decoding front to back gives them
    v = read_frames(path, n)
    assert v.times == every_t and all(np.array_equal(a, b) for a, b in zip(v.frames, every, strict=True))


@pytest.fixture(scope="module")
def cut_clips(tmp_path_factory):
    """60-frame clips cut in half: their headers (mp4 index up front, mkv) still say 60 frames and 2.4 s."""
    d = tmp_path_factory.mktemp("cut")
    out = {}
    for name, opts in (("faststart.mp4", {"movflags": "faststart"}), ("clip.mkv", {})):
        whole = _encode(d / f"whole_{name}", 60, 25, container_options=opts)
        data = whole.read_bytes()
        (d / f"cut_{name}").write_bytes(data[: len(data) // 2])
        out[name] = d / f"cut_{name}"
    return out


@pytest.mark.parametrize("name", ["faststart.mp4", "clip.mkv"])
def test_clip_shorter_than_its_header_spreads_frames_over_what_decodes(cut_clips, name):
    path = cut_clips[name]
    info = video_info(path)
    assert info["frames"] == 60 and info["duration_s"] == pytest.approx(2.4)
    every, every_t = _all_frames(path)
    assert 10 < len(every) < 60
    end = every_t[-1] + 0.04
    for num in (8, 32, 60):
        v = read_frames(path, num)
        assert len(v.frames) == num and v.info["read"].startswith("forward (frames end at"), v.info["read"]
        assert all(b >= a for a, b in zip(v.times, v.times[1:], strict=False))  # fewer frames: some serve twice
        assert v.times[0] < 0.25 * end and v.times[-1] > 0.75 * end and v.times[-1] <= every_t[-1]
        for t, a in zip(v.times, v.frames, strict=True):
            assert np.array_equal(a, every[every_t.index(t)])
    v = read_frames(path, 8)
    assert all(b > a for a, b in zip(v.times, v.times[1:], strict=False))  # enough frames: all different


def test_clip_whose_frames_are_all_cut_is_unreadable(tmp_path):
    import av

    whole = _encode(tmp_path / "w.mp4", 30, 25, container_options={"movflags": "faststart"})
    with av.open(str(whole)) as c:  # keep the header (index) and only the first bytes of the first frame
        first = next(p for p in c.demux(c.streams.video[0]) if p.size)
        offset = first.pos
    (tmp_path / "nothing.mp4").write_bytes(whole.read_bytes()[: offset + 8])
    with pytest.raises(DataError, match=r"nothing\.mp4: ") as e:
        read_frames(tmp_path / "nothing.mp4", 4)
    assert "\n" not in str(e.value)


class _SeekBreaks:
    """A container whose seeks raise ``error`` (what some web files do near their end)."""

    def __init__(self, container, error):
        self._c, self._error = container, error

    def seek(self, *args, **kwargs):
        raise self._error

    def __getattr__(self, name):
        return getattr(self._c, name)


SEEK_ERRORS = {
    "av-EOFError": lambda av: av.error.EOFError(541478725, "End of file", "avcodec_send_packet()"),
    "av-FFmpegError": lambda av: av.error.FFmpegError(-5, "Input/output error"),
    "av-InvalidDataError": lambda av: av.error.InvalidDataError(-1094995529, "Invalid data found"),
    "IndexError": lambda av: IndexError("list index out of range"),
    "ValueError": lambda av: ValueError("bad seek offset"),
    "OverflowError": lambda av: OverflowError("seek target too large"),
}


@pytest.mark.parametrize("error", list(SEEK_ERRORS))
def test_any_seek_error_falls_back_to_forward_decoding(web_clips, monkeypatch, error):
    import av

    from dfmm.data import video

    path, _ = web_clips["60f-25fps-default"]
    seeking = read_frames(path, 8)
    real_open = video._open
    monkeypatch.setattr(video, "_open", lambda p: _SeekBreaks(real_open(p), SEEK_ERRORS[error](av)))
    v = read_frames(path, 8)
    assert v.info["read"].startswith("forward (seeking failed: cannot decode frames (")
    assert v.times == seeking.times and all(np.array_equal(a, b) for a, b in zip(v.frames, seeking.frames, strict=True))


def test_transport_stream_whose_seeks_find_nothing_is_read_forward(tmp_path):
    import av

    path = tmp_path / "clip.ts"
    with av.open(str(path), "w", format="mpegts") as out:  # FFmpeg's seek in such a file decodes no frame
        stream = out.add_stream(_h264(), rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for t in range(50):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), t * 4, np.uint8))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    v = read_frames(path, 8)
    assert len(v.frames) == 8 and v.info["read"].startswith("forward")
    assert np.allclose(v.times, [(k + 0.5) / 8 * 2.0 for k in range(8)], atol=0.021)
    assert [int(f[0, 0, 0]) for f in v.frames] == pytest.approx([round(t * 25) * 4 for t in v.times], abs=3)


def test_duration_missing_from_the_header_comes_from_the_packets(web_clips, monkeypatch):
    from dfmm.data import video

    path, n = web_clips["82f-30fps-gop12-bframes2"]
    info, duration = video._probe(path)
    assert video._packet_duration(path) == pytest.approx(duration, abs=1e-3)  # mp4 rounds its own
    normal = read_frames(path, 16)
    real = video._probe
    monkeypatch.setattr(video, "_probe", lambda p: ({**real(p)[0], "frames": 0, "duration_s": 0.0}, 0.0))
    v = read_frames(path, 16)
    assert v.times == normal.times
    monkeypatch.setattr(video, "_packet_duration", lambda p: 0.0)
    with pytest.raises(DataError, match="duration unknown or zero"):
        read_frames(path, 16)


class _SeekCount:
    def __init__(self, container, seeks):
        self._c, self._seeks = container, seeks

    def seek(self, *args, **kwargs):
        self._seeks.append(args[0])
        return self._c.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._c, name)


@pytest.mark.parametrize("name", ["49f-29.97fps-bframes3", "82f-30fps-gop12-bframes2"])
def test_seeks_closer_than_the_keyframes_advance(web_clips, monkeypatch, name):
    """A seek lands on the keyframe before its target (here up to 250 frames back): the frames up to the target
    are decoded, and the next seek comes only after a target was served (never back to the same keyframe)."""
    from dfmm.data import video

    path, _ = web_clips[name]
    plain = read_frames(path, 8, seek_gap=math.inf)
    seeks: list[int] = []
    real_open = video._open
    monkeypatch.setattr(video, "_open", lambda p: _SeekCount(real_open(p), seeks))
    v = read_frames(path, 8, seek_gap=0.01)  # a seek before every frame
    assert v.info["read"] == "seek" and 1 < len(seeks) <= 8 and seeks == sorted(seeks)
    assert v.times == plain.times and all(np.array_equal(a, b) for a, b in zip(v.frames, plain.frames, strict=True))


@pytest.mark.parametrize("name", ["49f-29.97fps-bframes3", "82f-30fps-gop12-bframes2"])
def test_frames_no_target_needs_are_not_decoded(web_clips, name):
    """A clip read forward skips the non-reference frames no target compares (FFmpeg's skip_frame per packet); the
    frames it needs decode to the same pixels as decoding every frame."""
    import av

    from dfmm.data import video

    path, n = web_clips[name]
    every, every_t = _all_frames(path)
    info, duration = video._probe(path)
    targets = video._spread(4, duration)
    assert not video._seeks_on(targets, 1.0)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = float(s.start_time * s.time_base)
    needed, every_pts = video._needed_pts(path, [t + start for t in targets])
    assert len(every_pts) == n and len(needed) <= 2 * len(targets) + 1
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        decoded = {f.pts: f.to_ndarray(format="rgb24") for f in video._frames(c, s, (needed, every_pts))}
        tb = s.time_base
    assert needed <= set(decoded) and len(decoded) < n  # the B-frames between targets were not decoded
    for pts in needed:
        assert np.array_equal(decoded[pts], every[every_t.index(round(float(pts * tb) - start, 4))])
    v = read_frames(path, 4)
    assert v.info["read"] == "seek"
    assert all(np.array_equal(a, every[every_t.index(t)]) for t, a in zip(v.times, v.frames, strict=True))


class _Corrupt:
    """A decoded frame that FFmpeg flagged corrupt (what a keyframe referring to frames before it decodes to)."""

    is_corrupt = True

    def __init__(self, frame):
        self._f = frame

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_frame_corrupt_after_a_seek_reads_the_clip_forward(web_clips, monkeypatch):
    from dfmm.data import video

    path, _ = web_clips["60f-25fps-default"]
    every, every_t = _all_frames(path)
    real = video._frames

    def first_corrupt(container, stream, needed):
        frames = real(container, stream, needed)
        first = next(frames, None)
        if first is not None:
            yield _Corrupt(first)
        yield from frames

    monkeypatch.setattr(video, "_frames", first_corrupt)
    v = read_frames(path, 8, seek_gap=0.01)
    assert v.info["read"].startswith("forward (seeking failed: cannot decode frames (a frame decodes corrupt")
    assert all(np.array_equal(a, every[every_t.index(t)]) for t, a in zip(v.times, v.frames, strict=True))


@pytest.mark.shared_data
def test_clip_whose_keyframes_decode_green_after_a_seek():
    """FF++ 519.mp4: the keyframe at 10 s decodes to a green picture after a seek (FFmpeg flags it corrupt); one
    frame at 15 s is a seek there, so it is read forward and equals decoding from the start."""
    path = shared("videos", "real", "519.mp4")
    v = read_frames(path, 1)
    assert v.info["read"].startswith("forward (seeking failed") and v.times == [15.0]
    forward = read_frames(path, 1, seek_gap=math.inf)
    assert np.array_equal(v.frames[0], forward.frames[0]) and 60 < v.frames[0].mean() < 200
