"""The whole study on the demo data, through papermill, as `dfmm study` runs it."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from dfmm.errors import ConfigError, StudyError
from dfmm.study.runner import run_study

from .conftest import ROOT, tiny_overrides

TINY = [*tiny_overrides(64), "fusion.epochs=20", "visual.gradcam_examples=2"]


@pytest.fixture(scope="module")
def report(tiny_study):
    """The session's tiny study (tests/conftest.py): run once for this module, the browser and the resume tests."""
    return tiny_study.report, tiny_study.tmp


@pytest.mark.slow
def test_report_has_every_page_and_file(report):
    out, tmp = report
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "metrics.json", "DATA_CARD.md", "config.json"} <= names
    assert {f"{p.stem}.html" for p in (ROOT / "notebooks").glob("*.ipynb")} <= names
    assert not list(out.glob("*.ipynb"))  # executed notebooks live under runs/, not reports/
    for ckpt in ("visual_branch.pt", "text_branch.pt", "multimodal_ensemble.pt", "config.json"):
        assert (tmp / "runs" / "whole" / ckpt).is_file()
    assert len(list((out / "figures").glob("*.png"))) >= 8


@pytest.mark.slow
def test_report_is_labelled_synthetic_and_numbers_come_from_the_run(report):
    out, _ = report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["synthetic_demo_data"] is True
    assert {"data", "visual", "text", "fusion", "gradcam", "evaluation"} <= set(metrics)
    vis = metrics["visual"]["recipes"]
    assert set(vis) == {"card", "improved"} and all(len(r["history"]) == 2 for r in vis.values())
    assert metrics["visual"]["backbone"]["architecture"] == "tf_efficientnet_lite0"
    assert metrics["text"]["backbone"]["architecture"] == "bert"
    card = (out / "DATA_CARD.md").read_text()
    assert "SYNTHETIC DEMO DATA" in card.splitlines()[2]
    index = (out / "index.html").read_text()
    assert "SYNTHETIC DEMO DATA" in index and "02_visual_training.html" in index
    # the table shows the run's own numbers
    acc = vis["improved"]["test"]["accuracy"]
    assert f"{acc:.3f}" in index


@pytest.mark.slow
def test_html_opens_offline(report):
    out, _ = report
    for page in out.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"<script[^>]+src=[\"']https?://", text), f"{page.name} loads a script from the network"
        assert not re.search(r"<link[^>]+href=[\"']https?://", text), f"{page.name} loads a stylesheet from the network"
    assert "data:image/png;base64" in (out / "02_visual_training.html").read_text()


def test_bad_params_write_nothing(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        run_study([str(ROOT / "params" / "demo.yaml")], ["visual.epoch=1"], out=str(tmp_path / "r" / "x"), quiet=True)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_failing_notebook_names_itself_and_keeps_the_old_report(report, tmp_path):
    out, tmp = report
    before = (out / "metrics.json").read_text()
    # a missing checkpoint makes notebook 04 fail: only run 04, against an empty runs dir
    with pytest.raises(StudyError, match=r"notebook 04_fusion.ipynb failed in cell \d+: CheckpointError"):
        run_study(
            [str(ROOT / "params" / "demo.yaml")],
            TINY + [f"study.runs_dir={tmp_path / 'empty'}", "study.notebooks=[04_fusion]"],
            out=str(out),
            quiet=True,
        )
    assert (out / "metrics.json").read_text() == before
    assert not out.with_name(f".{out.name}.partial").exists()
    shutil.rmtree(tmp_path / "empty", ignore_errors=True)
