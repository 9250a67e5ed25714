"""Where the project is, and how dfmm writes files: whole or not at all, strict JSON, content digests.

Every output a kill could cut in half (metric sections, pages, figures, the study record) goes through
:func:`write_atomic`: a temporary file beside the target, renamed over it once complete.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NOTEBOOK_DIR = "notebooks"
TRAINING_STATES = "resume"  # a run's training states: runs/NAME/resume/BRANCH_RECIPE_seedN.pt
# A run folder's names (runs/NAME/...), read by the trainers, the notebooks, the tests and `load_model`'s examples
BRANCH_CHECKPOINTS = {"visual": "visual_branch.pt", "text": "text_branch.pt"}  # the card's file names
ENSEMBLE_CHECKPOINT = "multimodal_ensemble.pt"  # both branches + the fusion head (notebook 04)
SCORE_CACHE = "cache"  # runs/NAME/cache: tokens and the score cache (dfmm.models.score_cache)
METRICS_DIR = "metrics"  # runs/NAME/metrics/SECTION.json: what each notebook recorded
NOTEBOOK_REPORT = "report"  # runs/NAME/report: a notebook run in JupyterLab writes its figures here


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``params/`` and ``notebooks/`` (notebooks run from ``notebooks/`` in JupyterLab)."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "params").is_dir() and (p / NOTEBOOK_DIR).is_dir():
            return p
    return here


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through ``PATH.tmp`` + rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)
    return path


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_of(parts: Iterable[Any]) -> str:
    """A short hash of values (as JSON): names a run's config, code and data together."""
    blob = json.dumps(list(parts), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_digest() -> str:
    """A hash of the installed dfmm package's source (modules and templates): a resumed run must run the same
    code as the attempt it continues."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(package.rglob("*")):
        if p.is_file() and p.suffix in {".py", ".html", ".j2", ".md", ".css"}:
            h.update(str(p.relative_to(package)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _finite(o: Any) -> Any:
    """``o`` with every NaN or infinity (Python, numpy, inside arrays) replaced by None, so the JSON is valid."""
    import numpy as np

    if isinstance(o, np.ndarray):
        o = o.tolist()
    elif isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def dumps_json(values: Any) -> str:
    """Strict JSON for ``metrics.json`` and its sections: an undefined metric (NaN) is written as null, never as
    the ``NaN`` token other JSON readers reject; its reason stays in the metric dict's ``undefined``."""
    return json.dumps(_finite(values), indent=2, default=_json_default, allow_nan=False)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)  # paths and anything else: their text
