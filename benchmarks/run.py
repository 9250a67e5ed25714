"""Every benchmark in one command: each script as a subprocess, one table, one JSON file with the machine.

    python benchmarks/run.py [--size small|full] [--only augment_cost,bootstrap_cost] [--model ENSEMBLE.pt] \
        [--visual-model VISUAL.pt] [--images DIR] [--texts FILE] [--video CLIP] [--out FILE] [--strict]
    make bench [BENCH_ARGS="--size small"]

Runs visual_throughput, text_throughput, inference_latency, score_throughput, bootstrap_cost, augment_cost,
decoded_cache, cpu_paths, tta_views, refusal_cost and serving (``recipe_sweep.py`` trains models: run it on its own). ``--size full`` (the default)
uses the sizes in each script's docstring (the GPU ones for the training loops when CUDA is available);
``--size small`` shrinks every script to seconds, for a smoke run, and leaves out the video timings. Prints one
Markdown table (benchmark, figure, ours, plain/anchor, ratio, target) and writes
``benchmarks/results/<machine>-<date>/bench.json`` (or ``--out``): the machine (CPU model, cores, RAM, GPU,
package versions, git commit), each script's command, seconds and parsed output, and the table's rows.

A script whose input is missing (a checkpoint, a data folder) is reported as ``skipped: <reason>``, one that exits
non-zero or prints no result as ``failed: <its error line>``; the others still run, and the exit status is 0
unless ``--strict`` (then 1 when any benchmark was skipped or failed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # as dfmm.data.images
COLUMNS = ("benchmark", "figure", "ours", "plain/anchor", "ratio", "target")

DEFAULTS = {
    "model": "runs/compact/multimodal_ensemble.pt",
    "visual_model": "runs/compact/visual_branch.pt",
    "images": "../shared/data/faces/dfdc",
    "texts": "../shared/data/text/l2r_rewrites/data.jsonl",
    "video": "../shared/data/videos/fake/004_982.mp4",
    "params": "params/compact.yaml,params/sources/local.yaml",
}


class Skip(Exception):
    """An input the benchmark needs is missing: reported as ``skipped: <reason>``."""


@dataclass
class Inputs:
    size: str
    model: Path
    visual_model: Path
    images: Path
    texts: Path
    video: Path
    params: list[Path]
    cuda: bool = False
    cpus: int = 1
    tmp: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))

    @property
    def small(self) -> bool:
        return self.size == "small"


def _need(path: Path, what: str, flag: str) -> str:
    if not path.exists():
        raise Skip(f"no {what} at {_show(path)} (give {flag})")
    return str(path)


def _need_images(inp: Inputs) -> str:
    folder = _need(inp.images, "image folder", "--images")
    for sub in ("real", "fake"):
        if not (inp.images / sub).is_dir():
            raise Skip(f"no {sub}/ folder under {_show(inp.images)} (give --images)")
    return folder


def _first_image(folder: Path) -> Path:
    for sub in ("real", "fake", "."):
        found = sorted(p for p in (folder / sub).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if found:
            return found[0]
    raise Skip(f"no images under {_show(folder)} (give --images)")


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path, ROOT)
    except ValueError:  # another drive
        return str(path)


# ------------------------------------------------------------------ each benchmark: arguments, output, rows


def _row(figure: str, ours: Any, anchor: Any, ratio: Any, target: str = "-") -> dict[str, Any]:
    return {"figure": figure, "ours": ours, "anchor": anchor, "ratio": ratio, "target": target}


def _ratio(a: Any, b: Any) -> float | None:
    try:
        return round(float(a) / float(b), 3) if float(b) else None
    except (TypeError, ValueError):
        return None


def visual_throughput_args(inp: Inputs) -> list[str]:
    images = _need_images(inp)
    if inp.small:
        return ["--images", images, "--batch", "8", "--steps", "2", "--size", "128"]
    if inp.cuda:
        workers = str(min(12, inp.cpus))
        return ["--images", images, "--batch", "256", "--steps", "30", "--workers", workers, "--plain-images", "1024"]
    return ["--images", images, "--batch", "32", "--steps", "8"]


def visual_throughput_rows(out: dict, inp: Inputs) -> list[dict]:
    figure = f"train img/s, our JPEG loop / plain tensors (batch {out.get('batch')}, {out.get('arch')})"
    return [_row(figure, out["ours_img_s"], out["plain_img_s"], out["ratio"], ">= 0.9")]


def text_throughput_args(inp: Inputs) -> list[str]:
    texts = _need(inp.texts, "text file", "--texts")
    if inp.small:
        return ["--texts", texts, "--n", "16", "--batch", "8", "--max-length", "256"]
    return ["--texts", texts, "--n", "4096" if inp.cuda else "160", "--batch", "16"]


def text_throughput_rows(out: dict, inp: Inputs) -> list[dict]:
    figure = f"train samples/s, length buckets / pad to {out.get('max_length')} (n {out.get('n')})"
    return [_row(figure, out["ours_bucketed_samples_s"], out["fixed_samples_s"], out["ratio"], ">= 3")]


def inference_latency_args(inp: Inputs) -> list[str]:
    model = _need(inp.model, "model checkpoint", "--model")
    image = _first_image(Path(_need_images(inp)))
    args = ["--model", model, "--image", str(image), "--repeats", "3" if inp.small else "30"]
    if not inp.small and inp.video.exists():
        args += ["--video", str(inp.video)]
    return args


LATENCY_BUDGETS_MS = {  # the docstring's targets on a 2-core CPU
    "classify_image": 60,
    "classify_image_gradcam": 250,
    "classify_text": 40,
    "classify_video_32_face_crops": 4000,
    "classify_video_32_whole_frames": 3000,
}


def inference_latency_rows(out: dict, inp: Inputs) -> list[dict]:
    rows = []
    g = out.get("gradcam_one_image")
    if g:
        figure = "GradCAM one image p50 ms, ours (anchor: grad-cam package; ratio anchor/ours)"
        rows.append(_row(figure, g["ours"]["p50_ms"], g["plain_grad_cam"]["p50_ms"], g["plain_over_ours_p50"],
                         "ours < 150 ms"))  # fmt: skip
    for key, budget in LATENCY_BUDGETS_MS.items():
        if key in out:
            p50 = out[key]["p50_ms"]
            rows.append(_row(f"{key} p50 ms (anchor: budget; ratio ours/budget)", p50, budget, _ratio(p50, budget),
                             f"<= {budget} ms"))  # fmt: skip
    if "classify_video_32_face_crops" not in out:
        why = "--size small (5 timed calls of seconds each)" if inp.small else f"no video at {_show(inp.video)}"
        rows.append(_row(f"classify_video 32 frames: skipped: {why}", None, None, None, "<= 4000 ms"))
    return rows


def score_throughput_args(inp: Inputs) -> list[str]:
    model = _need(inp.visual_model, "visual checkpoint", "--visual-model")
    images = _need_images(inp)
    size = ["--limit", "48", "--batch-size", "16"] if inp.small else ["--limit", "2000", "--batch-size", "64"]
    return ["--model", model, "--images", images, *size]


def score_throughput_rows(out: dict, inp: Inputs) -> list[dict]:
    figure = f"dfmm score img/s (anchor: forward only; {out.get('backbone')}, tta {out.get('tta')})"
    target = f">= {out.get('target_images_per_s', 60)} img/s"
    return [_row(figure, out["score_images_per_s"], out["forward_only_images_per_s"], out["score_over_forward"],
                 target)]  # fmt: skip


def bootstrap_cost_args(inp: Inputs) -> list[str]:
    return ["--resamples", "50", "--repeats", "1"] if inp.small else ["--resamples", "1000", "--repeats", "5"]


_SECONDS = re.compile(r"^\s{2}(?P<name>\S.*?)\s+(?P<s>[\d.]+) s\b")


def bootstrap_cost_parse(stdout: str) -> dict:
    """The script prints text: seconds per line under ``n=...:`` headers, then the report estimate."""
    out: dict[str, Any] = {}
    current: dict[str, float] | None = None
    for line in stdout.splitlines():
        if m := re.match(r"^bootstrap cost, (\d+) resamples", line):
            out["resamples"] = int(m.group(1))
        elif m := re.match(r"^n=(\d+):", line):
            current = out.setdefault(f"n={m.group(1)}", {})
        elif (m := _SECONDS.match(line)) and current is not None:
            current[m.group("name")] = float(m.group("s"))
        elif m := re.match(r"^report estimate: (\d+) rows .* = \d+ x ([\d.]+) s = ([\d.]+) s", line):
            out["report_rows"], out["metrics_with_ci_s"], out["report_estimate_s"] = (
                int(m.group(1)), float(m.group(2)), float(m.group(3)))  # fmt: skip
    if not any(k.startswith("n=") for k in out):
        raise ValueError("no timings in the output")
    return out


def bootstrap_cost_rows(out: dict, inp: Inputs) -> list[dict]:
    rows = []
    for key, t in out.items():
        if key.startswith("n=") and isinstance(t, dict):
            boot = t.get("bootstrap_ci (4 metrics, items)")
            loop = t.get("sklearn loop, AUC only (scaled)")
            figure = f"bootstrap_ci s, {key}, {out.get('resamples')} resamples (anchor: sklearn loop, AUC only)"
            rows.append(_row(figure, boot, loop, _ratio(loop, boot)))
    return rows


def augment_cost_args(inp: Inputs) -> list[str]:
    images = _need_images(inp)
    return ["--images", images, *(["--n", "8", "--rounds", "2"] if inp.small else ["--n", "200", "--rounds", "5"])]


def augment_cost_rows(out: dict, inp: Inputs) -> list[dict]:
    tv = "card (torchvision ColorJitter)"
    return [
        _row("decode + card augment ms/image, 1 thread (anchor: torchvision ColorJitter)",
             out["card"]["ms_per_image"], out[tv]["ms_per_image"], out["card_speedup"]),
        _row("colour jitter ms/image, 1 thread (anchor: torchvision)",
             out["color_jitter_ms"]["ours"], out["color_jitter_ms"]["torchvision"], out["color_jitter_speedup"]),
    ]  # fmt: skip


def decoded_cache_args(inp: Inputs) -> list[str]:
    images = _need_images(inp)
    if inp.small:
        return ["--images", images, "--limit", "32", "--size", "64", "--steps", "1"]
    if inp.cuda:
        return ["--images", images, "--limit", "2000", "--workers", str(min(12, inp.cpus))]
    return ["--images", images, "--limit", "2000"]


def decoded_cache_rows(out: dict, inp: Inputs) -> list[dict]:
    n, size = out.get("images"), out.get("size")
    return [
        _row(f"train loader img/s from the decoded cache (anchor: training img/s, batch {out.get('train_batch')}; "
             f"{n} images at {size} px)", out["cache_loader_img_s"], out["train_img_s"], out["cache_over_training"],
             ">= 10"),
        _row(f"train loader img/s, decoded cache / JPEG files (build {out.get('build_img_s')} img/s)",
             out["cache_loader_img_s"], out["files_loader_img_s"], out["cache_over_files"]),
    ]  # fmt: skip


def cpu_paths_args(inp: Inputs) -> list[str]:
    if inp.small:
        return ["--rounds", "1", "--seconds", "0.3", "--size", "64"]
    return []


def cpu_paths_rows(out: dict, inp: Inputs) -> list[dict]:
    e, t, v = out["eval_batch"], out["fused_adamw_text"], out["fused_adamw_visual"]
    small, large = e["batches"]
    return [
        _row(f"CPU scoring img/s at batch {small} (anchor: batch {large}; {e['backbone']}, {e['size']} px, "
             f"median of {out['rounds']} alternating rounds)", e["img_s"][0], e["img_s"][1], e["ratio"]),
        _row(f"CPU AdamW step ms, text branch ({t['parameters'] / 1e6:.1f}M params): default loop / fused",
             t["ms_per_step"][1], t["ms_per_step"][0], t["speedup"]),
        _row(f"CPU AdamW step ms, visual branch ({v['parameters'] / 1e6:.1f}M params): default loop / fused",
             v["ms_per_step"][1], v["ms_per_step"][0], v["speedup"]),
    ]  # fmt: skip


def refusal_cost_args(inp: Inputs) -> list[str]:
    return ["--repeats", "2" if inp.small else "5"]


def refusal_cost_rows(out: dict, inp: Inputs) -> list[dict]:
    return [
        _row(f"s from `dfmm` to its error for a refused input, slowest of {len(out['seconds'])} cases "
             f"({out['slowest']}; anchor: importing torch)", out["slowest_s"], out["import_torch_s"],
             round(out["slowest_s"] / out["import_torch_s"], 3), "<= 1 s"),
    ]  # fmt: skip


def tta_views_args(inp: Inputs) -> list[str]:
    model = _need(inp.visual_model, "visual checkpoint", "--visual-model")
    params = [_need(p, "params file", "--params") for p in inp.params]
    images = _need_images(inp)
    data: dict[str, Any] = {"images": images}
    if inp.small:
        data["max_eval_images"] = 24
    extra = inp.tmp / "tta_views_inputs.yaml"  # JSON is YAML: the image folder (and the small preset's subset)
    extra.write_text(json.dumps({"data": data}))
    return ["--model", model, *params, str(extra), "--splits", "val" if inp.small else "val,test"]


def tta_views_parse(stdout: str) -> dict:
    """The script prints, per split, a header ``val (N images) ...`` and one ``name  accuracy  auc`` line each."""
    out: dict[str, Any] = {}
    split: dict[str, Any] | None = None
    for line in stdout.splitlines():
        if m := re.match(r"^(\w+) \((\d+) images\)", line):
            split = out.setdefault(m.group(1), {"images": int(m.group(2)), "views": {}})
        elif (m := re.match(r"^\s{2}(\S.*?)\s+([\d.]+|nan)\s+([\d.]+|nan)\s*$", line)) and split is not None:
            split["views"][m.group(1)] = {"accuracy": float(m.group(2)), "auc": float(m.group(3))}
    if not out:
        raise ValueError("no split table in the output")
    return out


def tta_views_rows(out: dict, inp: Inputs) -> list[dict]:
    rows = []
    for name, split in out.items():
        views = split["views"]
        shipped, alone = views.get("image + mirror (shipped)", {}), views.get("image", {})
        best = max(views, key=lambda k: -math.inf if math.isnan(views[k]["auc"]) else views[k]["auc"])
        figure = f"{name} AUC ({split['images']} images), image + mirror (anchor: image alone)"
        rows.append(_row(figure, shipped.get("auc"), alone.get("auc"), _ratio(shipped.get("auc"), alone.get("auc")),
                         f"best: {best} {views[best]['auc']:.4f}"))  # fmt: skip
    return rows


def serving_args(inp: Inputs) -> list[str]:
    model = _need(inp.model, "model checkpoint", "--model")
    params = ",".join(_need(p, "params file", "--params") for p in inp.params)
    args = ["--model", model, "--params", params, "--images", _need_images(inp)]
    if inp.small:
        return [*args, "--small"]
    return [*args, "--video", str(inp.video)] if inp.video.exists() else args


def serving_rows(out: dict, inp: Inputs) -> list[dict]:
    """Issue 27's targets: every ratio is of this one run (each runtime measured in its own process)."""
    best = out["recommended"]
    torch_run, runs, ratios = out["runtimes"]["torch"], out["runtimes"], out["ratios"]
    rows = []
    for runtime in ("openvino", "onnxruntime"):
        v, t = runs[runtime]["visual_images_per_s"], torch_run["visual_images_per_s"]
        mark = " (recommended)" if runtime == best else ""
        rows += [
            _row(f"visual img/s, mirror view, batch 8: {runtime}{mark} / PyTorch eager", v["mirror_batch8"],
                 t["mirror_batch8"], ratios[runtime]["visual_mirror_batch8"], ">= 1.8" if mark else "-"),
            _row(f"visual img/s, mirror view, batch 1: {runtime} / PyTorch eager", v["mirror_batch1"],
                 t["mirror_batch1"], ratios[runtime]["visual_mirror_batch1"]),
            _row(f"visual img/s, no mirror, batch 8: {runtime} / PyTorch eager", v["no_mirror_batch8"],
                 t["no_mirror_batch8"], ratios[runtime]["visual_no_mirror_batch8"]),
            _row(f"text texts/s, batch 8 ({'x'.join(map(str, torch_run['text_tokens']))} tokens), after the visual "
                 f"measurements in the same process: {runtime} / PyTorch eager", runs[runtime]["text_texts_per_s"],
                 torch_run["text_texts_per_s"], ratios[runtime]["text_batch8"]),
        ]  # fmt: skip
        for branch, a in ratios[runtime]["agreement"].items():
            rows.append(_row(f"agreement, {branch} compact test split ({a['n']}): max |P - PyTorch's| (labels "
                             f"differing: {a['labels_differ']}), {runtime}", a["max_abs_diff"], 1e-4,
                             _ratio(a["max_abs_diff"], 1e-4), "<= 1e-4, 0 labels"))  # fmt: skip
    fresh = out.get("text_fresh_processes")
    if fresh:
        lo, hi = fresh["ratio_ci"]
        status = "met" if lo >= 1.5 else ("NO" if hi < 1.5 else "within noise")
        rows.append(_row(f"text texts/s, batch 8, fresh text-only processes, {fresh['pairs']} alternating pairs: "
                         f"OpenVINO / PyTorch, mean ratio [{lo:.2f}, {hi:.2f}] ({status})",
                         statistics.median(fresh["texts_per_s"]["openvino_latency"]),
                         statistics.median(fresh["texts_per_s"]["torch"]), fresh["ratio_mean"], ">= 1.5"))  # fmt: skip
        c = fresh.get("ceiling")
        if c:  # the machine's ceiling: 1.5x PyTorch's rate needs this share of the best fp32 matrix product
            peak = max(c["sgemm_gflop_per_s_torch"], c["sgemm_gflop_per_s_numpy"])
            rows.append(_row(f"text GFLOP/s ({c['gflop_per_text']:.2f} GFLOP per text): OpenVINO / best 4096^2 fp32 "
                             f"matrix product here; PyTorch's {c['gflop_per_s_torch']:.0f} x 1.5 would be "
                             f"{1.5 * c['gflop_per_s_torch'] / peak:.0%} of it", c["gflop_per_s_openvino_latency"],
                             round(peak, 1), _ratio(c["gflop_per_s_openvino_latency"], peak)))  # fmt: skip
    else:
        rows.append(_row("text, fresh processes: skipped (--size small)", None, None, None, ">= 1.5"))
    q = out["text_int8"]
    ci = q["auc_change_ci"]
    rows.append(_row(f"text int8 (ONNX Runtime dynamic) texts/s / PyTorch; AUC change {q['auc_change']:+.4f} "
                     f"[{ci[0]:+.4f}, {ci[1]:+.4f}]", q["texts_per_s"], torch_run["text_texts_per_s"],
                     q["speedup_over_torch"], "offered if the CI includes 0"))  # fmt: skip
    sc = runs[best]["score"]
    rows.append(_row(f"dfmm score img/s in process / bare graphs (branch + frozen OOD backbone), {best}",
                     sc["images_per_s"], sc["bare_graphs_images_per_s"], ratios[best]["score_over_bare"], ">= 0.8"))  # fmt: skip
    cmd = out["score_command"]
    rows.append(_row(f"dfmm score command s on {cmd['faces']} faces, model loading included: PyTorch / {best}",
                     cmd["seconds"][best], cmd["seconds"]["torch"], cmd["speedup"], ">= 1.5"))  # fmt: skip
    if "video_speedup" in ratios[best]:
        r, pre = ratios[best], out["video_pre_issue"]
        anchor = (
            (f"commit {pre['commit']}'s code", pre["seconds"])
            if "commit" in pre
            else (
                f"this code's PyTorch stages one after the other ({pre['skipped']})",
                torch_run["video_sequential"]["seconds"],
            )
        )
        rows.append(_row(f"classify_video 32 frames s, before issue 27 ({anchor[0]}) / {best}; clip score "
                         f"diff {r['video_score_diff']:.1e}", runs[best]["video"]["seconds"]["total"], anchor[1],
                         r["video_speedup"], ">= 2, diff <= 1e-4"))  # fmt: skip
        rows.append(_row(f"classify_video 32 frames s, this code: PyTorch, stages one after the other / {best}",
                         runs[best]["video"]["seconds"]["total"], torch_run["video_sequential"]["seconds"],
                         r["video_speedup_over_sequential"]))  # fmt: skip
    else:
        rows.append(_row("classify_video 32 frames: skipped (--size small or no video)", None, None, None, ">= 2"))
    return rows


