"""What a refused input costs: wall seconds from starting ``dfmm`` to its one-line error, for inputs that need no
model (params, paths, options), against the cost of importing torch that such a refusal no longer pays.

    python benchmarks/refusal_cost.py [--repeats 5]

Target (#25): a refused input costs <= 1 s before the error. Each case runs ``--repeats`` times as a fresh process
(the way a user meets it); the figure is the median, with the slowest case reported. The anchor is ``python -c
"import torch"`` measured in the same run: what every refusal cost before the checks moved ahead of the imports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cases(tmp: Path) -> dict[str, list[str]]:
    missing = str(tmp / "never-loaded.pt")
    return {
        "params value": ["train", "visual", "params/demo.yaml", "-p", "visual.epochs=-1"],
        "params nested 40 deep": ["train", "visual", "params/demo.yaml", "-p", "visual.epochs=" + "[" * 40],
        "missing image": ["classify", "image", str(tmp / "no.jpg"), "--model", missing],
        "option not for image": ["classify", "image", "a.jpg", "--model", missing, "--aggregation", "max"],
        "evaluate missing folder": ["evaluate", "--model", missing, "--images", str(tmp / "none")],
        "score missing texts": ["score", "--model", missing, "--texts", str(tmp / "no.jsonl"), "--out", "o.csv"],
        "multimodal no input": ["classify", "multimodal", "--model", missing],
    }


def wall(argv: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - t0, r.returncode, r.stderr.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        seconds = {}
        for name, args in cases(Path(d)).items():
            runs = [wall([sys.executable, "-m", "dfmm.cli", *args]) for _ in range(a.repeats)]
            bad = [r for r in runs if r[1] != 2 or len(r[2].splitlines()) != 1]
            if bad:
                raise SystemExit(f"{name}: expected one error line and exit 2, got {bad[0][1]}: {bad[0][2][:300]}")
            seconds[name] = round(statistics.median(r[0] for r in runs), 3)
        torch_s = statistics.median(wall([sys.executable, "-c", "import torch"])[0] for _ in range(a.repeats))
    worst = max(seconds, key=seconds.get)
    print(
        json.dumps(
            {
                "repeats": a.repeats,
                "seconds": seconds,
                "slowest": worst,
                "slowest_s": seconds[worst],
                "import_torch_s": round(torch_s, 3),
                "target_s": 1.0,
                "met": seconds[worst] <= 1.0,
            }
        )
    )


if __name__ == "__main__":
    main()
