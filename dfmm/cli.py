"""``dfmm`` command line: a thin face over study, inference and evaluation.

    dfmm study PARAMS... [-p key=value ...] [--out reports/NAME] [--resume]
    dfmm train visual|text PARAMS... [--recipe NAME] [--seed N] [-p key=value ...] [--resume]
    accelerate launch --num_processes 4 -m dfmm.cli train visual PARAMS...   (several GPUs, one shard each)
    dfmm evaluate --model CKPT (--images DIR | --texts FILE.jsonl | --videos DIR)
    dfmm classify image|text|video|multimodal --model CKPT ...
    dfmm score --model CKPT (--images DIR | --videos DIR | --texts FILE) --out scores.csv   (resumable)

Expected failures print one line ``dfmm: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from dfmm.choices import AGGREGATIONS, FACE_CROPS, RUNTIMES
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


class _Parser(argparse.ArgumentParser):
    """argparse with dfmm's error format: one line ``dfmm: error: ...`` and status 2 (no usage block).

    ``intermixed`` parsers accept options between their positional arguments (``classify text --string "hi"``);
    plain argparse binds an empty list to ``inputs`` at the first option and then rejects "hi".
    """

    intermixed = False
    _parsing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if not self.intermixed or self._parsing:
            return super().parse_known_args(args, namespace)
        self._parsing = True  # parse_known_intermixed_args calls back into parse_known_args
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False

    def error(self, message: str) -> NoReturn:
        m = re.fullmatch(r"argument (\S+): (must be .*)", message)  # our type functions: "--batch-size must be"
        message = f"{m[1]} {m[2]}" if m else message
        self.exit(2, f"dfmm: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _int_at_least(low: int) -> Any:
    """An argparse ``type``: an integer >= ``low``, e.g. ``--batch-size 0`` is refused before any work starts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dfmm", description="Multimodal deepfake detection study")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("study", help="run the notebooks in order and write reports/NAME")
    s.add_argument("params", nargs="+", help="YAML files, merged left to right")
    s.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument(
        "--out",
        help="report folder (default reports/<study.name>); it moves the report only: the run folder (checkpoints, "
        "caches) is always runs/<study.name>, so name a run with -p study.name=NAME",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same config: completed notebooks are reused, a training restarts "
        "from its last complete epoch (without it, the run folder is emptied first)",
    )

    t = sub.add_parser("train", help="train one branch with one recipe, save runs/NAME/BRANCH_RECIPE.pt; print JSON")
    t.add_argument("branch", choices=["visual", "text"])
    t.add_argument("params", nargs="+", help="YAML files, merged left to right")
    t.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--recipe", help="a recipe of the params (default: the branch's report_recipe)")
    t.add_argument("--seed", type=_int_at_least(0), help="default: study.seed")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last complete epoch saved under runs/NAME/resume (same config, code and data)",
    )

    e = sub.add_parser("evaluate", help="score a checkpoint on a labelled folder or JSONL; print JSON")
    e.add_argument("--model", required=True)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--images", help="folder with real/ and fake/ (optional labels.csv)")
    g.add_argument("--texts", help="JSONL/CSV with text and label")
    g.add_argument("--videos", help="folder with real/ and fake/ clips")
    e.add_argument("--num-frames", type=_int_at_least(1), help="videos (default 32)")
    e.add_argument("--aggregation", choices=AGGREGATIONS, help="videos (default mean)")
    e.add_argument("--batch-size", type=_int_at_least(1), help="images and texts (default 32)")
    e.add_argument(
        "--face-crop",
        choices=FACE_CROPS,
        help="videos: crop frames to faces (auto, always) or not (never); default auto",
    )

    _runtime_option(e)

    sc = sub.add_parser("score", help="score many items into a CSV, one row each, resumable; print a summary")
    sc.add_argument("--model", required=True)
    g = sc.add_mutually_exclusive_group(required=True)
    g.add_argument("--images", help="an image file or a folder (any depth)")
    g.add_argument("--videos", help="a clip or a folder of clips")
    g.add_argument("--texts", help="JSONL/CSV with text and label")
    sc.add_argument("--out", required=True, help="CSV file; rows already there are kept and their items skipped")
    sc.add_argument("--batch-size", type=_int_at_least(1), help="images (default 64)")
    sc.add_argument("--face-crop", choices=FACE_CROPS, help="images and videos (default auto)")
    sc.add_argument("--num-frames", type=_int_at_least(1), help="videos (default 32)")
    sc.add_argument("--aggregation", choices=AGGREGATIONS, help="videos (default mean)")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")
    _runtime_option(sc)

    x = sub.add_parser(
        "export", help="write a checkpoint as ONNX graphs for --runtime openvino/onnxruntime; print JSON"
    )
    x.add_argument("--model", required=True, help="a dfmm checkpoint (.pt)")
    x.add_argument("--out", required=True, help="the export folder (new, empty, or an earlier export: replaced)")
    x.add_argument(
        "--no-frozen",
        dest="frozen",
        action="store_false",
        help="leave out the frozen backbones of the out-of-distribution references (judged with PyTorch then)",
    )

    c = sub.add_parser("classify", help="classify files; print JSON")
    c.intermixed = True
    c.add_argument("modality", choices=["image", "text", "video", "multimodal"])
    c.add_argument(
        "inputs",
        nargs="*",
        help="files or folders; for text, an existing file is read (UTF-8), anything else is the text itself, "
        "'-' reads stdin",
    )
    c.add_argument("--model", required=True)
    c.add_argument("--image", help="multimodal: the image")
    c.add_argument("--text", help="multimodal: the text")
    c.add_argument("--gradcam", metavar="DIR", help="image: also write GradCAM overlays (PNG) to DIR")
    c.add_argument("--num-frames", type=_int_at_least(1), help="video (default 32)")
    c.add_argument("--aggregation", choices=AGGREGATIONS, help="video (default mean)")
    c.add_argument(
        "--face-crop",
        choices=FACE_CROPS,
        help="image, multimodal: crop the largest face when the photo is much larger than the model's input (auto, "
        "the default), whenever a face is found (always), or never; video: frames are cropped to faces unless never",
    )
    c.add_argument(
        "--all-faces",
        action="store_true",
        default=None,
        help="video: score every face; a frame takes its most fake one",
    )
    _runtime_option(c)
    how = c.add_mutually_exclusive_group()
    how.add_argument(
        "--file",
        dest="text_inputs",
        action="store_const",
        const="file",
        help="text: every input is a file (a missing one is an error)",
    )
    how.add_argument(
        "--string",
        dest="text_inputs",
        action="store_const",
        const="string",
        help="text: every input is the text itself, even if a file of that name exists ('-' still reads stdin)",
    )
    return p


