"""Publishing a report: every saved figure shown on its page, no machine path or library warning in a page, a
front page with the key figures linking their pages, and pages withheld from a committed copy listed, not linked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from dfmm.config import load_config
from dfmm.errors import StudyError
from dfmm.study.report import TEMPLATES, key_figures, study_command, withhold, write_data_card
from dfmm.study.runner import papermill_parameters

from .conftest import ROOT
from .test_traceability import render, small_metrics

PAGES = ["01_data_exploration", "02_visual_training", "03_text_training", "04_fusion", "05_gradcam_analysis",
         "06_evaluation"]  # fmt: skip
PNG = bytes.fromhex(  # a 1x1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e5b2b7f00000000049454e44ae426082"
)


def _report(folder: Path, figures: list[str], pages: list[str] = PAGES, synthetic: bool = False) -> Path:
    """A report folder as ``dfmm study`` leaves it: pages, figures, metrics.json, config.json, front pages."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "figures").mkdir(exist_ok=True)
    for f in figures:
        (folder / "figures" / f"{f}.png").write_bytes(PNG)
    for p in pages:
        (folder / f"{p}.html").write_text(f"<html><body>{p}</body></html>")
    metrics = small_metrics() | {"synthetic_demo_data": synthetic, "notebook_seconds": dict.fromkeys(PAGES, 1.5)}
    cfg = load_config([ROOT / "params" / ("demo.yaml" if synthetic else "compact.yaml")])
    render(folder, metrics, cfg, PAGES)
    return folder


def _refs(page: Path) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]*)"', page.read_text())


def test_papermill_parameters_are_relative_to_the_project_root(tmp_path):
    root = tmp_path / "project"
    params = papermill_parameters(root / "runs" / "demo" / "config.json", root / "reports" / ".demo.partial", root)
    assert params == {"config_path": "runs/demo/config.json", "report_dir": "reports/.demo.partial"}
    elsewhere = papermill_parameters(root / "runs" / "x.json", tmp_path / "out" / "r", root)
    assert elsewhere["report_dir"] == "../out/r" and not any(v.startswith("/") for v in elsewhere.values())


def test_front_page_shows_key_figures_linking_their_pages(tmp_path):
    figures = ["06_roc", "02_reliability", "04_reliability", "06_cross_source", "06_video_frames", "05_gradcam_mean"]
    folder = _report(tmp_path / "r", figures)
    index = (folder / "index.html").read_text()
    shown = re.findall(r'<a href="([^"]+)"><img src="([^"]+)"', index)
    assert shown == [
        ("06_evaluation.html", "figures/06_roc.png"),
        ("02_visual_training.html", "figures/02_reliability.png"),
        ("04_fusion.html", "figures/04_reliability.png"),
        ("06_evaluation.html", "figures/06_cross_source.png"),
        ("06_evaluation.html", "figures/06_video_frames.png"),
    ]
    assert all(f'<a href="{p}.html">{p}</a>' in index for p in PAGES)
    assert "Withheld" not in index
    for ref in _refs(folder / "index.html"):  # relative links only, each to a file of the report
        assert not ref.startswith(("/", "file:", "http")), ref
        assert ref.startswith("#") or (folder / ref).is_file(), ref
    # the headline table with its intervals and the targets with their status
    assert "0.702 [0.684, 0.720]" in index and "<th>status</th>" in index and ">NO</td>" in index
    assert "<sup>" in index and "one class only (n real=0, n fake=40)" in index
    # the same with no key figure at all: says so
    bare = _report(tmp_path / "bare", [])
    assert "none of the key figures" in (bare / "index.html").read_text()
    assert key_figures(bare, PAGES) == []


