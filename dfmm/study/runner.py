"""The study runner: execute the notebooks in order with papermill, export HTML, assemble the report.

``dfmm study PARAMS...`` resolves the config, checks the data sources before anything is written, then runs
``notebooks/NN_*.ipynb`` in order. Everything of a run lives in its run folder ``runs/NAME``: checkpoints, the
executed notebooks, the metric sections each notebook records (:mod:`dfmm.study.notebook`), the report being built
(``report.partial/``), training states and ``study.json``, the record of each completed notebook. Only a
complete run replaces ``reports/NAME``; a failing notebook stops the study with its name and the cell's error.

Without ``--resume`` a run folder left by another attempt is emptied first, so files of two attempts never mix.
With ``--resume`` the notebooks that completed with the same config, code, data sizes and notebook file are not
rerun (the record names each file they wrote, with its digest, and every one must still be there unchanged);
from the first one that is not, the study runs again, and a training cut short restarts from its last complete
epoch (:func:`dfmm.training.loop.fit`). On CPU the resumed study's numbers equal an uninterrupted one's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from dfmm.config import Config, load_config
from dfmm.errors import DfmmError, StudyError
from dfmm.files import (
    METRICS_DIR,
    NOTEBOOK_DIR,
    TRAINING_STATES,
    code_digest,
    digest_of,
    dumps_json,
    file_digest,
    project_root,
    write_atomic,
)

_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>", re.I)
_CDN_LINK = re.compile(r"<link[^>]*\bhref=[\"']https?://[^\"']*[\"'][^>]*>", re.I)
RECORD = "study.json"
STAGING = "report.partial"


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
    from dfmm.data import cross_images, cross_texts, fake_only_images, image_splits, text_splits, video_source
    from dfmm.data.video import list_videos

    sizes = {
        "images": {k: len(v) for k, v in image_splits(cfg).items()},
        "texts": {k: len(v) for k, v in text_splits(cfg).items()},
        "cross_images": {k: len(v) for k, v in cross_images(cfg).items()},
        "cross_texts": {k: len(v) for k, v in cross_texts(cfg).items()},
        "fake_only_images": {k: len(v) for k, v in fake_only_images(cfg).items()},
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
    return write_atomic(dest, body)


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


KEPT = ("synthetic_data",)  # the demo data dfmm writes into a run folder, keyed by its own spec: not an output


def _empty_run_folder(run_dir: Path) -> None:
    """Start a run folder afresh: the outputs of an earlier dfmm run are removed (never mixed with this
    attempt; the demo data in ``synthetic_data/`` stays); a folder holding anything else is refused."""
    if not run_dir.exists():
        return
    entries = [p for p in run_dir.iterdir() if p.name not in KEPT]
    if entries and not (run_dir / "config.json").is_file():
        raise StudyError(
            f"run folder {run_dir} holds files that are not a dfmm run (no config.json); "
            "move them or name another run with -p study.name=NAME"
        )
    for child in entries:
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".tmp")
    }


def _written(folder: Path, before: dict[str, tuple[int, int]], skip: tuple[str, ...]) -> dict[str, str]:
    """Digest of every file under ``folder`` created or changed since ``before`` (outside ``skip``)."""
    after = _snapshot(folder)
    return {
        rel: file_digest(folder / rel)
        for rel, stat in sorted(after.items())
        if before.get(rel) != stat and not rel.startswith(skip)
    }


def _still_there(folder: Path, outputs: dict[str, str]) -> bool:
    return all((folder / rel).is_file() and file_digest(folder / rel) == digest for rel, digest in outputs.items())


class StudyRecord:
    """``runs/NAME/study.json``: the key of the attempt (config, code, data sizes) and, per completed notebook,
    the digest of its file, its time and the digest of every file it wrote. Written whole after each notebook."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.notebooks: dict[str, dict[str, Any]] = {}

    @classmethod
    def read(cls, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("notebooks"), dict) else None

    def save(self) -> None:
        write_atomic(self.path, json.dumps({"key": self.key, "notebooks": self.notebooks}, indent=2))


