from __future__ import annotations

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
