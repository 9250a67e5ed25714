"""benchmarks/gpu_check.sh is ready to run when a GPU is lent: its SMALL=1 mode runs every step on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT, shared


@pytest.mark.slow  # about a minute on a 2-core CPU: two loop benchmarks, the text loop, two tiny trainings
def test_the_gpu_check_runs_every_step_and_writes_one_json_line_each(tmp_path):
    data = shared()
    out = tmp_path / "out"
    env = {**os.environ, "SMALL": "1", "PYTHON": sys.executable, "DFMM_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(data), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (out / "gpu_check.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines]
    assert steps == ["visual_loop_lite0", "visual_loop_b0", "text_loop", "train_visual_full", "train_text_full"]
    assert all(line["gpu"] for line in lines)
    for line in lines[:2]:
        assert line["ratio"] > 0 and line["plain_img_s"] > 0
    for line in lines[3:]:  # the trainings ran and scored their validation split
        assert line["recipe"] == "improved" and 0.0 <= line["val"]["auc"] <= 1.0 and line["val"]["n"] > 0
    assert (tmp_path / "cache" / "decoded").is_dir()  # the visual training read the decoded-image cache