def _runtime_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="torch (a checkpoint file), or openvino / onnxruntime (a folder written by dfmm export: faster on a CPU)",
    )


# Options that apply to some inputs only: (dest, flag, default). Parsed with default None so that one given where
# it does not apply is refused instead of silently ignored; the default is filled in after the check.
_SCOPED = {
    "num_frames": ("--num-frames", 32),
    "aggregation": ("--aggregation", "mean"),
    "face_crop": ("--face-crop", "auto"),
    "all_faces": ("--all-faces", False),
    "batch_size": ("--batch-size", None),
    "gradcam": ("--gradcam", None),
    "image": ("--image", None),
    "text": ("--text", None),
    "text_inputs": ("--file/--string", None),
}


def _options_for(a: argparse.Namespace, where: str, allowed: set[str], defaults: dict[str, Any] | None = None) -> None:
    """Refuse every scoped option given that ``where`` does not use, then fill in the defaults of the rest."""
    for dest, (flag, default) in _SCOPED.items():
        if not hasattr(a, dest):
            continue
        value = getattr(a, dest)
        if value is not None and dest not in allowed:
            flag = f"--{value}" if dest == "text_inputs" else flag
            raise DfmmError(f"{flag}: does not apply to {where}")
        if value is None:
            setattr(a, dest, (defaults or {}).get(dest, default))


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


