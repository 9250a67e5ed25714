"""``benchmarks/run.py``: the one benchmark command. A smoke run of the two benchmarks that need no checkpoint
(seconds, on generated JPEGs), missing inputs reported as ``skipped`` rows, failures as ``failed`` rows, and the
parsers of the scripts that print text. No timing is asserted: the figures are only checked to be numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_run", None)


def _faces(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / label / f"{i}.jpg")
    return root


def _table(stdout: str) -> dict[str, list[list[str]]]:
    """Rows of the printed Markdown table by benchmark: [figure, ours, anchor, ratio, target]."""
    rows: dict[str, list[list[str]]] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 6 and cells[0] not in ("benchmark", "") and "---" not in line:
            rows.setdefault(cells[0], []).append(cells[1:])
    return rows


@pytest.mark.slow  # a subprocess running every benchmark script at its small size (~16 s)
def test_smoke_run_prints_a_table_and_writes_the_machine(tmp_path):
    images = _faces(tmp_path / "faces")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(RUN), "--size", "small", "--only", "bootstrap_cost,augment_cost,cpu_paths"]
    proc = subprocess.run([*cmd, "--images", str(images), "--out", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(proc.stdout)  # the table, for pytest -s
    table = _table(proc.stdout)
    assert set(table) == {"bootstrap_cost", "augment_cost", "cpu_paths"}, proc.stdout
    for name, rows in table.items():
        assert rows, name
        for figure, ours, anchor, ratio, _ in rows:
            assert not figure.startswith(("skipped", "failed")), figure
            assert float(ours) > 0 and float(anchor) > 0 and float(ratio) > 0, (name, figure)
    report = json.loads(out.read_text())
    m = report["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["ram_gib"] > 0
    assert "gpu" in m and set(m["versions"]) >= {"torch", "timm", "transformers"}
    assert m["versions"]["torch"]
    assert "git_commit" in m
    assert report["size"] == "small"
    assert {r["benchmark"] for r in report["table"]} == {"bootstrap_cost", "augment_cost", "cpu_paths"}
    assert report["benchmarks"]["cpu_paths"]["output"]["fused_adamw_text"]["parameters"] > 20_000_000
    assert all(isinstance(r["ratio"], float) and math.isfinite(r["ratio"]) for r in report["table"])
    assert report["benchmarks"]["augment_cost"]["output"]["card_speedup"] > 0
    assert report["benchmarks"]["bootstrap_cost"]["command"][:2] == ["python", "benchmarks/bootstrap_cost.py"]


def test_missing_model_and_data_are_skipped_rows_not_a_crash(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--size", "small", "--only", "inference_latency,score_throughput,tta_views,augment_cost"]
    args += ["--model", str(tmp_path / "none.pt"), "--visual-model", str(tmp_path / "none_visual.pt")]
    assert bench.main([*args, "--images", str(tmp_path / "no_faces"), "--out", str(out)]) == 0
    table = _table(capsys.readouterr().out)
    assert table["inference_latency"][0][0].startswith("skipped: no model checkpoint at")
    assert table["score_throughput"][0][0].startswith("skipped: no visual checkpoint at")
    assert table["tta_views"][0][0].startswith("skipped: no visual checkpoint at")
    assert table["augment_cost"][0][0].startswith("skipped: no image folder at")
    report = json.loads(out.read_text())
    assert {r["status"] for r in report["benchmarks"].values()} == {"skipped"}
    assert bench.main([*args, "--images", str(tmp_path), "--out", str(out), "--strict"]) == 1


def test_a_failing_script_is_a_failed_row_and_the_run_goes_on(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench.BENCHMARKS["bootstrap_cost"], "args", lambda inp: ["--no-such-flag"])
    out = tmp_path / "bench.json"
    code = bench.main(["--size", "small", "--only", "bootstrap_cost,score_throughput", "--out", str(out),
                       "--visual-model", str(tmp_path / "none.pt")])  # fmt: skip
    assert code == 0
    table = _table(capsys.readouterr().out)
    assert table["bootstrap_cost"][0][0] == "failed: bootstrap_cost.py: error: unrecognized arguments: --no-such-flag"
    assert table["score_throughput"][0][0].startswith("skipped:")
    assert "stderr_tail" in json.loads(out.read_text())["benchmarks"]["bootstrap_cost"]


def test_error_line_names_the_error(bench):
    tb = "  3%|#   | 1/30\r 10%|### | 3/30\nTraceback (most recent call last):\n  File x\nValueError: no images\n"
    assert bench.error_line(tb, 1) == "ValueError: no images"
    assert bench.error_line("", -9) == "exit status -9 (killed by a signal)"
    assert bench.error_line("CUDA out of memory\nmore\n", 1) == "CUDA out of memory"


def test_last_json_skips_what_comes_before(bench):
    assert bench.last_json('loading\n{"a": 1}\n') == {"a": 1}
    assert bench.last_json('{"x": 0}\nnoise\n{\n  "b": {\n    "c": 2\n  }\n}\n') == {"b": {"c": 2}}
    with pytest.raises(ValueError):
        bench.last_json("no json here\n")


def test_text_outputs_parse_into_rows(bench, tmp_path):
    inp = bench.Inputs("small", *(tmp_path / n for n in ("m", "v", "i", "t", "c")), params=[])
    boot = """bootstrap cost, 1000 resamples, median of 5 runs
