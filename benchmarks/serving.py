"""Serving speed on a CPU: PyTorch eager beside the exported graphs under OpenVINO and ONNX Runtime (issue 27).

    python benchmarks/serving.py --model runs/compact/multimodal_ensemble.pt \
        --params params/compact.yaml,params/sources/local.yaml --images ../shared/data/faces/dfdc \
        --video ../shared/data/videos/fake/004_982.mp4 [--faces 400] [--rounds 3] [--small]

One run: the checkpoint is exported once (``dfmm export``), then each runtime is measured in a process of its own
(a runtime's thread pool, or an ONNX export in the same process, changes PyTorch's speed: eager Lite0 went from
30 to 52 img/s after a ``torch.onnx.export`` in the same process here, so the anchor is measured alone):

- visual branch images/s at batch 1 and 8, with the recipe's mirror view and without it (median of ``--rounds``);
- text branch texts/s at batch 8 on real texts (tokenised once, full length); ONNX Runtime's dynamic int8 text
  graph too, with its AUC change on the compact text test split (paired bootstrap, 95% CI);
- agreement: the compact test splits scored by ``dfmm evaluate``'s path under each runtime, the largest
  |P(fake) - PyTorch's| and the number of labels that differ;
- ``classify_video`` on one clip, 32 frames with face crops: seconds per stage (median of 5 calls), its score;
  against the same call with the code of the commit before issue 27 (``PRE_ISSUE``, taken out of git into the
  bench folder and run in a process of its own on the same checkpoint): the issue's "today", measured in this run;
- text texts/s of PyTorch and OpenVINO in fresh text-only processes, 5 alternating pairs
  (``text_runtime_settings.py --pairs``): the ratio's mean and 95% t-interval (skipped with ``--small``);
- ``dfmm score`` on ``--faces`` face crops: the command's wall time, model loading included, and in process its
  images/s beside the bare graphs' (branch + frozen OOD backbone on the same batches of 8).

Targets (ratios of this one run): the recommended runtime's visual images/s with the mirror at batch 8 >= 1.8x
PyTorch's, text >= 1.5x; ``dfmm score`` >= 0.8x the bare graphs and >= 1.5x today's command; ``classify_video``
>= 2x faster with clip scores within 1e-4. Prints one JSON object (``benchmarks/run.py`` makes the table).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRE_ISSUE = "8da94de"  # the last commit before issue 27's serving work: classify_video as the issue measured it
RUNTIMES = ("torch", "openvino", "onnxruntime")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}


def per_second(fn, items: int, rounds: int, seconds: float) -> float:
    """Median over ``rounds`` of items/s, each round calling ``fn`` for about ``seconds`` after a warm-up."""
    fn()
    fn()
    rates = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - t0 >= seconds:
                break
        rates.append(n * items / (time.perf_counter() - t0))
    return round(statistics.median(rates), 1)


def _face_files(folder: Path, n: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    step = max(1, len(files) // n)
    return files[::step][:n]


# ---------------------------------------------------------------------------------------------- one runtime


def measure(a: argparse.Namespace) -> dict:
    """Every figure of one runtime, in this process (``--measure RUNTIME``)."""
    import torch

    from dfmm.config import load_config
    from dfmm.data import image_splits, text_splits
    from dfmm.serving.evaluate import score_images, score_texts
    from dfmm.serving.inference import _image_tensor, classify_video, load_model
    from dfmm.serving.runtimes import ExportedBranch, Graph
    from dfmm.serving.score_files import score_to_csv

    runtime = a.measure
    t0 = time.perf_counter()
    model, _ = load_model(a.model if runtime == "torch" else a.export, runtime)
    out: dict = {"runtime": runtime, "load_s": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads()}
    size = model.visual_spec.image_size
    x8 = torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    x8 = x8.contiguous(memory_format=torch.channels_last)
    visual = {}
    if runtime == "torch":
        views = {"mirror": lambda x: model.visual.scored(x, tta=True), "no_mirror": lambda x: model.visual.scored(x)}
    else:
        plain = ExportedBranch(
            "visual", Graph(Path(a.bench_dir) / "visual_no_mirror.onnx", runtime, ["logits", "features"])
        )
        views = {"mirror": lambda x: model.visual.scored(x), "no_mirror": lambda x: plain.scored(x)}
    with torch.inference_mode():
        for view, fn in views.items():
            for batch in (1, 8):
                x = x8[:batch]
                visual[f"{view}_batch{batch}"] = per_second(lambda fn=fn, x=x: fn(x), batch, a.rounds, a.seconds)
        frozen = model.frozen("visual")
        visual["frozen_batch8"] = per_second(lambda: frozen.features(x8), 8, a.rounds, a.seconds)
    out["visual_images_per_s"] = visual

    cfg = load_config(a.params.split(","))
    texts = text_splits(cfg)["test"]
    sample = list(itertools.islice(texts.iter_texts(), 8))
    enc = model.tokenizer(
        sample, truncation=True, max_length=model.text_spec.max_length, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out["text_texts_per_s"] = per_second(
            lambda: model.text.scored(enc["input_ids"], enc["attention_mask"]), len(sample), a.rounds, a.seconds
        )
    out["text_tokens"] = list(enc["input_ids"].shape)
    images = image_splits(cfg)["test"]
    vs, ts = score_images(model, images, 8), score_texts(model, texts, 8)
    probs = {"visual": vs["probs"].tolist(), "text": ts["probs"].tolist(), "visual_index": vs["index"].tolist(),
             "text_index": ts["index"].tolist(), "text_labels": ts["labels"].tolist(),
             "text_groups": [texts.groups[i] for i in ts["index"]],
             "thresholds": {"visual": model.threshold("visual"), "text": model.threshold("text")}}  # fmt: skip
    if runtime == "onnxruntime":
        int8 = ExportedBranch("text", Graph(Path(a.bench_dir) / "text_int8.onnx", runtime, ["logits", "features"]))
        with torch.inference_mode():
            out["text_int8_texts_per_s"] = per_second(
                lambda: int8.scored(enc["input_ids"], enc["attention_mask"]), len(sample), a.rounds, a.seconds
            )
        fp32 = model.text
        model.text = int8
        probs["text_int8"] = score_texts(model, texts, 8)["probs"].tolist()
        model.text = fp32
    Path(a.bench_dir, f"probs-{runtime}.json").write_text(json.dumps(probs))

    if a.video:
        classify_video(model, a.video, num_frames=32)  # warm
        calls = [classify_video(model, a.video, num_frames=32) for _ in range(5)]
        stages = {
            k: round(statistics.median(c["timings_ms"][k] for c in calls) / 1000, 3) for k in calls[0]["timings_ms"]
        }
        out["video"] = {"seconds": stages, "probability_fake": calls[0]["probability_fake"]}
        if runtime == "torch":
            out["video_sequential"] = sequential_video(model, a.video)

    # the bare graphs on the faces dfmm score reads, made into input tensors beforehand: its ceiling here
    faces = sorted(p for p in Path(a.bench_dir, "faces").rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    batches = [_image_tensor(model, faces[s : s + 8]) for s in range(0, len(faces), 8)]

    def bare() -> None:
        for x in batches:
            model.visual.scored(x, tta=model.visual_spec.tta)
            frozen.features(x)

    with torch.inference_mode():
        bare_rate = per_second(bare, len(faces), a.rounds, a.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        summary = score_to_csv(model, "images", str(Path(a.bench_dir, "faces")), Path(tmp, "s.csv"), progress=False)
    out["score"] = {"images_per_s": summary["items_per_s"], "bare_graphs_images_per_s": bare_rate}
    return out


def sequential_video(model, video: str) -> dict:
    """classify_video as it ran before issue 27 (PyTorch, decode all 32 frames, then one MTCNN pass over all of
    them, then the model): the same dfmm functions, one stage after the other. Median of 3 warm calls."""
    import numpy as np

    from dfmm.data.video import read_frames
    from dfmm.serving.video import _ClipScorer, aggregate

    totals, p = [], None
    for _ in range(4):
        t0 = time.perf_counter()
        clip = read_frames(video, 32, max_side=1280)
        scorer = _ClipScorer(model, True, False, None)
        scorer.add(clip.frames)
        scorer.finish(clip.frames)
        probs = model.rule("visual").probability(np.concatenate(scorer.logits))
        p = aggregate(probs, "mean", model.rule("visual"))[0]
        totals.append(time.perf_counter() - t0)
    return {"seconds": round(statistics.median(totals[1:]), 3), "probability_fake": p}


PRE_ISSUE_SCRIPT = """
import json, statistics, sys
from dfmm.serving.inference import classify_video, load_model
model, _ = load_model(sys.argv[1])
classify_video(model, sys.argv[2], 32)
calls = [classify_video(model, sys.argv[2], 32) for _ in range(5)]
print(json.dumps({"seconds": round(statistics.median(c["timings_ms"]["total"] for c in calls) / 1000, 3),
                  "probability_fake": calls[0]["probability_fake"]}))
