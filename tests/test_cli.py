from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


def dfmm(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "dfmm.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, input=stdin)  # fmt: skip


@pytest.mark.slow  # a fresh dfmm process loading torch and a model (~6 s)
def test_evaluate_images_prints_metrics(tiny_models):
    from dfmm.data import data_sources

    folder = data_sources(tiny_models["cfg"])["images"]
    r = dfmm("evaluate", "--model", tiny_models["visual"], "--images", folder)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"accuracy", "balanced_accuracy", "auc", "ap", "n", "confusion"} <= set(out)
    assert out["n"] == 48 and sum(map(sum, out["confusion"])) == 48


@pytest.mark.slow  # two fresh dfmm processes (~15 s)
def test_evaluate_texts_and_classify_stdin(tiny_models):
    from dfmm.data import data_sources

    r = dfmm("evaluate", "--model", tiny_models["text"], "--texts", data_sources(tiny_models["cfg"])["texts"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 48
    r = dfmm("classify", "text", "-", "--model", tiny_models["ensemble"], stdin="Moreover, it is essential to delve.")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] in ("real", "fake")


def test_classify_video_folder_gives_per_frame_scores(tiny_models):
    from dfmm.data import video_source

    r = dfmm(
        "classify", "video", video_source(tiny_models["cfg"]), "--model", tiny_models["visual"], "--num-frames", "4"
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 2 and all(len(c["frames"]) == 4 for c in out)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["evaluate", "--model", "nope.pt", "--images", "{faces}"], "checkpoint not found: nope.pt"),
        (["evaluate", "--model", "nope.pt", "--images", "x"], "image folder not found: x"),  # data before the model
        (["classify", "image", "missing.jpg", "--model", "{visual}"], "missing.jpg: no such file"),
        (["classify", "text", "hello", "--model", "{visual}"], "has no text branch"),
        (["evaluate", "--model", "{text}", "--images", "{faces}"], "cannot score images"),
        (["classify", "video", "{visual}", "--model", "{visual}", "--aggregation", "avg"], "invalid choice: 'avg'"),
        (["study", "params/demo.yaml", "-p", "visual.epoch=1"], "unknown key 'epoch'"),
        (
            ["study", "params/compact.yaml", "-p", "data.images=/nowhere/faces"],
            "image folder not found: /nowhere/faces",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tiny_models, args, needle, tmp_path):
    from dfmm.data import data_sources

    faces = data_sources(tiny_models["cfg"])["images"]
    args = [a.format(visual=tiny_models["visual"], text=tiny_models["text"], faces=faces) for a in args]
    if args[0] == "study":  # a refused study must not write anything, even under runs/
        args += ["-p", f"study.runs_dir={tmp_path / 'runs'}"]
    r = dfmm(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("dfmm: error")]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (ROOT / "reports" / ".compact.partial").exists()
    assert not (tmp_path / "runs").exists()
