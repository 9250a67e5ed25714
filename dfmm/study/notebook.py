"""What a notebook sees: its config, where its report and figures go, and how it records its numbers.

Every notebook starts with ``ctx = notebook_setup(config_path, params, report_dir)``. Under ``dfmm study`` the
runner (:mod:`dfmm.study.runner`) injects the resolved config's path and the staging report folder; in JupyterLab the
notebook loads ``params`` itself and writes its figures under ``runs/NAME/report`` (never into a committed report:
``dfmm study`` alone writes ``reports/NAME``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfmm.config import Config, load_config, load_resolved
from dfmm.files import METRICS_DIR, NOTEBOOK_REPORT, dumps_json, project_root, write_atomic


@dataclass
class NotebookContext:
    cfg: Config
    report_dir: Path
    metrics_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def figures(self) -> Path:
        return self.report_dir / "figures"

    def record(self, section: str, values: dict[str, Any]) -> Path:
        """Add this notebook's numbers to the report's ``metrics.json`` (under ``section``), after checking them
        against the section's contract (:mod:`dfmm.study.sections`): a malformed section fails here, in its cell."""
        import json

        from dfmm.study.sections import check_section

        text = dumps_json(values)
        check_section(section, json.loads(text))  # as it will be read back: numpy values are plain JSON by then
        return write_atomic(self.metrics_dir / f"{section}.json", text)

    def read(self, section: str) -> dict[str, Any] | None:
        """The metrics ``section`` an earlier notebook of this run recorded, or None if it has not run."""
        import json

        path = self.metrics_dir / f"{section}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_fig(self, fig: Any, name: str) -> None:
        """Save ``figures/NAME.png`` and show that same PNG in the notebook, so the exported page has every figure
        the report has (embedded, the page stays standalone); then close the figure so that the inline backend
        does not draw it a second time. Returns nothing: a cell that ends with it shows the figure, not a path."""
        import matplotlib.pyplot as plt

        from dfmm.analysis.plots import save_figure

        path = save_figure(fig, self.figures / f"{name}.png")
        plt.close(fig)
        _show_png(path)


def _show_png(path: Path) -> None:
    """Display a PNG as a notebook output (inside a Jupyter kernel only; a script or a test shows nothing)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    from IPython.display import Image, display

    display(Image(filename=str(path)))


_QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _short_file(filename: str) -> str:
    """A warning's file without the machine's folders: relative to the longest ``sys.path`` entry holding it."""
    import sys

    path = os.path.abspath(filename)
    for base in sorted((os.path.abspath(p) for p in sys.path if p), key=len, reverse=True):
        if path.startswith(base + os.sep):
            return os.path.relpath(path, base)
    return os.path.basename(path)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    import sys

    (file or sys.stderr).write(f"{category.__name__}: {message} ({_short_file(filename)}:{lineno})\n")


def _quiet_notebook(under_study: bool) -> None:
    """Keep library noise out of the exported pages: no deprecation or future-change warnings (they ask for an
    API or version update, they say nothing about the results; the test suite still sees them), no tqdm
    "IProgress not found" (tqdm.auto falls back to the text bar), any other warning printed without the machine's
    paths, and under ``dfmm study`` no Hugging Face progress bars."""
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")
    for category in _QUIET_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    warnings.showwarning = _show_warning
    if under_study:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
        import sys

        if "transformers" in sys.modules:  # imported before this call: switch its bars off directly
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def notebook_setup(
    config_path: str | None = None,
    params: list[str] | tuple[str, ...] = ("params/demo.yaml",),
    report_dir: str | None = None,
) -> NotebookContext:
    """First call of every notebook. Under ``dfmm study`` it reads the resolved config; in JupyterLab it loads
    ``params`` itself (relative to the project root) and writes its figures under ``runs/NAME/report``, so that a
    session in JupyterLab never changes a committed report (``report_dir`` chooses another folder)."""
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in str(matplotlib.get_backend()):
        matplotlib.use("Agg")
    os.chdir(project_root())
    _quiet_notebook(under_study=config_path is not None)
    cfg = load_resolved(config_path) if config_path else load_config(list(params))
    rdir = Path(report_dir) if report_dir else cfg.run_dir / NOTEBOOK_REPORT
    rdir.mkdir(parents=True, exist_ok=True)
    return NotebookContext(cfg, rdir, cfg.run_dir / METRICS_DIR)


__all__ = ["NotebookContext", "notebook_setup"]