def _publish(staging: Path, final: Path) -> None:
    """Put the finished report at ``final`` in one rename (through a hidden copy when it is on another disk);
    the previous report is removed only once the new one is in place."""
    if final.exists() and not final.is_dir():
        raise StudyError(f"--out {final}: is a file, expected a folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    incoming = final.with_name(f".{final.name}.partial")
    shutil.rmtree(incoming, ignore_errors=True)
    try:
        if staging.stat().st_dev == final.parent.stat().st_dev:
            os.replace(staging, incoming)
        else:  # another disk: copy first, so the rename into place below stays one step
            shutil.copytree(staging, incoming)
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(incoming, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def run_study(
    params: list[str],
    overrides: list[str] | None = None,
    out: str | None = None,
    quiet: bool = False,
    resume: bool = False,
) -> Path:
    """Run the whole study (or, with ``resume``, what an interrupted attempt left undone); return the report
    folder.

    The run folder (checkpoints, caches, executed notebooks, the report being built) is always
    ``<study.runs_dir>/<study.name>``; ``out`` only moves the finished report (default
    ``<study.reports_dir>/<study.name>``). Relative paths are taken from the project root.
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
    key = digest_of([cfg.digest(), code_digest(), sizes])
    previous = StudyRecord.read(run_dir / RECORD) if resume else None
    if resume and previous is not None and previous.get("key") != key:
        raise StudyError(
            f"--resume: {run_dir} was started with another config, dfmm code or data (its study.json key "
            f"{previous.get('key')} is not {key}); run without --resume to start over"
        )
    if previous is None:
        _empty_run_folder(run_dir)
    staging = run_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    metrics_dir = run_dir / METRICS_DIR
    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    config_path = cfg.save(run_dir / "config.json")
    cfg.save(staging / "config.json")
    record = StudyRecord(run_dir / RECORD, key)

    started = time.time()
    timings: dict[str, float] = {}
    reused_seconds = 0.0
    reusable = previous is not None
    bar = tqdm(books, desc="study", unit="notebook", disable=quiet)
    for book in bar:
        done = (previous or {}).get("notebooks", {}).get(book.stem)
        reusable = (
            reusable
            and done is not None
            and done.get("notebook") == file_digest(book)
            and _still_there(run_dir, done.get("outputs", {}))
        )
        if reusable:
            bar.set_description(f"study: {book.stem} (done, reused)")
            record.notebooks[book.stem] = done
            timings[book.stem] = done["seconds"]
            reused_seconds += done["seconds"]
            record.save()
            continue
        bar.set_description(f"study: {book.stem}")
        executed = executed_dir / book.name
        before = _snapshot(run_dir)
        t0 = time.perf_counter()
        running = executed.with_name(executed.name + ".tmp")
        try:
            with warnings.catch_warnings():  # papermill warns that NAME.ipynb.tmp does not end in .ipynb
                warnings.filterwarnings("ignore", message="The specified file .* does not end in")
                pm.execute_notebook(
                    str(book),
                    str(running),
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
                f"(executed copy: {running}; after a fix, add --resume to keep the notebooks before it)"
            ) from None
        running.replace(executed)
        timings[book.stem] = round(time.perf_counter() - t0, 1)
        export_html(executed, staging / f"{book.stem}.html")
        outputs = _written(run_dir, before, skip=(TRAINING_STATES + "/", RECORD))
        record.notebooks[book.stem] = {"notebook": file_digest(book), "seconds": timings[book.stem], "outputs": outputs}
        record.save()
    metrics = merge_metrics(cfg, metrics_dir, sizes, timings, time.time() - started + reused_seconds)
    from dfmm.study.sections import check_sections

    check_sections(metrics, [b.stem for b in books])
    from dfmm.study.report import seed_means, write_data_card, write_index
    from dfmm.study.targets import check_targets

    metrics["targets"] = check_targets(cfg, metrics)
    metrics["seed_means"] = seed_means(metrics)  # the headline table's derived rows, kept with their sources
    write_atomic(staging / "metrics.json", dumps_json(metrics))
    write_data_card(cfg, metrics, staging / "DATA_CARD.md")
    write_index(cfg, metrics, [b.stem for b in books], staging / "index.html", published=final)
    _publish(staging, final)
    shutil.rmtree(run_dir / TRAINING_STATES, ignore_errors=True)  # the study is whole: no training to resume
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


__all__ = ["DfmmError", "StudyRecord", "export_html", "run_study"]
