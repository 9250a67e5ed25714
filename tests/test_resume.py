"""Kill and resume: real ``dfmm train`` / ``dfmm study`` subprocesses on tiny demo data, killed with SIGKILL at
chosen moments (during a save, mid-epoch, during the HTML export), then resumed with ``--resume``.

After every kill each file left must be whole (every checkpoint, training state, JSON, page and figure loads) or
absent; the resumed run must end with the same checkpoint tensors and the same numbers as a run never interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import PROCESS_ENV, ROOT, STUDY_TINY, tiny_overrides

DEMO = str(ROOT / "params" / "demo.yaml")
TIMING = re.compile(r"^(.*seconds|train_samples_per_s|median_ms_one_image|timings_ms|speed)$")  # wall-clock keys


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dfmm.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, **PROCESS_ENV}


def _run(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _kill_when(args: list[str], ready, timeout: float = 900) -> str:
    """Start ``args``; SIGKILL it (and its kernel) as soon as ``ready()`` holds; return what ``ready`` saw."""
    # a session of its own: the kill reaches the whole group, the notebook kernel included
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=ROOT, start_new_session=True
    )
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            seen = ready()
            if seen:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return seen
            if proc.poll() is not None:
                pytest.fail(f"finished (status {proc.returncode}) before the kill point: {proc.stderr.read()[-2000:]}")
            time.sleep(0.005)
        pytest.fail("kill point never reached")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return ""


def _every_file_is_whole(folder: Path) -> int:
    """Load every file under ``folder`` by its kind; a half-written one fails. Returns the number checked."""
    from PIL import Image

    n = 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.endswith(".tmp"):
            continue  # temporary files are never read: only a rename makes them real
        if p.suffix == ".pt":
            blob = torch.load(p, map_location="cpu", weights_only=True)
            assert isinstance(blob, dict), p
        elif p.suffix in (".json", ".ipynb"):
            json.loads(p.read_text())
        elif p.suffix == ".html":
            assert p.read_text().rstrip().endswith("</html>"), p
        elif p.suffix == ".png":
            Image.open(p).load()
        n += 1
    return n


def _timing_free(o):
    """Metrics without wall-clock figures (seconds, throughputs, latencies): what a resumed run must equal."""
    if isinstance(o, dict):
        return {k: _timing_free(v) for k, v in o.items() if not TIMING.search(str(k))}
    if isinstance(o, list):
        return [_timing_free(v) for v in o]
    return o


def _state_tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state"]


# ---------------------------------------------------------------------------------------------------- train
TRAIN_TINY = [*tiny_overrides(48), "visual.epochs=3"]


def _train_args(runs: Path, name: str, *extra: str) -> list[str]:
    sets = [x for o in [*TRAIN_TINY, f"study.runs_dir={runs}", f"study.name={name}"] for x in ("-p", o)]
    return _cli("train", "visual", DEMO, "--recipe", "improved", *sets, *extra)


@pytest.mark.slow
def test_train_killed_during_a_save_and_mid_epoch_resumes_to_the_same_checkpoint(tmp_path):
    whole = json.loads(_run(_train_args(tmp_path, "whole")).stdout)

    states = tmp_path / "cut" / "resume"
    # 1. killed while the state of an epoch is being written (its temporary file exists)
    _kill_when(
        _train_args(tmp_path, "cut"), lambda: next(iter(states.glob("*.tmp")), None) if states.is_dir() else None
    )
    assert _every_file_is_whole(tmp_path / "cut") >= 1  # config.json at least; a state only if an epoch finished
    # 2. resumed, then killed again in the middle of an epoch (after the next state is saved, mid-way to the one after)
    saved = next(iter(states.glob("*.pt")), None)
    first = saved.stat().st_mtime_ns if saved else 0

    def mid_epoch():
        now = next(iter(states.glob("*.pt")), None)
        return now if now is not None and now.stat().st_mtime_ns != first and not list(states.glob("*.tmp")) else None

    _kill_when(_train_args(tmp_path, "cut", "--resume"), mid_epoch)
    _every_file_is_whole(tmp_path / "cut")
    epoch = torch.load(next(states.glob("*.pt")), weights_only=True)["epoch"]
    assert 1 <= epoch < 3
    # 3. resumed to the end
    cut = json.loads(_run(_train_args(tmp_path, "cut", "--resume")).stdout)
    assert _timing_free(cut["val"]) == _timing_free(whole["val"]) and cut["best_epoch"] == whole["best_epoch"]
    assert _timing_free(cut["test"]) == _timing_free(whole["test"])
    assert _timing_free(cut["history"]) == _timing_free(whole["history"])
    a, b = _state_tensors(Path(whole["checkpoint"])), _state_tensors(Path(cut["checkpoint"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_train_without_resume_starts_over(tmp_path):
    """A leftover state is not used unless --resume asks for it: the history starts at epoch 1."""
    args = _train_args(tmp_path, "again")
    args[args.index("visual.epochs=3")] = "visual.epochs=1"
    _run(args)
    again = json.loads(_run(args).stdout)
    assert [h["epoch"] for h in again["history"]] == [1]


# ---------------------------------------------------------------------------------------------------- study
def _study_args(tmp: Path, name: str, *extra: str) -> list[str]:
    sets = [x for o in [*STUDY_TINY, f"study.runs_dir={tmp / 'runs'}", f"study.name={name}"] for x in ("-p", o)]
    return _cli("study", DEMO, *sets, "--out", str(tmp / "reports" / name), "--quiet", *extra)


@pytest.mark.slow
def test_study_killed_three_times_and_resumed_gives_the_numbers_of_an_uninterrupted_run(tiny_study):
    """The session's uninterrupted tiny study (``whole``) against the same config killed three times (``cut``),
    in the same folders so that only the name differs."""
    tmp_path = tiny_study.tmp
    whole = json.loads((tiny_study.report / "metrics.json").read_text())

    run = tmp_path / "runs" / "cut"
    staging = run / "report.partial"

    # 1. killed as notebook 01's page is exported: its executed copy is written, the page not yet (nbconvert's
    # first export takes about a second)
    _kill_when(_study_args(tmp_path, "cut"), lambda: (run / "notebooks" / "01_data_exploration.ipynb").exists())
    _every_file_is_whole(run)
    # 2. resumed, killed while the text branch trains (after its first epoch's state, before the notebook ends)
    _kill_when(_study_args(tmp_path, "cut", "--resume"), lambda: next(iter((run / "resume").glob("text_*.pt")), None))
    _every_file_is_whole(run)
    record = json.loads((run / "study.json").read_text())
    assert "02_visual_training" in record["notebooks"] and "03_text_training" not in record["notebooks"]

    # 3. resumed, killed while the fusion notebook saves the ensemble (its temporary file exists), or just after
    def saving():
        return (run / "multimodal_ensemble.pt.tmp").exists() or (run / "multimodal_ensemble.pt").exists()

    _kill_when(_study_args(tmp_path, "cut", "--resume"), saving)
    _every_file_is_whole(run)
    assert not (tmp_path / "reports" / "cut").exists()  # no report until the study is whole
    # 4. resumed to the end: the notebooks done before are reused, the numbers equal the uninterrupted run's
    _run(_study_args(tmp_path, "cut", "--resume"), timeout=1800)
    cut = json.loads((tmp_path / "reports" / "cut" / "metrics.json").read_text())
    assert _every_file_is_whole(tmp_path / "reports" / "cut") > 10
    drop = {"study", "params", "config_digest", "total_seconds", "notebook_seconds", "environment"}
    a = _timing_free({k: v for k, v in whole.items() if k not in drop})
    b = _timing_free({k: v for k, v in cut.items() if k not in drop})
    assert json.dumps(a, sort_keys=True).replace("whole", "cut") == json.dumps(b, sort_keys=True)
    assert not (run / "resume").exists() and not staging.exists()
    assert set(cut["notebook_seconds"]) == set(whole["notebook_seconds"])


@pytest.mark.slow
def test_study_without_resume_empties_the_run_folder(tmp_path):
    """A second attempt never mixes with the first: without --resume the run folder starts empty."""
    run = tmp_path / "runs" / "fresh"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "visual_seed9.pt").write_text("left by another attempt")
    args = _study_args(tmp_path, "fresh")
    args[args.index("--quiet") :] = ["--quiet"]
    sets = [*args, "-p", "study.notebooks=[01_data_exploration]"]
    _run(sets)
    assert not (run / "visual_seed9.pt").exists() and (run / "study.json").is_file()


def test_resume_refuses_a_run_of_another_config(tmp_path):
    from dfmm.errors import StudyError
    from dfmm.study.runner import run_study

    overrides = [f"study.runs_dir={tmp_path / 'runs'}", "study.name=r", "study.notebooks=[01_data_exploration]"]
    run_study([DEMO], [*tiny_overrides(48), *overrides], out=str(tmp_path / "rep"), quiet=True)
    with pytest.raises(StudyError, match=r"--resume: .* another config"):
        run_study([DEMO], [*tiny_overrides(40), *overrides], out=str(tmp_path / "rep"), quiet=True, resume=True)


def test_a_folder_that_is_not_a_run_is_never_emptied(tmp_path):
    from dfmm.errors import StudyError
    from dfmm.study.runner import run_study

    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    overrides = [f"study.runs_dir={tmp_path / 'runs'}", "study.name=mine", "study.notebooks=[01_data_exploration]"]
    with pytest.raises(StudyError, match="not a dfmm run"):
        run_study([DEMO], [*tiny_overrides(48), *overrides], out=str(tmp_path / "rep"), quiet=True)
    assert (mine / "notes.txt").read_text() == "keep me"
