"""``dfmm score``: one CSV row per item, error rows with reasons, resumable after a cut line or ``kill -9``;
``dfmm evaluate --videos`` lists unreadable clips and goes on."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfmm.errors import DataError
from dfmm.serving.score_files import COLUMNS, file_digest, score_to_csv, text_digest

from .conftest import ROOT


def _rows(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    assert reader.fieldnames == COLUMNS
    return rows


def _once_each(rows: list[dict[str, str]], items: list[str]) -> None:
    got = [r["item"] for r in rows]
    assert sorted(got) == sorted(items), "every item exactly once"


def _write_images(root: Path, n: int, size: int = 24, seed: int = 0, labelled: bool = True) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        sub = root / (("real", "fake")[i % 2] if labelled else "")
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture
def folder(tmp_path):
    """12 tiny images under real/ and fake/, a corrupt file and a zero-byte file beside them."""
    root = tmp_path / "imgs"
    good = _write_images(root, 12)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(range(256)))
    (root / "empty.png").write_bytes(b"")
    return root, good, [str(root / "corrupt.jpg"), str(root / "empty.png")]


@pytest.fixture
def vis(tiny_models):
    from dfmm.serving.inference import load_model

    return load_model(tiny_models["visual"])[0]


def _cli(capsys, *args) -> tuple[int, dict | None, str]:
    from dfmm.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else None), out.err


# ---------------------------------------------------------------------------------------------- images
def test_every_item_gets_one_row_and_errors_carry_a_reason(vis, folder, tmp_path):
    from dfmm.serving.inference import classify_image

    root, good, bad = folder
    out = tmp_path / "scores.csv"
    s = score_to_csv(vis, "images", str(root), out, batch_size=2, progress=False)  # first batch: both bad files
    assert (s["items"], s["already_scored"], s["scored"], s["errors"]) == (14, 0, 12, 2)
    assert s["model_digest"] == file_digest(vis.path) and len(s["model_digest"]) == 16
    assert out.read_bytes().split(b"\r\n", 1)[0] == ",".join(COLUMNS).encode()
    rows = _rows(out)
    _once_each(rows, good + bad)
    by_item = {r["item"]: r for r in rows}
    assert by_item[bad[0]]["error"].startswith(f"{bad[0]}: corrupt or truncated image")  # a JPEG header, then junk
    assert "empty file (0 bytes)" in by_item[bad[1]]["error"]
    rule = vis.rule("visual")
    for item in bad:
        r = by_item[item]
        assert r["probability_fake"] == r["label"] == r["true_label"] == "" and r["model_digest"] == s["model_digest"]
    for item in good:
        r = by_item[item]
        p = float(r["probability_fake"])
        assert r["error"] == "" and r["label"] == rule.label(p) and r["face_found"] == ""  # 24 px: never cropped
        assert r["true_label"] == ("1" if "/fake/" in item else "0")
        assert p == pytest.approx(classify_image(vis, item)["probability_fake"], abs=2e-5)
    # a second run finds nothing to do and leaves the file as it was
    before = out.read_bytes()
    again = score_to_csv(vis, "images", str(root), out, batch_size=2, progress=False)
    assert (again["already_scored"], again["scored"], again["errors"]) == (14, 0, 0) and out.read_bytes() == before


def test_rerun_after_a_cut_line_and_lost_rows_scores_each_item_once(vis, folder, tmp_path):
    root, good, bad = folder
    out = tmp_path / "scores.csv"
    score_to_csv(vis, "images", str(root), out, batch_size=5, progress=False)
    full = {r["item"]: r for r in _rows(out)}
    lines = out.read_bytes().split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 16  # header, 14 rows, the empty tail
    header, rows = lines[0], lines[1:-1]
    lost = [rows[3], rows[8]]
    last = rows[-1]
    cut = last[: last.index(b",") + 4]  # killed in the middle of writing the last row: "item,0.3"
    kept = [r for r in rows[:-1] if r not in lost]
    out.write_bytes(b"\r\n".join([header, *kept]) + b"\r\n" + cut)

    s = score_to_csv(vis, "images", str(root), out, batch_size=5, progress=False)
    assert (s["already_scored"], s["scored"] + s["errors"]) == (11, 3)
    data = out.read_bytes()
    lines_after = data.split(b"\r\n")
    assert lines_after[-1] == b"" and cut not in lines_after  # the cut line is gone, not glued to a new row
    assert all(len(next(csv.reader([line.decode()]))) == len(COLUMNS) for line in lines_after[:-1])
    rows_after = _rows(out)
    _once_each(rows_after, good + bad)
    again = {r["item"]: r for r in rows_after}
    cut_item = next(iter(csv.reader([last.decode()])))[0]
    for item in [cut_item, *(next(iter(csv.reader([r.decode()])))[0] for r in lost)]:
        assert again[item]["label"] == full[item]["label"] and again[item]["error"] == full[item]["error"]
        if full[item]["probability_fake"]:
            assert float(again[item]["probability_fake"]) == pytest.approx(float(full[item]["probability_fake"]),
                                                                            abs=2e-6)  # fmt: skip


@pytest.mark.slow  # a dfmm score process killed and rerun (~5 s)
def test_kill_9_then_rerun_scores_every_item_exactly_once(tiny_models, tmp_path, capsys):
    images = tmp_path / "many"
    items = _write_images(images, 200, size=16, seed=5, labelled=False)
    out = tmp_path / "killed.csv"
    cmd = [sys.executable, "-m", "dfmm.cli", "score", "--model", str(tiny_models["visual"]), "--images", str(images),
           "--out", str(out), "--batch-size", "2", "--quiet"]  # fmt: skip
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err_file:  # a file, not a pipe: a full pipe would stall the child
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err_file)
    deadline = time.monotonic() + 180
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 6:  # the header and at least 5 rows
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == -signal.SIGKILL, f"the run ended on its own before it was killed: {log.read_text()[-2000:]}"
    partial = out.read_bytes()
    whole_rows = partial.count(b"\n") - 1
    assert 5 <= whole_rows < 200

    rc, summary, err = _cli(capsys, "score", "--model", tiny_models["visual"], "--images", images, "--out", out,
                            "--batch-size", "8", "--quiet")  # fmt: skip
    assert rc == 0, err
    assert summary["items"] == 200 and summary["already_scored"] == whole_rows
    assert summary["scored"] == 200 - whole_rows and summary["errors"] == 0
    rows = _rows(out)
    _once_each(rows, items)
    assert all(r["error"] == "" and 0.0 <= float(r["probability_fake"]) <= 1.0 for r in rows)
    assert {r["model_digest"] for r in rows} == {file_digest(tiny_models["visual"])}


def test_another_checkpoint_on_the_same_out_is_refused(vis, folder, tmp_path, tiny_models, capsys):
    from dfmm.models.checkpoints import load_checkpoint, save_checkpoint
    from dfmm.serving.inference import load_model

    root, _, _ = folder
    out = tmp_path / "scores.csv"
    first = score_to_csv(vis, "images", str(root), out, progress=False)["model_digest"]
    kind, state, meta = load_checkpoint(tiny_models["visual"])
    other_path = save_checkpoint(tmp_path / "other.pt", kind, state, {**meta, "threshold": 0.123})
    other, _ = load_model(other_path)
    assert file_digest(other_path) != first
    before = out.read_bytes()
    with pytest.raises(DataError, match=f"another checkpoint \\(digest {first}\\)"):
        score_to_csv(other, "images", str(root), out, progress=False)
    rc, _, err = _cli(capsys, "score", "--model", other_path, "--images", root, "--out", out, "--quiet")
    assert rc == 2 and err.startswith("dfmm: error:") and first in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_out_must_be_a_score_csv_file(vis, folder, tmp_path, tiny_models, capsys):
    root, _, _ = folder
    rc, _, err = _cli(capsys, "score", "--model", tiny_models["visual"], "--images", root, "--out", tmp_path, "--quiet")
    assert rc == 2 and "is a folder, expected a CSV file" in err
    foreign = tmp_path / "mine.csv"
    foreign.write_bytes(b"name,score\r\na,1\r\n")
    with pytest.raises(DataError, match="not a dfmm score file"):
        score_to_csv(vis, "images", str(root), foreign, progress=False)
    assert foreign.read_bytes() == b"name,score\r\na,1\r\n"
    with pytest.raises(DataError, match="--batch-size must be at least 1"):
        score_to_csv(vis, "images", str(root), tmp_path / "x.csv", batch_size=0, progress=False)


def test_a_foreign_csv_is_refused_untouched_even_without_a_final_newline(vis, folder, tmp_path):
    root, _, _ = folder
    foreign = tmp_path / "results.csv"
    foreign.write_bytes(b"name,score\na,1\nb,2")  # many tools write no newline after the last row
    with pytest.raises(DataError, match="not a dfmm score file"):
        score_to_csv(vis, "images", str(root), foreign, progress=False)
    assert foreign.read_bytes() == b"name,score\na,1\nb,2"


def test_texts_are_scored_and_resumed(tiny_models, tmp_path):
    from dfmm.serving.inference import classify_text, load_model

    txt, _ = load_model(tiny_models["text"])
    texts = ["The cat sat on the mat today.", "In conclusion, it is essential to delve deeper.", "Hi there, friend."]
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "t.csv"
    assert score_to_csv(txt, "texts", str(data), out, progress=False)["scored"] == 3
    rows = _rows(out)
    assert [r["item"] for r in rows] == [f"{data}#{i}" for i in range(3)]
    assert [r["true_label"] for r in rows] == ["0", "1", "0"]
    for r, t in zip(rows, texts, strict=True):
        assert float(r["probability_fake"]) == pytest.approx(classify_text(txt, t)["probability_fake"], abs=2e-6)
    with pytest.raises(DataError, match="cannot score images"):
        score_to_csv(txt, "images", str(tmp_path), tmp_path / "i.csv", progress=False)


# ---------------------------------------------------------------------------------------------- videos
def _ramp_clip(path: Path, n: int = 20) -> Path:
    from .test_faces import _faceless_frames, write_clip

    return write_clip(path, _faceless_frames(n, 64, 64))


def test_an_unreadable_clip_gets_an_error_row_and_the_rest_are_scored(vis, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    good = _ramp_clip(clips / "good.mp4")
    (clips / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "v.csv"
    s = score_to_csv(vis, "videos", str(clips), out, num_frames=4, progress=False)
    assert (s["items"], s["scored"], s["errors"]) == (2, 1, 1)
    by_item = {r["item"]: r for r in _rows(out)}
    broken = by_item[str(clips / "broken.mp4")]
    assert "broken.mp4: not a readable video" in broken["error"] and broken["probability_fake"] == ""
    ok = by_item[str(good)]
    assert ok["error"] == "" and 0 <= float(ok["probability_fake"]) <= 1 and ok["face_found"] == "False"
    assert ok["label"] == vis.rule("visual").label(float(ok["probability_fake"]))


def test_score_videos_face_crop_never_scores_whole_frames(vis, tmp_path, monkeypatch):
    import dfmm.serving.inference

    real = dfmm.serving.inference.classify_video
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("face_crop", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(dfmm.serving.inference, "classify_video", spy)
    clips = tmp_path / "clips"
    clips.mkdir()
    _ramp_clip(clips / "good.mp4")
    out = tmp_path / "v.csv"
    score_to_csv(vis, "videos", str(clips), out, num_frames=4, face_crop="never", progress=False)
    assert seen == [False]
    assert _rows(out)[0]["face_found"] == ""


def test_evaluate_videos_lists_the_unreadable_clip_and_goes_on(tiny_models, tmp_path, capsys):
    from dfmm.data.synthetic import write_videos

    root = write_videos(tmp_path / "v", 2, 64, seed=0, frames=40, fps=10)
    broken = root / "fake" / "broken.mp4"
    broken.write_bytes(np.random.default_rng(1).bytes(2048))
    rc, out, err = _cli(capsys, "evaluate", "--model", tiny_models["visual"], "--videos", root, "--num-frames", "4")
    assert rc == 0, err
    assert out["n"] == 2 and sum(map(sum, out["confusion"])) == 2
    assert len(out["unreadable"]) == 1
    assert out["unreadable"][0]["clip"] == str(broken)
    assert "not a readable video" in out["unreadable"][0]["error"]
    clips = {c["clip"]: c for c in out["clips"]}
    assert set(clips) == {"clip_00.mp4", "clip_01.mp4", "broken.mp4"} and "error" in clips["broken.mp4"]
    for name in ("clip_00.mp4", "clip_01.mp4"):
        c = clips[name]
        assert c["frames"] == 4 and c["frame_min"] <= c["probability_fake"] <= c["frame_max"] and c["read"] == "seek"
    assert out["face_crop"] is True and out["num_frames"] == 4


def test_evaluate_videos_with_every_clip_unreadable(tiny_models, tmp_path):
    from dfmm.serving.evaluate import evaluate_videos
    from dfmm.serving.inference import load_model

    vis, _ = load_model(tiny_models["visual"])
    for sub in ("real", "fake"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.mp4").write_bytes(b"\x00" * 300)
    out = evaluate_videos(vis, str(tmp_path), num_frames=4)
    assert out["n"] == 0 and len(out["unreadable"]) == 2


# ------------------------------------------------------------------------------ what an item is (#25 item 5)
def test_the_same_folder_by_absolute_and_relative_path_is_the_same_items(vis, folder, tmp_path, monkeypatch):
    root, good, bad = folder
    out = tmp_path / "scores.csv"
    first = score_to_csv(vis, "images", str(root), out, progress=False)
    monkeypatch.chdir(root.parent)
    again = score_to_csv(vis, "images", root.name, out, progress=False)  # "imgs", relative
    assert (first["scored"] + first["errors"], again["already_scored"], again["scored"]) == (14, 14, 0)
    _once_each(_rows(out), [str(Path(p).resolve()) for p in good + bad])


def test_a_changed_image_is_scored_again_and_its_old_row_dropped(vis, folder, tmp_path):
    root, good, _ = folder
    out = tmp_path / "scores.csv"
    score_to_csv(vis, "images", str(root), out, progress=False)
    old = {r["item"]: r for r in _rows(out)}
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(good[0])  # same name, other pixels
    s = score_to_csv(vis, "images", str(root), out, progress=False)
    assert (s["already_scored"], s["rescored_changed"], s["scored"]) == (13, 1, 1)
    rows = _rows(out)
    _once_each(rows, list(old))
    new = {r["item"]: r for r in rows}[good[0]]
    assert new["content_digest"] == file_digest(good[0]) != old[good[0]]["content_digest"]


def test_a_text_keeps_its_score_when_rows_are_inserted_or_reordered(tiny_models, tmp_path):
    from dfmm.serving.inference import load_model

    txt, _ = load_model(tiny_models["text"])
    texts = ["The cat sat on the mat today.", "In conclusion, it is essential to delve deeper.", "Hi there, friend."]
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "t.csv"
    score_to_csv(txt, "texts", str(data), out, progress=False)
    by_digest = {r["content_digest"]: r["probability_fake"] for r in _rows(out)}
    new_first = "A brand new first line, written by hand."
    data.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in [new_first, *reversed(texts)]))
    s = score_to_csv(txt, "texts", str(data), out, progress=False)
    assert (s["items"], s["already_scored"], s["scored"]) == (4, 3, 1)
    rows = _rows(out)
    assert len(rows) == 4 and len({r["content_digest"] for r in rows}) == 4
    added = rows[-1]
    assert added["item"] == f"{data}#0" and added["probability_fake"] not in by_digest.values()
    for r in rows[:3]:  # the old rows keep their scores: each text's score is its own
        assert by_digest[r["content_digest"]] == r["probability_fake"]
    now = [new_first, *reversed(texts)]  # and every row names where its text stands now
    assert {r["item"]: r["content_digest"] for r in rows} == {f"{data}#{i}": text_digest(t) for i, t in enumerate(now)}
    # a text edited in place: its old row is dropped and the new text scored, one row per position still
    now[2] = "An edited line that was not here before."
    data.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in now))
    s = score_to_csv(txt, "texts", str(data), out, progress=False)
    assert (s["already_scored"], s["rescored_changed"], s["scored"]) == (3, 1, 1)
    rows = _rows(out)
    assert {r["item"]: r["content_digest"] for r in rows} == {f"{data}#{i}": text_digest(t) for i, t in enumerate(now)}


def test_a_failure_of_any_kind_on_one_item_is_its_error_row(vis, folder, tmp_path, monkeypatch):
    import dfmm.data.images
    import dfmm.serving.inference

    root, good, bad = folder
    real = dfmm.serving.inference.face_crop_images

    def flaky(model, images, face_crop="auto"):  # a library failing on one image fails its whole batch
        if any(getattr(im, "filename", "").endswith("img_003.png") or "bad" in im.info for im in images):
            raise ValueError("torch.cat(): expected a non-empty list of Tensors")  # as a library might
        return real(model, images, face_crop)

    real_load = dfmm.data.images.load_image

    def load(image, *a, **k):
        im = real_load(image, *a, **k)
        if str(image).endswith("img_003.png"):
            im.info["bad"] = True  # carried by the image itself (an id() can be reused once an image is freed)
        return im

    monkeypatch.setattr(dfmm.serving.inference, "face_crop_images", flaky)
    monkeypatch.setattr(dfmm.data.images, "load_image", load)
    out = tmp_path / "scores.csv"
    s = score_to_csv(vis, "images", str(root), out, batch_size=4, progress=False)
    assert (s["scored"], s["errors"]) == (11, 3)
    row = next(r for r in _rows(out) if r["item"].endswith("img_003.png"))
    assert row["error"] == "ValueError: torch.cat(): expected a non-empty list of Tensors"
    again = score_to_csv(vis, "images", str(root), out, batch_size=4, progress=False)  # skipped like any row
    assert (again["already_scored"], again["scored"], again["errors"]) == (14, 0, 0)