n=2400:
  binary_metrics                          0.0010 s
  bootstrap_ci (4 metrics, items)         0.2000 s  =  200.0 x binary_metrics
  bootstrap_ci (4 metrics, groups of 4)   0.2500 s
  paired_bootstrap (AUC)                  0.1000 s
  sklearn loop, AUC only (scaled)         2.0000 s  =   10.0 x bootstrap_ci
n=1000:
  binary_metrics                          0.0005 s
  bootstrap_ci (4 metrics, items)         0.1000 s  =  200.0 x binary_metrics
  bootstrap_ci (4 metrics, groups of 4)   0.1200 s
  paired_bootstrap (AUC)                  0.0500 s
  sklearn loop, AUC only (scaled)         1.5000 s  =   15.0 x bootstrap_ci
report estimate: 40 rows x metrics_with_ci at n=2400 = 40 x 0.300 s = 12.0 s
"""
    parsed = bench.bootstrap_cost_parse(boot)
    assert parsed["n=2400"]["paired_bootstrap (AUC)"] == 0.1 and parsed["report_estimate_s"] == 12.0
    assert [r["ratio"] for r in bench.bootstrap_cost_rows(parsed, inp)] == [10.0, 15.0]
    tta = "\nval (4 images)   accuracy at 0.5   ROC AUC\n"
    for name, auc in (("image", 0.7), ("image + mirror (shipped)", 0.77), ("... + crop 0.8 x2", 0.8)):
        tta += f"  {name:34s} 0.600            {auc:.4f}\n"
    rows = bench.tta_views_rows(bench.tta_views_parse(tta), inp)
    assert rows[0]["ours"] == 0.77 and rows[0]["anchor"] == 0.7 and rows[0]["ratio"] == 1.1
    assert rows[0]["target"] == "best: ... + crop 0.8 x2 0.8000"
    latency = {
        "gradcam_one_image": {"ours": {"p50_ms": 40.0}, "plain_grad_cam": {"p50_ms": 100.0}, "plain_over_ours_p50": 2.5},
        "classify_image": {"p50_ms": 30.0},
        "classify_text": {"p50_ms": 20.0},
    }  # fmt: skip
    rows = bench.inference_latency_rows(latency, inp)
    assert [r["ratio"] for r in rows[:3]] == [2.5, 0.5, 0.5]
    assert rows[-1]["figure"].startswith("classify_video 32 frames: skipped")
    visual = {"arch": "a", "batch": 32, "plain_img_s": 10.0, "ours_img_s": 9.0, "ratio": 0.9}
    assert bench.visual_throughput_rows(visual, inp)[0]["ratio"] == 0.9


def test_machine_slug(bench):
    assert bench.machine_slug({"gpu": "NVIDIA H100 80GB HBM3"}) == "h100"
    assert bench.machine_slug({"gpu": "NVIDIA GeForce RTX 4090"}) == "4090"
    assert bench.machine_slug({"gpu": None}) == "cpu"