@dataclass
class Bench:
    args: Callable[[Inputs], list[str]]
    rows: Callable[[dict, Inputs], list[dict]]
    parse: Callable[[str], dict] | None = None  # None: the last JSON object the script prints


BENCHMARKS: dict[str, Bench] = {
    "visual_throughput": Bench(visual_throughput_args, visual_throughput_rows),
    "text_throughput": Bench(text_throughput_args, text_throughput_rows),
    "inference_latency": Bench(inference_latency_args, inference_latency_rows),
    "score_throughput": Bench(score_throughput_args, score_throughput_rows),
    "bootstrap_cost": Bench(bootstrap_cost_args, bootstrap_cost_rows, bootstrap_cost_parse),
    "augment_cost": Bench(augment_cost_args, augment_cost_rows),
    "decoded_cache": Bench(decoded_cache_args, decoded_cache_rows),
    "cpu_paths": Bench(cpu_paths_args, cpu_paths_rows),
    "tta_views": Bench(tta_views_args, tta_views_rows, tta_views_parse),
    "refusal_cost": Bench(refusal_cost_args, refusal_cost_rows),
    "serving": Bench(serving_args, serving_rows),
}


# ------------------------------------------------------------------ running


def last_json(stdout: str) -> dict:
    """The last JSON object printed (one line or indented over many), ignoring whatever came before it."""
    starts = [m.start() for m in re.finditer(r"^\{", stdout, flags=re.M)]
    for start in reversed(starts):
        try:
            value = json.loads(stdout[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object in the output")


def error_line(stderr: str, returncode: int) -> str:
    """The line that says what went wrong: a traceback's or argparse's last line, else stderr's first line.

    Progress bars (``\\r``) and warnings come first on stderr, so the first line alone rarely names the error."""
    lines = [s.strip() for s in re.split(r"[\r\n]+", stderr) if s.strip()]
    if not lines:
        return f"exit status {returncode}" + (" (killed by a signal)" if returncode < 0 else "")
    if "Traceback (most recent call last):" in lines or re.search(r"^[\w.-]+: error: ", lines[-1]):
        return lines[-1]
    return lines[0]


def run_one(name: str, inp: Inputs, timeout: float) -> dict[str, Any]:
    bench = BENCHMARKS[name]
    result: dict[str, Any] = {"name": name}
    try:
        args = bench.args(inp)
    except Skip as e:
        return {**result, "status": "skipped", "reason": str(e), "rows": []}
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args]
    result["command"] = ["python", f"benchmarks/{name}.py", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**result, "status": "failed", "reason": f"timed out after {timeout:.0f} s", "rows": []}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-4000:]
        return {**result, "status": "failed", "reason": error_line(proc.stderr, proc.returncode), "rows": []}
    try:
        output = (bench.parse or last_json)(proc.stdout)
        rows = bench.rows(output, inp)
    except (ValueError, KeyError, TypeError) as e:
        result["stdout_tail"] = proc.stdout[-4000:]
        reason = f"unexpected output ({type(e).__name__}: {e})"
        return {**result, "status": "failed", "reason": reason, "rows": []}
    if bench.parse is not None:
        result["stdout"] = proc.stdout
    return {**result, "status": "ok", "output": output, "rows": rows}


