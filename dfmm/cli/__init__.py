"""``dfmm`` command line: a thin face over study, inference and evaluation.

    dfmm study PARAMS... [-p key=value ...] [--out reports/NAME] [--resume]
    dfmm train visual|text PARAMS... [--recipe NAME] [--seed N] [-p key=value ...] [--resume]
    accelerate launch --num_processes 4 -m dfmm.cli train visual PARAMS...   (several GPUs, one shard each)
    dfmm evaluate --model CKPT (--images DIR | --texts FILE.jsonl | --videos DIR)
    dfmm classify image|text|video|multimodal --model CKPT ...
    dfmm score --model CKPT (--images DIR | --videos DIR | --texts FILE) --out scores.csv   (resumable)

Expected failures print one line ``dfmm: error: ...`` and exit with status 2.

The package: this module holds ``main`` (the console entry point ``dfmm``) and re-exports the rest, the parser
(:mod:`dfmm.cli.parser`), the input checks (:mod:`dfmm.cli.inputs`) and the subcommands
(:mod:`dfmm.cli.commands`); ``python -m dfmm.cli`` runs :mod:`dfmm.cli.__main__`.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from dfmm.cli.commands import cmd_classify, cmd_evaluate, cmd_export, cmd_score, cmd_train
from dfmm.cli.parser import _parser
from dfmm.errors import DfmmError

__all__ = ["cmd_classify", "cmd_evaluate", "cmd_export", "cmd_score", "cmd_train", "main"]


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
