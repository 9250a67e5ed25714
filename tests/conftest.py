"""Shared fixtures: real data from ../shared/data when present, tiny trained checkpoints made in code."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("MPLBACKEND", "Agg")
# the Arrow cache of data sources (dfmm.data.arrow): one per test process, not the user's ~/.cache/dfmm. Under
# pytest-xdist (`make test` runs two workers) each worker makes its own instead of sharing its parent's; a
# DFMM_CACHE_DIR the user set is kept.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if "DFMM_CACHE_DIR" not in os.environ or os.environ.get("DFMM_TEST_CACHE_OF") not in (None, _WORKER):
    os.environ["DFMM_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"dfmm-test-cache-{_WORKER}-")
    os.environ["DFMM_TEST_CACHE_OF"] = _WORKER
    atexit.register(shutil.rmtree, os.environ["DFMM_CACHE_DIR"], True)
if "PYTEST_XDIST_WORKER" in os.environ:  # one worker per core: one compute thread each (and in its subprocesses)
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"


# The test modules that start Jupyter kernels (studies, papermill) or read the session's tiny study: under
# pytest-xdist (`make test` runs two workers) they all run in one worker, so that the tiny study runs once and no two
# kernels start together (two at once can take the same ports: "Invalid Signature", "Kernel didn't respond").
KERNEL_MODULES = {"test_study", "test_resume", "test_browser", "test_publishing"}


@pytest.hookimpl(optionalhook=True)  # pytest without xdist (-p no:xdist) knows no such hook
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scope scheduling with one scope for the kernel modules and one per test elsewhere. (Its own
    ``--dist loadgroup`` marks groups by rewriting ``item._nodeid``, which pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class KernelsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "kernels" if Path(nodeid.split("::", 1)[0]).stem in KERNEL_MODULES else nodeid

    return KernelsTogether(config, log)


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not present: {p} (../shared/data is laid beside the checkout for developers and CI)")
    return p


def tiny_overrides(n: int = 48) -> list[str]:
    """The demo params shrunk to seconds: ``n`` synthetic 64 px faces and texts, 2 clips, one epoch."""
    return [
        f"data.synthetic_images={n}",
        f"data.synthetic_texts={n}",
        "data.synthetic_videos=2",
        "data.synthetic_image_size=64",
        "visual.image_size=64",
        "visual.epochs=1",
        "text.epochs=1",
        "text.max_length=64",
        "video.num_frames=4",
    ]


# How the tests run a study or a training as a process: one thread (the resumed and the uninterrupted runs of
# tests/test_resume.py must agree number for number) and a fixed hash seed.
PROCESS_ENV = {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}

# The one tiny study of the test session (tests/test_study.py, test_browser.py, test_resume.py share it).
STUDY_TINY = [*tiny_overrides(48), "visual.epochs=2", "text.epochs=2", "fusion.epochs=10", "visual.gradcam_examples=2"]


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The whole study on tiny synthetic data, run once per session: ``.report`` (the report folder), ``.runs``
    (``runs_dir``: its run folder is ``runs/whole``), ``.tmp`` (their parent), ``.overrides`` (what made it)."""
    import subprocess
    import sys
    from types import SimpleNamespace

    tmp = tmp_path_factory.mktemp("study")
    overrides = [*STUDY_TINY, f"study.runs_dir={tmp / 'runs'}", "study.name=whole"]
    report = tmp / "reports" / "whole"
    # a fresh process, as `dfmm study` runs: the resume test compares a killed-and-resumed run with it number for
    # number, and a study run inside this session would inherit what earlier tests left in torch's global state
    sets = [x for o in overrides for x in ("-p", o)]
    argv = [sys.executable, "-m", "dfmm.cli", "study", str(ROOT / "params" / "demo.yaml"), *sets]
    env = {**os.environ, **PROCESS_ENV}
    r = subprocess.run([*argv, "--out", str(report), "--quiet"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return SimpleNamespace(report=report, runs=tmp / "runs", tmp=tmp, overrides=overrides)


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    from dfmm.config import load_config

    tmp = tmp_path_factory.mktemp("tiny")
    runs = ["study.name=tiny", f"study.runs_dir={tmp / 'runs'}", f"study.reports_dir={tmp / 'reports'}"]
    return load_config([ROOT / "params" / "demo.yaml"], runs + tiny_overrides())


@pytest.fixture(scope="session")
def tiny_models(tiny_cfg):
    """Visual, text and ensemble checkpoints trained on the tiny synthetic data (about 30 s on 2 cores)."""
    from dfmm.data import image_splits, text_splits
    from dfmm.models import FusionEnsemble
    from dfmm.serving.evaluate import score_branch
    from dfmm.serving.inference import load_model
    from dfmm.training.experiments import promote, train_text, train_visual
    from dfmm.training.fusion import BranchOutputs, pair_outputs, save_ensemble, train_fusion
    from dfmm.training.reference import fit_ood_reference

    cfg = tiny_cfg
    vrun = train_visual(cfg, "improved", image_splits(cfg))
    trun = train_text(cfg, "improved", text_splits(cfg))
    # promoted as the study promotes: with the out-of-distribution reference of each branch
    vpath = promote(vrun, cfg.checkpoint("visual"), fit_ood_reference(cfg, "visual", image_splits(cfg)))
    tpath = promote(trun, cfg.checkpoint("text"), fit_ood_reference(cfg, "text", text_splits(cfg)))
    vis, _ = load_model(vpath)
    txt, _ = load_model(tpath)
    # the pairs as notebook 04 builds them: each branch's validation outputs through the one scoring path
    visual = BranchOutputs.of(score_branch(vis, "visual", image_splits(cfg)["val"], 8, features=True))
    text = BranchOutputs.of(score_branch(txt, "text", text_splits(cfg)["val"], 8, features=True))
    pairs = pair_outputs(visual, text, seed=0, rule="either")
    fusion = FusionEnsemble(pairs.visual_features.shape[1], pairs.text_features.shape[1], attention=True)
    train_fusion(fusion, pairs, epochs=20, lr=0.05, seed=0)
    dims = {"visual_dim": int(pairs.visual_features.shape[1]), "text_dim": int(pairs.text_features.shape[1])}
    meta = {"attention": True, **dims, "pair_rule": "either"}
    epath = save_ensemble(cfg.checkpoint("ensemble"), vpath, tpath, fusion, meta, cfg)
    return {"visual": vpath, "text": tpath, "ensemble": epath, "cfg": cfg}