_TEXT_FILE_SUFFIXES = (".txt", ".md", ".json", ".jsonl", ".csv")


def _is_file(item: str) -> bool:
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # a long text is no file name (ENAMETOOLONG), nor one with a NUL character
        return False


def _looks_like_path(item: str) -> bool:
    """A name the user surely meant as a file: a text-file suffix (any case), or a separator and no whitespace."""
    if item.lower().endswith(_TEXT_FILE_SUFFIXES):
        return True
    separators = {"/", os.sep, os.altsep} - {None}
    return any(s in item for s in separators) and not any(ch.isspace() for ch in item)


def _text_inputs(items: list[str], how: str | None) -> list[tuple[str, str, str]]:
    """``(input, input_kind, text)`` for ``classify text``, read and checked before the model loads.

    ``-`` is stdin. By default an argument is a file when that file exists (any suffix) and the text itself
    otherwise, but one that looks like a path and does not exist is an error, not a text to score; ``--file``
    makes every argument a file, ``--string`` every argument a text. Files and stdin are strict UTF-8.
    """
    from dfmm.data.text import check_text, decode_utf8

    if not items:
        raise DfmmError("classify text: give at least one input")
    out = []
    for i, item in enumerate(items, start=1):
        if item == "-":
            name, kind, where = "<stdin>", "stdin", "<stdin>"
            stream = getattr(sys.stdin, "buffer", None)
            text = decode_utf8(stream.read(), where) if stream is not None else sys.stdin.read()
        elif how != "string" and _is_file(item):
            name, kind, where = item, "file", item
            try:
                text = decode_utf8(Path(item).read_bytes(), where)
            except OSError as e:
                raise DfmmError(f"{item}: cannot read ({e.strerror})") from None
        elif how == "file" or (how is None and _looks_like_path(item)):
            if Path(item).is_dir():
                raise DfmmError(f"{item}: is a directory, expected a text file")
            if Path(item).exists():  # /dev/zero, a FIFO: reading could block or never end
                raise DfmmError(f"{item}: not a regular file, expected a text file")
            hint = "" if how == "file" else " (use --string to classify the text itself)"
            raise DfmmError(f"{item}: no such file{hint}")
        else:
            name, kind, where, text = item[:60], "string", f"text argument {i}", item
        out.append((name, kind, check_text(text, where)))
    return out