"""


def pre_issue_video(a: argparse.Namespace, bench: Path) -> dict:
    """``classify_video`` with the code of ``PRE_ISSUE`` (PyTorch; the version then had no runtimes): its package
    taken out of git into the bench folder and imported from there, same checkpoint and clip, median of 5 warm
    calls. A checkout without that commit (a shallow clone) reports why instead."""
    import io
    import tarfile

    old = bench / "pre_issue"
    got = subprocess.run(["git", "-C", str(ROOT), "archive", PRE_ISSUE, "dfmm"], capture_output=True)
    if got.returncode != 0:
        return {"skipped": f"git archive {PRE_ISSUE}: {got.stderr.decode().strip()[:120]}"}
    with tarfile.open(fileobj=io.BytesIO(got.stdout)) as tar:
        tar.extractall(old, filter="data")
    cmd = [sys.executable, "-c", PRE_ISSUE_SCRIPT, str(Path(a.model).resolve()), str(Path(a.video).resolve())]
    return {"commit": PRE_ISSUE, **json.loads(_run(cmd, cwd=old).stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------------------------------------- the run


def _run(cmd: list[str], cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd[:4]))}...: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}"
        )
    return r


def prepare(a: argparse.Namespace, bench: Path) -> dict:
    """The export folder, the no-mirror visual graph, the int8 text graph and a folder of links to the faces."""
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "dfmm.cli", "export", "--model", a.model, "--out", str(bench / "export")])
    export_s = time.perf_counter() - t0
    script = (
        "import sys; from pathlib import Path; from dfmm.models.checkpoints import load_checkpoint_parts; "
        "from dfmm.models.branches import visual_from_meta; from dfmm.models.export import _Scored, _examples, _trace; "
        "kind, state, meta, _ = load_checkpoint_parts(sys.argv[1]); "
        "m = meta['visual'] if kind == 'multimodal_ensemble' else meta; "
        "s = {k.split('.', 1)[1]: v for k, v in state.items() if k.startswith('visual.')} if kind == 'multimodal_ensemble' else state; "
        "_trace(_Scored(visual_from_meta(m, s), False), _examples('visual', m, None), ('images',), ['logits', 'features'], Path(sys.argv[2]))"
    )  # fmt: skip
    _run([sys.executable, "-c", script, a.model, str(bench / "visual_no_mirror.onnx")])
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(bench / "export" / "text.onnx"), str(bench / "text_int8.onnx"), weight_type=QuantType.QInt8)
    faces = bench / "faces"
    for i, f in enumerate(_face_files(Path(a.images), a.faces)):
        label = "fake" if "fake" in f.parts else "real"
        (faces / label).mkdir(parents=True, exist_ok=True)
        os.symlink(f.resolve(), faces / label / f"{i:06d}{f.suffix}")
    return {"export_s": round(export_s, 1)}


def agreement(bench: Path, runtime: str) -> dict:
    import numpy as np

    base = json.loads((bench / "probs-torch.json").read_text())
    other = json.loads((bench / f"probs-{runtime}.json").read_text())
    out = {}
    for branch in ("visual", "text"):
        assert base[f"{branch}_index"] == other[f"{branch}_index"]
        a, b = np.array(base[branch]), np.array(other[branch])
        t = base["thresholds"][branch]
        out[branch] = {
            "n": len(a),
            "max_abs_diff": float(np.abs(a - b).max()) if len(a) else None,
            "labels_differ": int(((a >= t) != (b >= t)).sum()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/compact/multimodal_ensemble.pt")
    ap.add_argument("--params", default="params/compact.yaml,params/sources/local.yaml")
    ap.add_argument("--images", default="../shared/data/faces/dfdc")
    ap.add_argument("--video", default="../shared/data/videos/fake/004_982.mp4")
    ap.add_argument("--faces", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="per round")
    ap.add_argument("--small", action="store_true", help="seconds instead of minutes: 48 faces, 1 round, no video")
    ap.add_argument("--measure", choices=RUNTIMES, help=argparse.SUPPRESS)
    ap.add_argument("--export", help=argparse.SUPPRESS)
    ap.add_argument("--bench-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.small:
        a.faces, a.rounds, a.seconds, a.video = 48, 1, 0.5, ""
    if a.measure:
        print(json.dumps(measure(a)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(tmp)
        out: dict = prepare(a, bench)
        runs = {}
        for runtime in RUNTIMES:
            cmd = [sys.executable, __file__, "--measure", runtime, "--model", a.model, "--export", str(bench / "export"),
                   "--bench-dir", str(bench), "--params", a.params, "--images", a.images, "--video", a.video,
                   "--faces", str(a.faces), "--rounds", str(a.rounds), "--seconds", str(a.seconds)]  # fmt: skip
            runs[runtime] = json.loads(_run(cmd).stdout.strip().splitlines()[-1])
        out["runtimes"] = runs
        if a.video:
            out["video_pre_issue"] = pre_issue_video(a, bench)
        if not a.small:
            script = [sys.executable, str(ROOT / "benchmarks" / "text_runtime_settings.py"), "--model", a.model]
            out["text_fresh_processes"] = json.loads(_run([*script, "--params", a.params, "--export",
                                                           str(bench / "export"), "--pairs", "5"]).stdout)  # fmt: skip
        torch_run = runs["torch"]
        ratios = {}
        for runtime in RUNTIMES[1:]:
            r = runs[runtime]
            ratios[runtime] = {
                "visual_mirror_batch8": round(r["visual_images_per_s"]["mirror_batch8"] / torch_run["visual_images_per_s"]["mirror_batch8"], 3),
                "visual_mirror_batch1": round(r["visual_images_per_s"]["mirror_batch1"] / torch_run["visual_images_per_s"]["mirror_batch1"], 3),
                "visual_no_mirror_batch8": round(r["visual_images_per_s"]["no_mirror_batch8"] / torch_run["visual_images_per_s"]["no_mirror_batch8"], 3),
                "text_batch8": round(r["text_texts_per_s"] / torch_run["text_texts_per_s"], 3),
                "score_over_bare": round(r["score"]["images_per_s"] / r["score"]["bare_graphs_images_per_s"], 3),
            }  # fmt: skip
            if "video" in r:  # against classify_video before issue 27 (its own code when git has it)
                pre = out["video_pre_issue"]
                before = torch_run["video_sequential"] if "skipped" in pre else pre
                now = r["video"]["seconds"]["total"]
                ratios[runtime]["video_speedup"] = round(before["seconds"] / now, 3)
                ratios[runtime]["video_speedup_over_torch_now"] = round(torch_run["video"]["seconds"]["total"] / now, 3)
                ratios[runtime]["video_speedup_over_sequential"] = round(
                    torch_run["video_sequential"]["seconds"] / now, 3
                )
                ratios[runtime]["video_score_diff"] = abs(before["probability_fake"] - r["video"]["probability_fake"])
            ratios[runtime]["agreement"] = agreement(bench, runtime)
        out["ratios"] = ratios
        recommended = max(RUNTIMES[1:], key=lambda r: ratios[r]["visual_mirror_batch8"])
        out["recommended"] = recommended
        # int8 text (ONNX Runtime's dynamic quantisation): speed and the AUC change with its paired 95% CI
        from dfmm.metrics import paired_bootstrap

        p = json.loads((bench / "probs-onnxruntime.json").read_text())
        test = paired_bootstrap(p["text_labels"], p["text_int8"], p["text"], "auc", groups=p["text_groups"])
        out["text_int8"] = {
            "texts_per_s": runs["onnxruntime"]["text_int8_texts_per_s"],
            "speedup_over_torch": round(
                runs["onnxruntime"]["text_int8_texts_per_s"] / torch_run["text_texts_per_s"], 3
            ),
            "auc_change": test["difference"],
            "auc_change_ci": test["ci"],
            "ci_includes_zero": not test["excludes_zero"],
        }
        # the whole dfmm score command on the faces, model loading included: today's (torch) and the recommended
        seconds = {}
        for runtime, model in (("torch", a.model), (recommended, str(bench / "export"))):
            t0 = time.perf_counter()
            _run([sys.executable, "-m", "dfmm.cli", "score", "--images", str(bench / "faces"), "--model", model,
                  "--runtime", runtime, "--out", str(bench / f"score-{runtime}.csv"), "--quiet"])  # fmt: skip
            seconds[runtime] = round(time.perf_counter() - t0, 2)
        out["score_command"] = {"faces": a.faces, "seconds": seconds,
                                "speedup": round(seconds["torch"] / seconds[recommended], 3)}  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
