"""``dfmm`` command line: a thin face over study, inference and evaluation.

    dfmm study PARAMS... [-p key=value ...] [--out reports/NAME]
    dfmm train visual|text PARAMS... [--recipe NAME] [--seed N] [-p key=value ...]
    accelerate launch --num_processes 4 -m dfmm.cli train visual PARAMS...   (several GPUs, one shard each)
    dfmm evaluate --model CKPT (--images DIR | --texts FILE.jsonl | --videos DIR)
    dfmm classify image|text|video|multimodal --model CKPT ...

Expected failures print one line ``dfmm: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from dfmm.errors import DfmmError


def _json(obj: Any) -> str:
    def clean(o: Any) -> Any:
        if isinstance(o, float) and math.isnan(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if k != "gradcam"}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if hasattr(o, "tolist"):
            return o.tolist()
        return o

    return json.dumps(clean(obj), indent=2)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dfmm", description="Multimodal deepfake detection study")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("study", help="run the notebooks in order and write reports/NAME")
    s.add_argument("params", nargs="+", help="YAML files, merged left to right")
    s.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--out", help="report folder (default reports/<study.name>)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train one branch with one recipe, save runs/NAME/BRANCH_RECIPE.pt; print JSON")
    t.add_argument("branch", choices=["visual", "text"])
    t.add_argument("params", nargs="+", help="YAML files, merged left to right")
    t.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--recipe", help="a recipe of the params (default: the branch's report_recipe)")
    t.add_argument("--seed", type=int, help="default: study.seed")

    e = sub.add_parser("evaluate", help="score a checkpoint on a labelled folder or JSONL; print JSON")
    e.add_argument("--model", required=True)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--images", help="folder with real/ and fake/ (optional labels.csv)")
    g.add_argument("--texts", help="JSONL/CSV with text and label")
    g.add_argument("--videos", help="folder with real/ and fake/ clips")
    e.add_argument("--num-frames", type=int, default=32)
    e.add_argument("--aggregation", default="mean")
    e.add_argument("--batch-size", type=int, default=32)

    c = sub.add_parser("classify", help="classify files; print JSON")
    c.add_argument("modality", choices=["image", "text", "video", "multimodal"])
    c.add_argument("inputs", nargs="*", help="files or folders; for text, strings or files, '-' reads stdin")
    c.add_argument("--model", required=True)
    c.add_argument("--image", help="multimodal: the image")
    c.add_argument("--text", help="multimodal: the text")
    c.add_argument("--gradcam", metavar="DIR", help="image: also write GradCAM overlays (PNG) to DIR")
    c.add_argument("--num-frames", type=int, default=32)
    c.add_argument("--aggregation", default="mean")
    c.add_argument("--face-crop", action="store_true")
    return p


def _expand(inputs: list[str], extensions: set[str]) -> list[Path]:
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in extensions)
            if not found:
                raise DfmmError(f"no files ({', '.join(sorted(extensions))}) under {p}")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise DfmmError(f"{p}: no such file or folder")
    return out


def cmd_classify(a: argparse.Namespace) -> Any:
    from dfmm.data.images import IMAGE_EXTENSIONS
    from dfmm.data.video import VIDEO_EXTENSIONS
    from dfmm.inference import classify_image, classify_multimodal, classify_text, classify_video, load_model

    model, _ = load_model(a.model)
    if a.modality == "multimodal":
        text = sys.stdin.read() if a.text == "-" else a.text
        return classify_multimodal(model, image_path_or_pil=a.image, text=text)
    if not a.inputs:
        raise DfmmError(f"classify {a.modality}: give at least one input")
    results = []
    if a.modality == "text":
        for item in a.inputs:
            if item == "-":
                results.append({"input": "<stdin>", **classify_text(model, sys.stdin.read())})
            elif Path(item).is_file() and Path(item).suffix in (".txt", ".md"):
                results.append(
                    {"input": item, **classify_text(model, Path(item).read_text(encoding="utf-8", errors="strict"))}
                )
            else:
                results.append({"input": item[:60], **classify_text(model, item)})
    elif a.modality == "image":
        for f in _expand(a.inputs, IMAGE_EXTENSIONS):
            r = classify_image(model, f, return_gradcam=bool(a.gradcam))
            if a.gradcam:
                from PIL import Image

                out = Path(a.gradcam)
                out.mkdir(parents=True, exist_ok=True)
                r["gradcam_png"] = str(out / f"{f.stem}_gradcam.png")
                Image.fromarray(r["gradcam"]["overlay"]).save(r["gradcam_png"])
            results.append({"input": str(f), **r})
    else:
        for f in _expand(a.inputs, VIDEO_EXTENSIONS):
            r = classify_video(model, f, num_frames=a.num_frames, aggregation=a.aggregation, face_crop=a.face_crop)
            results.append({"input": str(f), **r})
    return results[0] if len(results) == 1 else results


def cmd_train(a: argparse.Namespace) -> dict[str, Any] | None:
    """One branch, one recipe, through the same code as the notebooks; under ``accelerate launch`` each process
    trains on its shard and only the main process saves and prints."""
    from dfmm.config import load_config
    from dfmm.data import image_splits, text_splits
    from dfmm.experiments import train_text, train_visual

    cfg = load_config(a.params, a.overrides)
    bc = getattr(cfg, a.branch)
    recipe = a.recipe or bc.report_recipe
    if recipe not in bc.recipes:
        raise DfmmError(f"--recipe {recipe}: not among {a.branch}.recipes {sorted(bc.recipes)}")
    if a.branch == "visual":
        run = train_visual(cfg, recipe, image_splits(cfg), seed=a.seed)
    else:
        run = train_text(cfg, recipe, text_splits(cfg), seed=a.seed)
    from accelerate import PartialState

    state = PartialState()
    if not state.is_main_process:
        return None
    return {**run.summary(), "processes": state.num_processes}


def cmd_evaluate(a: argparse.Namespace) -> dict[str, Any]:
    from dfmm.evaluate import evaluate_images, evaluate_texts, evaluate_videos
    from dfmm.inference import load_model

    model, _ = load_model(a.model)
    if a.images:
        return evaluate_images(model, a.images, a.batch_size)
    if a.texts:
        return evaluate_texts(model, a.texts, a.batch_size)
    return evaluate_videos(model, a.videos, a.num_frames, a.aggregation)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "study":
            from dfmm.study import run_study

            out = run_study(args.params, args.overrides, args.out, quiet=args.quiet)
            print(f"report: {out / 'index.html'}")
            return 0
        commands = {"classify": cmd_classify, "train": cmd_train, "evaluate": cmd_evaluate}
        result = commands[args.command](args)
        if result is not None:
            print(_json(result))
        return 0
    except DfmmError as e:
        print(f"dfmm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dfmm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
