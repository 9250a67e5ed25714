"""Project rules: clean notebooks with a parameters cell, environment.yml agrees with requirements.txt."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_card_s_six_ordered_notebooks_then_generalization():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]
    assert NOTEBOOKS[-1].name == "07_generalization.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_clean_with_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "commit notebooks without outputs"
    )
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "config_path" in "".join(tagged[0]["source"])
    # thin over dfmm: the first call after the parameters is the shared setup
    assert "notebook_setup(config_path, params, report_dir)" in "".join(code[1]["source"])


def _pins(text):
    out = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==")
            out[name.lower().replace("_", "-")] = ver
    return out


def test_environment_yml_agrees_with_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = _pins((ROOT / "requirements.txt").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements.txt" in pip and "-e ." in pip
    py = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    assert py == "python=3.11"
    for d in deps:  # anything conda pins itself must match the pip pin
        if isinstance(d, str) and "=" in d and not d.startswith("python="):
            name, ver = re.split(r"=+", d, maxsplit=1)
            assert pins.get(name.lower()) == ver, f"environment.yml pins {d}, requirements.txt {pins.get(name.lower())}"
    for must in (
        "torch",
        "torchvision",
        "timm",
        "transformers",
        "datasets",
        "grad-cam",
        "papermill",
        "nbconvert",
        "jupyterlab",
        "ipykernel",
        "scikit-learn",
        "matplotlib",
        "seaborn",
        "tqdm",
        "accelerate",
        "av",
    ):
        assert must in pins, f"{must} is not pinned in requirements.txt"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_pyproject_ranges_admit_the_pins():
    import tomllib
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _pins((ROOT / "requirements.txt").read_text())
    for d in deps:
        req = Requirement(d)
        name = req.name.lower().replace("_", "-")
        if name in pins:
            assert req.specifier.contains(pins[name]), f"{d} excludes the pinned {pins[name]}"


def test_setup_installs_the_no_deps_requirements_without_their_dependencies():
    make = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --no-deps -r requirements-nodeps.txt" in make
    assert "$(STAMP): requirements.txt requirements-nodeps.txt" in make  # a changed pin reinstalls
    nodeps = _pins((ROOT / "requirements-nodeps.txt").read_text())
    assert nodeps.get("facenet-pytorch") == "2.6.0"
    assert not set(nodeps) & set(_pins((ROOT / "requirements.txt").read_text()))
