"""Export folders and CPU runtimes (issue 27): the same scores as PyTorch on every path, one-line refusals."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dfmm.errors import CheckpointError, DataError, DfmmError

from .test_cli import dfmm

RUNTIMES = ["openvino", "onnxruntime"]
TOLERANCE = 1e-4  # issue 27: each runtime's probabilities equal PyTorch's within this


def installed(runtime: str):
    return pytest.param(
        runtime,
        marks=pytest.mark.skipif(
            __import__("importlib").util.find_spec(runtime) is None, reason=f"{runtime} is not installed"
        ),
    )


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory):
    """The tiny ensemble exported once (with its frozen backbones), and the torch model it came from."""
    from dfmm.models.export import export_model
    from dfmm.serving.inference import load_model

    out = tmp_path_factory.mktemp("export") / "ensemble"
    manifest = export_model(tiny_models["ensemble"], out)
    return {"out": out, "manifest": manifest, "torch": load_model(tiny_models["ensemble"])[0]}


def _copy(exported, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(exported["out"], dst)
    return dst


def _manifest_edit(folder, edit):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_export_folder_holds_every_graph(exported):
    m = exported["manifest"]
    mtcnn = {"mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"}
    assert set(m["graphs"]) == {"visual", "text", "visual_frozen", "text_frozen"} | mtcnn
    assert m["frozen_missing"] == {} and m["opset"] == 17 and m["kind"] == "multimodal_ensemble"
    assert m["graphs"]["visual"]["inputs"]["images"] == ["batch", 3, 64, 64]
    assert m["rules"]["visual"] == exported["torch"].rule("visual").to_dict()
    assert (exported["out"] / "tensors.safetensors").is_file()


@pytest.mark.parametrize("runtime", [installed(r) for r in RUNTIMES])
def test_runtime_scores_the_test_splits_as_torch(exported, tiny_models, runtime):
    """The agreement of issue 27 on the tiny trained checkpoints' test splits: probabilities within 1e-4, every
    label identical, the same out-of-distribution judgements (through dfmm evaluate's batched path)."""
    from dfmm.data import image_splits, text_splits
    from dfmm.serving.evaluate import frozen_features, score_images, score_texts
    from dfmm.serving.inference import load_model

    cfg = tiny_models["cfg"]
    fast, _ = load_model(exported["out"], runtime)
    slow = exported["torch"]
    assert fast.runtime == runtime and fast.rule("visual") == slow.rule("visual")
    for branch, data, score in (
        ("visual", image_splits(cfg)["test"], score_images),
        ("text", text_splits(cfg)["test"], score_texts),
    ):
        a, b = score(slow, data, 8), score(fast, data, 8)
        assert np.array_equal(a["index"], b["index"]) and len(a["probs"]) == len(data)
        np.testing.assert_allclose(b["probs"], a["probs"], atol=TOLERANCE, rtol=0)
        rule = slow.rule(branch)
        assert np.array_equal(rule.is_fake(a["probs"]), rule.is_fake(b["probs"]))
        fa, fb = frozen_features(slow, branch, data, 8), frozen_features(fast, branch, data, 8)
        np.testing.assert_allclose(fb["features"], fa["features"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("runtime", [installed(r) for r in RUNTIMES])
def test_runtime_classify_results_equal_torch(exported, tiny_models, runtime):
    from dfmm.data import data_sources, video_source
    from dfmm.serving.inference import classify_image, classify_multimodal, classify_text, classify_video, load_model

    cfg = tiny_models["cfg"]
    fast, _ = load_model(exported["out"], runtime)
    slow = exported["torch"]
    image = sorted(Path(data_sources(cfg)["images"]).rglob("*.jpg"))[0]
    clip = sorted(video_source(cfg).rglob("*.mp4"))[0]
    text = "Moreover, it is essential to delve into the multifaceted landscape of this topic."
    pairs = [
        (classify_image(slow, image), classify_image(fast, image)),
        (classify_text(slow, text), classify_text(fast, text)),
        (classify_multimodal(slow, image, text), classify_multimodal(fast, image, text)),
        (
            classify_video(slow, clip, num_frames=4, face_crop=False),
            classify_video(fast, clip, num_frames=4, face_crop=False),
        ),
    ]
    for a, b in pairs:
        assert b["probability_fake"] == pytest.approx(a["probability_fake"], abs=TOLERANCE)
        assert b["label"] == a["label"] and b["uncertain"] == a["uncertain"]
        assert b["in_distribution"] == pytest.approx(a["in_distribution"], abs=0.01)
        assert b["model"]["runtime"] == runtime and a["model"]["runtime"] == "torch"
    assert pairs[2][1]["fusion_weights"] == pytest.approx(pairs[2][0]["fusion_weights"])


@pytest.mark.parametrize("runtime", [installed(r) for r in RUNTIMES])
def test_gradients_are_asked_of_torch(exported, tiny_models, runtime):
    from dfmm.data import data_sources
    from dfmm.serving.inference import classify_image, classify_text, load_model

    fast, _ = load_model(exported["out"], runtime)
    image = sorted(Path(data_sources(tiny_models["cfg"])["images"]).rglob("*.jpg"))[0]
    with pytest.raises(CheckpointError, match=f"GradCAM needs gradients.*--runtime torch.*under {runtime}"):
        classify_image(fast, image, return_gradcam=True)
    with pytest.raises(CheckpointError, match="token attributions needs gradients.*--runtime torch"):
        classify_text(fast, "some text to explain", explain=True)


def _refused(folder, match, runtime="onnxruntime"):
    from dfmm.serving.inference import load_model

    with pytest.raises(CheckpointError, match=match) as e:
        load_model(folder, runtime)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(__import__("importlib").util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_bad_export_folders_are_refused_in_one_line(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    # a graph changed after export
    with open(folder / "visual.onnx", "ab") as fh:
        fh.write(b"\0")
    _refused(folder, "visual.onnx does not match its SHA-256")
    shutil.copy(exported["out"] / "visual.onnx", folder / "visual.onnx")
    # the metadata's input size is not the graph's
    _manifest_edit(folder, lambda m: m["meta"]["visual"].update(image_size=96))
    _refused(folder, r"visual.onnx: input images \[None, 3, 64, 64\] does not match the metadata's image_size 96")
    _manifest_edit(folder, lambda m: m["meta"]["visual"].update(image_size=64))
    _manifest_edit(folder, lambda m: m.update(opset=13))
    _refused(folder, "opset 13, this dfmm exports and reads opset 17")
    _manifest_edit(folder, lambda m: m.update(opset=17))
    _manifest_edit(folder, lambda m: m["rules"].pop("text"))
    _refused(folder, r"rules.text is missing \(the decision threshold and temperature\)")
    _manifest_edit(folder, lambda m: m["rules"].update(text={"threshold": 0.123, "temperature": 1.0}))
    _refused(folder, "rules.text .* differs from the metadata's decision rule")
    _manifest_edit(folder, lambda m: m["rules"].update(text={"threshold": "high", "temperature": 1.0}))
    _refused(folder, "rules.text .* is not two numbers")
    _manifest_edit(folder, lambda m: m["rules"].update(text=exported["manifest"]["rules"]["text"]))
    # a graph replaced by garbage together with its SHA-256: the runtime's refusal, in one line
    from dfmm.files import file_digest

    (folder / "text.onnx").write_bytes(b"\x08\x07garbage" * 100)
    _manifest_edit(folder, lambda m: m["graphs"]["text"].update(sha256=file_digest(folder / "text.onnx")))
    _refused(folder, r"text.onnx: (not an ONNX graph|onnxruntime cannot read this graph)")
    # weights moved to a file beside the graph, which no SHA-256 covers: refused
    import onnx

    shutil.copy(exported["out"] / "text.onnx", folder / "text.onnx")
    graph = onnx.load(str(folder / "text.onnx"))
    onnx.save_model(graph, str(folder / "text.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    _manifest_edit(folder, lambda m: m["graphs"]["text"].update(sha256=file_digest(folder / "text.onnx")))
    _refused(folder, "text.onnx: keeps weights in external files")
    (folder / "tensors.safetensors").write_bytes(b"not safetensors")
    _manifest_edit(folder, lambda m: m["tensors"].update(sha256=file_digest(folder / "tensors.safetensors")))
    _refused(folder, "tensors.safetensors: not a readable safetensors file")
    _manifest_edit(folder, lambda m: m["graphs"].update(evil={"file": "../../etc/passwd", "sha256": "0"}))
    _refused(folder, "unknown graph 'evil'")
    (folder / "manifest.json").unlink()
    _refused(folder, "no manifest.json: not a dfmm export folder")


def test_runtime_and_path_must_match(exported, tiny_models, monkeypatch):
    from dfmm.serving.inference import load_model

    with pytest.raises(CheckpointError, match="write one first: dfmm export --model"):
        load_model(tiny_models["visual"], "onnxruntime")
    with pytest.raises(CheckpointError, match="an export folder runs under --runtime openvino or onnxruntime"):
        load_model(exported["out"])
    with pytest.raises(DataError, match="unknown runtime 'tensorrt'; expected one of torch, openvino, onnxruntime"):
        load_model(tiny_models["visual"], "tensorrt")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(DataError, match=r"runtime openvino is not installed: pip install openvino==2026\.4\.1"):
        load_model(exported["out"], "openvino")


def test_export_refuses_a_foreign_folder_and_leaves_nothing_half_written(tiny_models, tmp_path):
    from dfmm.models.export import export_model

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "me.jpg").write_bytes(b"x")
    with pytest.raises(DfmmError, match="exists and is not an earlier dfmm export"):
        export_model(tiny_models["visual"], foreign)
    assert [p.name for p in foreign.iterdir()] == ["me.jpg"]
    (foreign / "manifest.json").write_text('{"name": "a web app"}')  # somebody else's manifest: not replaced
    with pytest.raises(DfmmError, match="exists and is not an earlier dfmm export"):
        export_model(tiny_models["visual"], foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["manifest.json", "me.jpg"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        export_model(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.slow  # five fresh dfmm processes: export, classify twice, gradcam, score (~20 s)
@pytest.mark.skipif(__import__("importlib").util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_cli_export_then_classify_and_score_under_a_runtime(tiny_models, tmp_path):
    from dfmm.data import data_sources

    out = tmp_path / "visual-export"
    r = dfmm("export", "--model", tiny_models["visual"], "--out", out, "--no-frozen")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["kind"] == "visual_branch" and summary["graphs"]["visual"] == "visual.onnx"
    assert set(summary["graphs"]) == {"visual", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"}
    image = sorted(Path(data_sources(tiny_models["cfg"])["images"]).rglob("*.jpg"))[0]
    a = dfmm("classify", "image", image, "--model", tiny_models["visual"])
    b = dfmm("classify", "image", image, "--model", out, "--runtime", "onnxruntime")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    pa, pb = json.loads(a.stdout), json.loads(b.stdout)
    assert pb["probability_fake"] == pytest.approx(pa["probability_fake"], abs=TOLERANCE) and pb["label"] == pa["label"]
    # without its frozen graph, the runtime model judges the input with the PyTorch backbone: the same judgement
    assert pb["in_distribution"] == pytest.approx(pa["in_distribution"], abs=0.01)
    r = dfmm("classify", "image", image, "--model", out, "--runtime", "onnxruntime", "--gradcam", tmp_path / "cams")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--runtime torch" in r.stderr
    assert not (tmp_path / "cams").exists()
    folder = data_sources(tiny_models["cfg"])["images"]
    r = dfmm("score", "--images", folder, "--model", out, "--runtime", "onnxruntime", "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scored"] == 48


def test_in_background_keeps_order_raises_where_read_and_stops_early():
    import threading
    import time

    from dfmm.data.batches import in_background

    assert list(in_background(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("item 2 is unreadable")

    got = []
    with pytest.raises(ValueError, match="item 2 is unreadable"):
        for x in in_background(failing()):
            got.append(x)
    assert got == [1]
    produced = []

    def endless():
        for i in range(10_000):
            produced.append(i)
            yield i

    for x in in_background(endless(), depth=2):
        if x == 3:
            break
    time.sleep(0.3)
    assert len(produced) < 10 and not any(t.name == "dfmm-prefetch" for t in threading.enumerate())
    # the caller stops while the worker waits on a full queue to hand over its end: closed at once, no thread left
    g = in_background(iter([1, 2, 3]), depth=1)
    next(g)
    time.sleep(0.2)
    t0 = time.perf_counter()
    g.close()
    assert time.perf_counter() - t0 < 1 and not any(t.name == "dfmm-prefetch" for t in threading.enumerate())


@pytest.mark.parametrize("runtime", [installed(r) for r in RUNTIMES])
def test_face_detector_under_a_runtime_finds_the_same_faces(exported, runtime):
    """MTCNN's stages as exported graphs (FaceDetector.use_nets): the same boxes as facenet-pytorch's nets."""
    from PIL import Image

    from dfmm.data.faces import FaceDetector
    from dfmm.serving.runtimes import load_export

    from .conftest import shared

    files = sorted(shared("faces", "dfdc", "real").glob("*.jpg"))[:6]
    frames = [np.asarray(Image.open(f).convert("RGB").resize((320, 320))) for f in files]
    plain, fast = FaceDetector(), FaceDetector()
    fast.use_nets(load_export(exported["out"], runtime).face_nets)
    a, b = plain.detect(frames), fast.detect(frames)
    assert sum(map(len, a)) >= 3 and [len(x) for x in a] == [len(x) for x in b]
    for fa, fb in zip(a, b, strict=True):
        for (box_a, score_a), (box_b, score_b) in zip(fa, fb, strict=True):
            assert box_b == pytest.approx(box_a, abs=1e-2) and score_b == pytest.approx(score_a, abs=1e-4)


def test_export_into_the_current_folder(tiny_models, tmp_path, monkeypatch):
    from dfmm.models.export import export_model

    monkeypatch.chdir(tmp_path)
    manifest = export_model(tiny_models["text"], ".", frozen=False)
    assert manifest["kind"] == "text_branch" and (tmp_path / "text.onnx").is_file()


def test_classify_video_stops_decoding_when_scoring_fails(tiny_models, monkeypatch):
    """The decoding thread of classify_video ends with the call when a chunk's scoring raises: no decoding goes
    on behind the caller's back (issue 27's decode-while-scoring pipeline)."""
    import threading
    import time

    from dfmm.data import video_source
    from dfmm.serving import video
    from dfmm.serving.inference import classify_video, load_model

    model, _ = load_model(tiny_models["visual"])
    clip = sorted(video_source(tiny_models["cfg"]).rglob("*.mp4"))[0]
    monkeypatch.setattr(video, "CLIP_CHUNK", 1)

    def broken(self, frames):
        raise RuntimeError("the model failed on this chunk")

    from dfmm.data import video as frames_module

    real, handed = frames_module.read_frames, []

    def slow_reader(*args, on_frame=None, **kwargs):  # 0.3 s a frame: the failure comes while frames remain
        def slow(frame):
            time.sleep(0.3)
            handed.append(1)
            on_frame(frame)

        return real(*args, on_frame=slow, **kwargs)

    monkeypatch.setattr(frames_module, "read_frames", slow_reader)
    monkeypatch.setattr(video._ClipScorer, "add", broken)
    with pytest.raises(RuntimeError, match="the model failed on this chunk"):
        classify_video(model, clip, num_frames=8, face_crop=False)
    assert not any(t.name == "dfmm-decode" for t in threading.enumerate())  # joined before the error came out
    assert len(handed) < 8  # stopped at the next frame, not after the whole clip