# ------------------------------------------------------------------ machine, table, files


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, GPU and the versions that decide the speed, and the commit measured."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), flags=re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), flags=re.M)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "gpu": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            info["cuda"] = torch.version.cuda
    except Exception as e:  # noqa: BLE001 - the table is still worth having without torch
        info["torch_error"] = f"{type(e).__name__}: {e}"
    info["versions"] = {p: _version(p) for p in ("torch", "torchvision", "timm", "transformers", "accelerate", "numpy")}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    info["git_commit"] = commit
    info["git_dirty"] = bool(status) if status is not None else None
    return info


def machine_slug(info: dict[str, Any]) -> str:
    """``h100``, ``a100``, ``4090`` from the GPU name (its first word with a digit), else ``cpu``."""
    gpu = info.get("gpu")
    if gpu:
        words = [w for w in re.split(r"[\s_-]+", gpu.replace("NVIDIA", "")) if any(c.isdigit() for c in w)]
        if words:
            return re.sub(r"[^a-z0-9]+", "", words[0].lower()) or "gpu"
        return "gpu"
    return "cpu"


def _cell(v: Any, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if r["status"] != "ok":
            rows.append({"benchmark": r["name"], "figure": f"{r['status']}: {r['reason']}", "ours": None,
                         "anchor": None, "ratio": None, "target": ""})  # fmt: skip
            continue
        rows += [{"benchmark": r["name"], **row} for row in r["rows"]]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, padded so that it reads in a terminal as well."""
    cells = [list(COLUMNS)]
    for row in rows:
        cells.append([row["benchmark"], row["figure"], _cell(row["ours"]), _cell(row["anchor"]),
                      _cell(row["ratio"], 3), row["target"]])  # fmt: skip
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    right = {2, 3, 4}

    def line(c: list[str]) -> str:
        padded = (s.rjust(w) if i in right else s.ljust(w) for i, (s, w) in enumerate(zip(c, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(c) for c in cells[1:])])


def _path(value: str | None, default: str) -> Path:
    """A path given on the command line is relative to where the command runs; a default, to the project root."""
    return Path(value).resolve() if value else (ROOT / default).resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--size",
        choices=("small", "full"),
        default="full",
        help="small: seconds per script (smoke run); full: the sizes in each script's docstring",
    )
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    ap.add_argument("--model", help=f"checkpoint for inference_latency (default {DEFAULTS['model']})")
    ap.add_argument(
        "--visual-model",
        help=f"visual checkpoint for score_throughput and tta_views (default {DEFAULTS['visual_model']})",
    )
    ap.add_argument("--images", help=f"face folder with real/ and fake/ (default {DEFAULTS['images']})")
    ap.add_argument("--texts", help=f"JSONL texts for text_throughput (default {DEFAULTS['texts']})")
    ap.add_argument("--video", help=f"clip for inference_latency, full size only (default {DEFAULTS['video']})")
    ap.add_argument("--params", help=f"params files for tta_views, comma-separated (default {DEFAULTS['params']})")
    ap.add_argument("--out", help="JSON file (default benchmarks/results/<machine>-<date>/bench.json)")
    ap.add_argument("--timeout", type=float, default=0, help="seconds per script (default 600 small, 3600 full)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any benchmark is skipped or fails")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()] if a.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    a.names = names
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = dt.datetime.now().astimezone()
    info = machine()
    params = a.params.split(",") if a.params else None
    inp = Inputs(
        size=a.size,
        model=_path(a.model, DEFAULTS["model"]),
        visual_model=_path(a.visual_model, DEFAULTS["visual_model"]),
        images=_path(a.images, DEFAULTS["images"]),
        texts=_path(a.texts, DEFAULTS["texts"]),
        video=_path(a.video, DEFAULTS["video"]),
        params=[Path(p).resolve() for p in params] if params else [ROOT / p for p in DEFAULTS["params"].split(",")],
        cuda=bool(info.get("gpu")),
        cpus=info.get("cores_usable") or 1,
    )
    timeout = a.timeout or (600 if a.size == "small" else 3600)
    print(f"benchmarks ({a.size}) on {info['cpu']}, {info['cores_usable']} cores, {info['ram_gib']} GiB"
          + (f", {info['gpu']}" if info["gpu"] else "") + f": {', '.join(a.names)}", flush=True)  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="dfmm-bench-") as tmp:
        inp.tmp = Path(tmp)
        for name in a.names:
            print(f"  {name} ...", end=" ", flush=True)
            r = run_one(name, inp, timeout)
            print(r["status"] + (f" in {r['seconds']} s" if "seconds" in r else "")
                  + (f": {r['reason']}" if r["status"] != "ok" else ""), flush=True)  # fmt: skip
            results.append(r)
    rows = table_rows(results)
    print()
    print(format_table(rows))
    out = Path(a.out) if a.out else HERE / "results" / f"{machine_slug(info)}-{started:%Y-%m-%d}" / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "size": a.size,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now().astimezone() - started).total_seconds(), 1),
        "machine": info,
        "inputs": {k: _show(v) if isinstance(v, Path) else v for k, v in vars(inp).items() if k not in ("tmp",)}
        | {"params": [_show(p) for p in inp.params]},
        "table": rows,
        "benchmarks": {r["name"]: r for r in results},
    }
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {_show(out.resolve()) if out.resolve().is_relative_to(ROOT) else out.resolve()}")
    bad = [r["name"] for r in results if r["status"] != "ok"]
    return 1 if a.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
