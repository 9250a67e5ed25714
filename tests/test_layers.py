"""The folders are the architecture: each layer of ``dfmm`` imports only the layers below it (read from the source,
function-level imports included), so a newcomer can trust the tree in the README's Layout section."""

from __future__ import annotations

import ast

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "dfmm"
# Lowest first. Training and serving are siblings over models: neither imports the other (serving ships without
# training code); analysis builds on serving (robustness scores a model), the study on everything, the CLI on top.
LAYERS = {
    "foundation": 0,  # config, choices, errors, files, metrics (statistics)
    "data": 1,
    "models": 2,
    "training": 3,
    "serving": 3,
    "analysis": 4,
    "study": 5,
    "cli": 6,
    "api": 6,  # dfmm/__init__.py: load_model and classify_* from serving, loaded on first use
}
FOUNDATION = {"config", "params_yaml", "choices", "errors", "files", "metrics"}


def _layer(module: str) -> str:
    """``dfmm.serving.inference`` -> ``serving``; a top-level foundation module -> ``foundation``."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    return "foundation" if head in FOUNDATION else "api" if head == "__init__" else head


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "dfmm" or m.startswith("dfmm.")}


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _module(path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_layer_imports_only_layers_below_it(path):
    me = _module(path)
    mine = _layer(me)
    assert mine in LAYERS, f"{me}: {mine} is no layer of {sorted(LAYERS)}"
    for other in _imports(path):
        theirs = _layer(other)
        if other == "dfmm" or theirs == mine:
            continue  # ``dfmm.__version__``, and imports within a layer
        assert theirs in LAYERS, f"{me} imports {other}: no such layer"
        assert LAYERS[theirs] < LAYERS[mine], f"{me} ({mine}) imports {other} ({theirs}), a layer not below it"


def test_the_public_api_is_the_serving_layer():
    """``from dfmm import load_model, classify_*`` resolves to the serving layer (lazily: ``import dfmm`` is light)."""
    import dfmm
    from dfmm.serving import inference

    assert all(getattr(dfmm, name) is getattr(inference, name) for name in dfmm.__all__)
