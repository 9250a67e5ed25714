"""The ``dfmm`` argument parser: every subcommand and its options, parsed with dfmm's error format (one line
``dfmm: error: ...``, status 2) and with argparse types that refuse a bad number before any work starts."""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

from dfmm.choices import AGGREGATIONS, BRANCH_NAMES, FACE_CROPS, RUNTIMES


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
    t.add_argument("branch", choices=BRANCH_NAMES)
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