def test_withhold_removes_pages_and_lists_them_with_the_command(tmp_path):
    figures = ["01_faces_train", "01_text_lengths", "05_gradcam_gallery", "05_gradcam_mean", "06_roc"]
    folder = _report(tmp_path / "compact", figures)
    removed = withhold(folder, ["01", "03_text_training", "05"], figures=["01_faces_*", "05_gradcam_gallery"])
    assert sorted(p.name for p in removed) == [
        "01_data_exploration.html", "01_faces_train.png", "03_text_training.html", "05_gradcam_analysis.html",
        "05_gradcam_gallery.png",
    ]  # fmt: skip
    assert sorted(p.name for p in folder.glob("*.html")) == [
        "02_visual_training.html",
        "04_fusion.html",
        "06_evaluation.html",
        "index.html",
    ]
    index = (folder / "index.html").read_text()
    for ref in _refs(folder / "index.html"):
        assert ref.startswith("#") or (folder / ref).is_file(), f"index.html links {ref}, which is not there"
    for page in ("01_data_exploration", "03_text_training", "05_gradcam_analysis"):
        assert f"<li>{page} (withheld)</li>" in index and f'href="{page}.html"' not in index
    assert "<code>dfmm study params/compact.yaml --out compact</code>" not in index  # relative to the project
    command = re.search(r"<pre><code>(.*?)</code></pre>", index)[1]
    assert command.startswith("dfmm study params/compact.yaml --out ") and not command.split()[-1].startswith("/")
    assert "05_gradcam_mean.png" in {p.name for p in (folder / "figures").iterdir()}  # no dataset item in it
    # idempotent, and a page that is not in the report is an error that names the pages
    assert withhold(folder, ["01"]) == []
    with pytest.raises(StudyError, match="no page '07' .*01_data_exploration"):
        withhold(folder, ["07"])
    with pytest.raises(StudyError, match="not a dfmm report"):
        withhold(tmp_path, ["01"])


def test_regenerate_command_names_the_params_and_the_report_folder(tmp_path):
    cfg = load_config([ROOT / "params" / "compact.yaml", ROOT / "params" / "sources" / "local.yaml"], ["study.seed=1"])
    assert study_command(cfg) == "dfmm study params/compact.yaml params/sources/local.yaml -p study.seed=1"
    assert study_command(cfg, ROOT / "reports" / "compact") == study_command(cfg)
    assert study_command(cfg, ROOT / "reports" / ".compact.partial") == study_command(cfg)  # the staging folder
    assert study_command(cfg, ROOT / "reports" / "other").endswith(" --out reports/other")


def test_synthetic_banner_on_both_front_pages(tmp_path):
    folder = _report(tmp_path / "demo", ["06_roc"], synthetic=True)
    index = (folder / "index.html").read_text()
    card = (folder / "DATA_CARD.md").read_text().splitlines()
    assert 'class="banner"><b>SYNTHETIC DEMO DATA' in index
    assert card[2].startswith("> **SYNTHETIC DEMO DATA") and "smoke test" in card[2]
    plain = _report(tmp_path / "plain", ["06_roc"])
    assert "SYNTHETIC" not in (plain / "index.html").read_text() + (plain / "DATA_CARD.md").read_text()


def test_data_card_keeps_its_sections_and_facts(tmp_path):
    cfg = load_config([ROOT / "params" / "compact.yaml", ROOT / "params" / "sources" / "local.yaml"])
    card = write_data_card(cfg, small_metrics(), tmp_path / "DATA_CARD.md").read_text()
    heads = [line for line in card.splitlines() if line.startswith("#")]
    assert heads == ["# Data card — dfmm study `compact` (compact budget)", "## Data", "## Models", "## Results",
                     "## Targets", "## Limitations"]  # fmt: skip
    for fact in (
        "- Params: `params/compact.yaml params/sources/local.yaml` (config digest `a1b2c3d4e5f6`)",
        "- Environment: dfmm 0.1.0; python 3.11.7; torch 2.14.1+cu130; device cpu (2 cores)",
        "| images | `../shared/data/faces/dfdc` | 1000 | 212 | 198 |",
        "| cross-dataset test | `lfw_faceswap` | – | – | 2400 |",
        "| videos | `../shared/data/videos` | – | – | 12 clips |",
        "stratified, seed 0; val 15%, test 15%.",
        "- visual: package:efficientnet-lite0 -> tf_efficientnet_lite0 (ImageNet EfficientNet-Lite0",
        "- text recipe `card`: adamw, lr 2e-05 (head x1), weight decay 0.01, constant schedule, warm-up 0%",
        "| visual / improved (mean of 3 seeds) | val, at 0.5 | – | 0.692 ± 0.007 |",
        "| visual | accuracy >= 0.7 | 0.692 [0.684, 0.720] | 0.007 | NO | improved, val, mean of 3 seeds |",
        "Fusion weights by variant: weighted: visual 0.609, text 0.391; pair rule `either`.",
        "[1] no interval: every resample had one class only  ",
    ):
        assert fact in card, fact
    assert "/work/" not in card and str(ROOT) not in card


