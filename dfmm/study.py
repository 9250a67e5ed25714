"""The study runner: execute the notebooks in order with papermill, export HTML, assemble the report.

``dfmm study PARAMS...`` resolves the config, checks the data sources before anything is written, then runs
``notebooks/NN_*.ipynb`` in order into a staging folder. Each notebook records its numbers with
:meth:`NotebookContext.record`; the runner merges them into ``metrics.json`` and writes ``index.html`` and
``DATA_CARD.md``. Only a complete run replaces ``reports/NAME``: a failing notebook stops the study with its
name and the cell's error, and the previous report stays as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfmm.config import Config, load_config, load_resolved
from dfmm.errors import DfmmError, StudyError

NOTEBOOK_DIR = "notebooks"
_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>", re.I)
_CDN_LINK = re.compile(r"<link[^>]*\bhref=[\"']https?://[^\"']*[\"'][^>]*>", re.I)


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``params/`` and ``notebooks/`` (notebooks run from ``notebooks/`` in JupyterLab)."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "params").is_dir() and (p / NOTEBOOK_DIR).is_dir():
            return p
    return here


# ------------------------------------------------------------------------------------------- in notebooks
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
        """Add this notebook's numbers to the report's ``metrics.json`` (under ``section``)."""
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        path = self.metrics_dir / f"{section}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(dumps_json(values))
        tmp.replace(path)
        return path

    def save_fig(self, fig: Any, name: str) -> None:
        """Save ``figures/NAME.png`` and show that same PNG in the notebook, so the exported page has every figure
        the report has (embedded, the page stays standalone); then close the figure so that the inline backend
        does not draw it a second time. Returns nothing: a cell that ends with it shows the figure, not a path."""
        import matplotlib.pyplot as plt

        from dfmm.metrics import save_figure

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
    if isinstance(o, Path):
        return str(o)
    return str(o)


def notebook_setup(
    config_path: str | None = None,
    params: list[str] | tuple[str, ...] = ("params/demo.yaml",),
    report_dir: str | None = None,
) -> NotebookContext:
    """First call of every notebook. Under ``dfmm study`` it reads the resolved config; in JupyterLab it loads
    ``params`` itself (relative to the project root) and writes straight into ``reports/NAME``."""
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in str(matplotlib.get_backend()):
        matplotlib.use("Agg")
    os.chdir(project_root())
    _quiet_notebook(under_study=config_path is not None)
    cfg = load_resolved(config_path) if config_path else load_config(list(params))
    rdir = Path(report_dir) if report_dir else cfg.report_dir
    rdir.mkdir(parents=True, exist_ok=True)
    return NotebookContext(cfg, rdir, cfg.run_dir / "metrics")


# ------------------------------------------------------------------------------------------------ runner
def list_notebooks(root: Path, only: list[str] | None = None) -> list[Path]:
    books = sorted((root / NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(o) or b.stem == o for o in only)]
    if not books:
        raise StudyError(f"no notebooks to run under {root / NOTEBOOK_DIR}")
    return books


def preflight(cfg: Config) -> dict[str, Any]:
    """Read every data source once so a missing folder, empty class or unreachable Hub fails before any
    output is written."""
    from dfmm.data import cross_images, cross_texts, image_splits, text_splits, video_source
    from dfmm.data.video import list_videos

    sizes = {
        "images": {k: len(v) for k, v in image_splits(cfg).items()},
        "texts": {k: len(v) for k, v in text_splits(cfg).items()},
        "cross_images": {k: len(v) for k, v in cross_images(cfg).items()},
        "cross_texts": {k: len(v) for k, v in cross_texts(cfg).items()},
    }
    vs = video_source(cfg)
    sizes["videos"] = len(list_videos(vs)) if vs else 0
    return sizes


def export_html(executed: Path, dest: Path) -> Path:
    """Executed notebook -> standalone HTML with no script or stylesheet loaded from the network."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb)
    body = _CDN_SCRIPT.sub("", body)
    body = _CDN_LINK.sub("", body)
    dest.write_text(body, encoding="utf-8")
    return dest


def papermill_parameters(config_path: Path, report_dir: Path, root: Path) -> dict[str, str]:
    """The values papermill injects into each notebook's parameters cell: paths relative to the project root,
    where the kernel runs (``cwd`` and ``notebook_setup``), so that no page shows the machine's folders."""
    return {"config_path": os.path.relpath(config_path, root), "report_dir": os.path.relpath(report_dir, root)}


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return "dfmm" if "dfmm" in specs else "python3"


def _kernel_config() -> Any:
    """Kernel sockets as IPC files in Jupyter's private runtime folder on POSIX; TCP (localhost) elsewhere.

    Over TCP, ipykernel >= 7 warns once per notebook that the traffic is unencrypted, noise in every study log.
    """
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc"}}) if os.name == "posix" else Config()