def _gradcam_folder(path: str) -> Path:
    """The ``--gradcam`` folder, checked before the model loads: a file in its place, or a place where no folder can
    be made, is an error, not a crash later. It is made when the first overlay is written (no empty folder is left
    behind when no image can be read)."""
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"{p} is a file"
                raise DfmmError(f"--gradcam {path}: {what}, expected a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                what = "the folder is not writable" if p == out else f"cannot create the folder ({p} is not writable)"
                raise DfmmError(f"--gradcam {path}: {what}")
            break
    return out


def _write_overlay(folder: Path, stem: str, overlay: Any, written: set[Path]) -> Path:
    from PIL import Image

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DfmmError(f"--gradcam {folder}: cannot create the folder ({e.strerror})") from None
    png, n = folder / f"{stem}_gradcam.png", 1
    while png in written:  # a/face.jpg and b/face.jpg: one overlay each
        n += 1
        png = folder / f"{stem}_{n}_gradcam.png"
    written.add(png)
    try:
        Image.fromarray(overlay).save(png)
    except OSError as e:  # a full disk, a folder made read-only meanwhile
        raise DfmmError(f"--gradcam {folder}: cannot write {png.name} ({e.strerror or e})") from None
    return png


def _multimodal_inputs(a: argparse.Namespace) -> tuple[Any, str | None]:
    """The image (decoded) and text of ``classify multimodal``, read and checked before the model loads."""
    from dfmm.data.images import load_image
    from dfmm.data.text import check_text, decode_utf8

    if a.inputs:
        raise DfmmError("classify multimodal: give the inputs as --image FILE and --text TEXT ('-' reads stdin)")
    if a.image is None and a.text is None:
        raise DfmmError("classify multimodal: give --image, --text or both")
    image = load_image(a.image) if a.image is not None else None
    text = None
    if a.text is not None:
        if a.text == "-":
            stream = getattr(sys.stdin, "buffer", None)
            text = decode_utf8(stream.read(), "<stdin>") if stream is not None else sys.stdin.read()
        else:
            text = a.text
        text = check_text(text, "--text")
    return image, text


_CLASSIFY_OPTIONS = {
    "image": {"face_crop", "gradcam"},
    "text": {"text_inputs"},
    "video": {"num_frames", "aggregation", "face_crop", "all_faces"},
    "multimodal": {"face_crop", "image", "text"},
}


def cmd_classify(a: argparse.Namespace) -> Any:
    from dfmm.data.images import IMAGE_EXTENSIONS
    from dfmm.data.video import VIDEO_EXTENSIONS

    _options_for(a, f"classify {a.modality}", _CLASSIFY_OPTIONS[a.modality])
    # every input is read or listed before torch is imported and the model loads (10-20 s): a typo costs nothing
    if a.modality == "multimodal":
        image, text = _multimodal_inputs(a)
        from dfmm.serving.inference import classify_multimodal, load_model

        model, _ = load_model(a.model, a.runtime)
        return classify_multimodal(model, image_path_or_pil=image, text=text, face_crop=a.face_crop)
    if not a.inputs:
        raise DfmmError(f"classify {a.modality}: give at least one input")
    if a.gradcam and a.runtime != "torch":
        raise DfmmError(f"--gradcam needs gradients, which only PyTorch computes: use --runtime torch, not {a.runtime}")
    gradcam_dir = _gradcam_folder(a.gradcam) if a.gradcam else None
    if a.modality == "text":
        texts = _text_inputs(a.inputs, a.text_inputs)
    else:
        files = _expand(a.inputs, IMAGE_EXTENSIONS if a.modality == "image" else VIDEO_EXTENSIONS)
    from dfmm.serving.inference import classify_image, classify_text, classify_video, load_model

    model, _ = load_model(a.model, a.runtime)
    results = []
    if a.modality == "text":
        for name, kind, text in texts:
            results.append({"input": name, "input_kind": kind, **classify_text(model, text)})
    elif a.modality == "image":
        written: set[Path] = set()
        for f in files:
            r = classify_image(model, f, return_gradcam=gradcam_dir is not None, face_crop=a.face_crop)
            if gradcam_dir is not None:
                r["gradcam_png"] = str(_write_overlay(gradcam_dir, f.stem, r["gradcam"]["overlay"], written))
            results.append({"input": str(f), **r})
    else:
        for f in files:
            r = classify_video(
                model,
                f,
                num_frames=a.num_frames,
                aggregation=a.aggregation,
                face_crop=a.face_crop != "never",
                all_faces=a.all_faces,
            )
            results.append({"input": str(f), **r})
    return results[0] if len(results) == 1 else results


def cmd_train(a: argparse.Namespace) -> dict[str, Any] | None:
    """One branch, one recipe, through the same code as the notebooks; under ``accelerate launch`` each process
    trains on its shard and only the main process saves and prints."""
    from dfmm.config import load_config

    cfg = load_config(a.params, a.overrides)  # before torch is imported: a bad value costs well under a second
    bc = getattr(cfg, a.branch)
    recipe = a.recipe or bc.report_recipe
    if recipe not in bc.recipes:
        raise DfmmError(f"--recipe {recipe}: not among {a.branch}.recipes {sorted(bc.recipes)}")
    seed = cfg.study.seed if a.seed is None else a.seed
    from dfmm.data import image_splits, text_splits
    from dfmm.files import TRAINING_STATES
    from dfmm.training.experiments import train_text, train_visual, training_state_path

    states = cfg.run_dir / TRAINING_STATES
    if not a.resume:  # a fresh start: never continue another attempt's state unasked
        training_state_path(states, a.branch, recipe, seed).unlink(missing_ok=True)
    train = train_visual if a.branch == "visual" else train_text
    splits = image_splits(cfg) if a.branch == "visual" else text_splits(cfg)
    run = train(cfg, recipe, splits, seed=seed, states=states)
    from accelerate import PartialState

    state = PartialState()
    if not state.is_main_process:
        return None
    return {**run.summary(), "processes": state.num_processes}


_SOURCE_OPTIONS = {  # evaluate / score: which scoped options each kind of source uses
    "evaluate": {
        "images": {"batch_size"},
        "texts": {"batch_size"},
        "videos": {"num_frames", "aggregation", "face_crop"},
    },
    "score": {
        "images": {"batch_size", "face_crop"},
        "texts": set(),
        "videos": {"num_frames", "aggregation", "face_crop"},
    },
}


def _source(a: argparse.Namespace) -> tuple[str, str]:
    kind = next(k for k in ("images", "videos", "texts") if getattr(a, k) is not None)
    if not getattr(a, kind).strip():
        raise DfmmError(f"--{kind}: empty path")
    return kind, getattr(a, kind)


def cmd_evaluate(a: argparse.Namespace) -> dict[str, Any]:
    kind, source = _source(a)
    _options_for(a, f"evaluate --{kind}", _SOURCE_OPTIONS["evaluate"][kind], {"batch_size": 32})
    # the data is read and checked before torch is imported and the model loads
    if kind == "images":
        from dfmm.data.images import load_images

        data: Any = load_images(source)
    elif kind == "texts":
        from dfmm.data.text import load_texts

        data = load_texts(source)
    else:
        from dfmm.data.video import labelled_clips

        data = labelled_clips(source)
    from dfmm.serving.evaluate import evaluate_images, evaluate_texts, evaluate_videos
    from dfmm.serving.inference import load_model

    if kind == "images":
        return evaluate_images(load_model(a.model, a.runtime)[0], source, a.batch_size, images=data)
    if kind == "texts":
        return evaluate_texts(load_model(a.model, a.runtime)[0], source, a.batch_size, texts=data)
    clips = data
    return evaluate_videos(
        load_model(a.model, a.runtime)[0],
        source,
        a.num_frames,
        a.aggregation,
        face_crop=a.face_crop != "never",
        clips=clips,
    )


def cmd_score(a: argparse.Namespace) -> dict[str, Any]:
    from dfmm.serving.score_files import check_can_score, list_items, read_rows, score_to_csv

    kind, source = _source(a)
    _options_for(a, f"score --{kind}", _SOURCE_OPTIONS["score"][kind], {"batch_size": 64})
    items = list_items(kind, source)  # before torch and the model load: the source and --out are checked first
    read_rows(Path(a.out), digest=None)
    from dfmm.serving.inference import load_model

    model, _ = load_model(a.model, a.runtime)
    check_can_score(model, kind)
    return score_to_csv(
        model,
        kind,
        source,
        a.out,
        batch_size=a.batch_size,
        face_crop=a.face_crop,
        num_frames=a.num_frames,
        aggregation=a.aggregation,
        progress=not a.quiet,
        items=items,
    )


def cmd_export(a: argparse.Namespace) -> dict[str, Any]:
    import time

    from dfmm.models.export import export_model

    t0 = time.perf_counter()
    manifest = export_model(a.model, a.out, frozen=a.frozen)
    out = Path(a.out)
    return {
        "out": str(out),
        "kind": manifest["kind"],
        "graphs": {name: g["file"] for name, g in manifest["graphs"].items()},
        "frozen_missing": manifest["frozen_missing"],
        "megabytes": round(sum(p.stat().st_size for p in out.iterdir()) / 2**20, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "use": f"dfmm classify {'text TEXT' if manifest['kind'] == 'text_branch' else 'image PHOTO'} --model {out} "
        "--runtime openvino",
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "study":
            from dfmm.study.runner import run_study

            out = run_study(args.params, args.overrides, args.out, quiet=args.quiet, resume=args.resume)
            print(f"report: {out / 'index.html'}")
            return 0
        commands = {
            "classify": cmd_classify,
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "score": cmd_score,
            "export": cmd_export,
        }
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