def test_templates_are_packaged():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "study/templates/*.j2" in pyproject["tool"]["setuptools"]["package-data"]["dfmm"]
    assert {p.name for p in TEMPLATES.glob("*.j2")} == {"index.html.j2", "DATA_CARD.md.j2"}


def test_a_notebook_page_shows_each_saved_figure_once_without_paths_or_warnings(tmp_path):
    """A real kernel, as ``dfmm study`` runs it: papermill with relative parameters, then the HTML export."""
    nbformat = pytest.importorskip("nbformat")
    import papermill as pm

    from dfmm.study.runner import _kernel_config, _kernel_name, export_html

    cfg = load_config([ROOT / "params" / "demo.yaml"], [f"study.runs_dir={tmp_path / 'runs'}"])
    config_path = cfg.save(tmp_path / "runs" / "config.json")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                            "display_name": "Python 3"}})  # fmt: skip
    nb.cells = [
        nbformat.v4.new_code_cell(
            "config_path = None\nreport_dir = None\nparams = ['params/demo.yaml']", metadata={"tags": ["parameters"]}
        ),  # fmt: skip
        nbformat.v4.new_code_cell(
            "from dfmm.study.notebook import notebook_setup\n\nctx = notebook_setup(config_path, params, report_dir)"
        ),  # fmt: skip
        nbformat.v4.new_code_cell(
            "import warnings\n\nimport matplotlib.pyplot as plt\nimport tqdm.auto\n\n"
            "warnings.warn_explicit('old API', FutureWarning, '/opt/lib/python3/site-packages/lib/x.py', 3)\n"
            "warnings.warn_explicit('odd input', UserWarning, '/opt/lib/python3/site-packages/lib/y.py', 7)\n"
            "fig, ax = plt.subplots()\nax.plot([0, 1])\nctx.save_fig(fig, 'a_line')"
        ),
        nbformat.v4.new_code_cell(
            "from dfmm.analysis.plots import _plt\n\nplt = _plt()  # dfmm's plots switch to Agg: no inline display\n"
            "for name in ('b_bar', 'c_dots'):\n    fig, ax = plt.subplots()\n    ax.bar([0, 1], [1, 2])\n"
            "    ctx.save_fig(fig, name)"
        ),
    ]
    source = tmp_path / "t.ipynb"
    nbformat.write(nb, source)
    executed = tmp_path / "executed.ipynb"
    pm.execute_notebook(
        str(source),
        str(executed),
        parameters=papermill_parameters(config_path, tmp_path / "report", ROOT),
        kernel_name=_kernel_name(),
        cwd=str(ROOT),
        progress_bar=False,
        log_output=False,
        config=_kernel_config(),
    )
    assert sorted(p.name for p in (tmp_path / "report" / "figures").iterdir()) == ["a_line.png", "b_bar.png",
                                                                                   "c_dots.png"]  # fmt: skip
    page = export_html(executed, tmp_path / "t.html").read_text()
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) == 3  # each figure once, embedded
    assert "PosixPath" not in page and str(ROOT) not in page
    assert not re.search(r"(?<!\.\.)" + re.escape(str(tmp_path)), page), "an absolute path in the page"
    cells = json.loads(executed.read_text())["cells"]
    stderr = "".join("".join(o["text"]) for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr")
    assert stderr == "UserWarning: odd input (y.py:7)\n"  # no FutureWarning, no TqdmWarning, no machine path
    assert "IProgress" not in page and "UserWarning: odd input (y.py:7)" in page
    injected = "".join(next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))["source"])
    assert 'config_path = "runs/config.json"' not in injected and 'report_dir = "../' in injected  # relative
    assert f'config_path = "{os.path.relpath(config_path, ROOT)}"' in injected
    outputs = [o for c in cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "execute_result"]  # save_fig returns nothing