def _check_report_folder(final: Path, root: Path) -> None:
    """A finished study replaces its report folder: never let that be the project, a parent of it, or a folder
    that holds something other than a dfmm report."""
    final = final.resolve()
    if final == root.resolve() or final in root.resolve().parents or final == Path(final.anchor):
        raise StudyError(f"--out {final}: would replace the project or a folder above it; give a report folder")
    if final.is_file():
        raise StudyError(f"--out {final}: is a file, expected a folder")
    if final.is_dir() and any(final.iterdir()) and not (final / "metrics.json").is_file():
        raise StudyError(f"--out {final}: exists and is not a dfmm report (no metrics.json); it would be replaced")


def run_study(
    params: list[str], overrides: list[str] | None = None, out: str | None = None, quiet: bool = False
) -> Path:
    """Run the whole study; return the report folder.

    The run folder (checkpoints, caches, executed notebooks) is always ``<study.runs_dir>/<study.name>``;
    ``out`` only moves the report (default ``<study.reports_dir>/<study.name>``), so two ``--out`` folders with
    the same base name never share a run folder. Relative paths are taken from the project root.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    from tqdm import tqdm

    root = project_root()
    cfg = load_config(params, list(overrides or []))
    report = Path(out) if out else cfg.report_dir
    final = (root / report).resolve() if not report.is_absolute() else report
    if out:
        _check_report_folder(final, root)
    books = list_notebooks(root, cfg.study.notebooks or None)
    sizes = preflight(cfg)

    run_dir = (root / cfg.run_dir).resolve() if not cfg.run_dir.is_absolute() else cfg.run_dir
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    metrics_dir = run_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    config_path = cfg.save(run_dir / "config.json")
    cfg.save(staging / "config.json")

    started = time.time()
    timings: dict[str, float] = {}
    bar = tqdm(books, desc="study", unit="notebook", disable=quiet)
    try:
        for book in bar:
            bar.set_description(f"study: {book.stem}")
            executed = executed_dir / book.name
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(book),
                    str(executed),
                    parameters=papermill_parameters(config_path, staging, root),
                    kernel_name=_kernel_name(),
                    cwd=str(root),
                    progress_bar=not quiet,
                    log_output=False,
                    request_save_on_cell_execute=False,
                    config=_kernel_config(),
                )
            except PapermillExecutionError as e:
                evalue = " ".join(str(e.evalue).split())[:300]
                raise StudyError(
                    f"notebook {book.name} failed in cell {e.exec_count}: {e.ename}: {evalue} "
                    f"(executed copy: {executed})"
                ) from None
            timings[book.stem] = round(time.perf_counter() - t0, 1)
            export_html(executed, staging / f"{book.stem}.html")
        metrics = merge_metrics(cfg, metrics_dir, sizes, timings, time.time() - started)
        from dfmm.report import seed_means, write_data_card, write_index
        from dfmm.targets import check_targets

        metrics["targets"] = check_targets(cfg, metrics)
        metrics["seed_means"] = seed_means(metrics)  # the headline table's derived rows, kept with their sources
        (staging / "metrics.json").write_text(dumps_json(metrics))
        write_data_card(cfg, metrics, staging / "DATA_CARD.md")
        write_index(cfg, metrics, [b.stem for b in books], staging / "index.html")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    staging.replace(final)
    return final


def merge_metrics(
    cfg: Config, metrics_dir: Path, sizes: dict[str, Any], timings: dict[str, float], seconds: float
) -> dict[str, Any]:
    import platform

    import torch

    from dfmm import __version__
    from dfmm.data import is_synthetic

    sections = {p.stem: json.loads(p.read_text()) for p in sorted(metrics_dir.glob("*.json"))}
    return {
        "study": cfg.study.name,
        "budget": cfg.study.budget,
        "synthetic_demo_data": is_synthetic(cfg),
        "config_digest": cfg.digest(),
        "params": cfg.sources,
        "data_sizes": sizes,
        "environment": {
            "dfmm": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": "cuda: " + torch.cuda.get_device_name(0)
            if torch.cuda.is_available()
            else f"cpu ({os.cpu_count()} cores)",
            "cpu": _cpu_model(),
            "platform": platform.platform(),
        },
        "notebook_seconds": timings,
        "total_seconds": round(seconds, 1),
        **sections,
    }


def _cpu_model() -> str:
    """The CPU's model name (Linux): CPU results are bit-identical on one CPU model, not across models (the kernels
    PyTorch picks differ), so a report names the one it ran on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


__all__ = ["DfmmError", "NotebookContext", "export_html", "notebook_setup", "project_root", "run_study"]
