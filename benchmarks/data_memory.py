"""Peak memory of reading a whole image source as it grows: generated Hemg-schema parquet, 10,000 and 50,000 images.

    python benchmarks/data_memory.py [--sizes 10000,50000] [--image-px 64] [--texts 200000,1400000] [--keep DIR]

Each size is written as a parquet file with the schema of ``Hemg/deepfake-and-real-images`` (small JPEGs), then
read whole in a fresh process by ``python -m dfmm.data.memory`` (load, convert to the memory-mapped table on the
first load, group split, every image through ``ImageDataset`` with the evaluation transform and a ``DataLoader`` of
64), once with an empty cache (``cold``: the conversion included) and once more from the cache (``warm``).
``--texts`` does the same for artem9k-schema text parquet (every text read by index). Prints one JSON object per
run and a table; peak resident memory (``peak_rss_mb``) counts the mapped pages the loop touched, ``peak_anon_mb``
only what the process itself holds. Not run by the tests (``tests/test_memory.py`` checks 5,000 vs 20,000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from dfmm.data.memory import measure_in_subprocess
from dfmm.data.synthetic import write_hemg_parquet, write_pile_parquet


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000", help="image counts, comma-separated")
    ap.add_argument("--image-px", type=int, default=64, help="side of the generated JPEGs")
    ap.add_argument("--texts", default="", help="text counts, comma-separated (e.g. 200000,1400000)")
    ap.add_argument("--keep", default="", help="write the data and cache here (default: a temporary folder)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows = []
        jobs = [("images", n) for n in _sizes(a.sizes)] + [("texts", n) for n in _sizes(a.texts)]
        for kind, n in jobs:
            t0 = time.perf_counter()
            if kind == "images":
                path = write_hemg_parquet(root / f"hemg_{n}.parquet", n, size=a.image_px)
            else:
                path = write_pile_parquet(root / f"pile_{n}.parquet", n)
            made = time.perf_counter() - t0
            os.environ["DFMM_CACHE_DIR"] = str(root / f"cache_{kind}_{n}")  # empty: the first run converts
            for run in ("cold", "warm"):
                out = measure_in_subprocess(kind, path, timeout=3600) | {"run": run, "n": n}
                out["generate_s"] = round(made, 1)
                out["mapped_mb"] = round(
                    sum(p.stat().st_size for p in (root / f"cache_{kind}_{n}" / "arrow").glob("*.arrow")) / 2**20, 1
                )
                print(json.dumps(out), flush=True)
                rows.append(out)
    print(f"\n{'kind':6} {'n':>9} {'run':5} {'peak RSS MB':>12} {'peak anon MB':>13} {'mapped MB':>10} {'s':>7}")
    for r in rows:
        print(
            f"{r['kind']:6} {r['n']:>9,} {r['run']:5} {r['peak_rss_mb']:>12.1f} {r['peak_anon_mb']:>13.1f}"
            f" {r['mapped_mb']:>10.1f} {r['seconds']:>7.1f}"
        )
    for kind in ("images", "texts"):
        cold = [r for r in rows if r["kind"] == kind and r["run"] == "cold"]
        if len(cold) >= 2:
            lo, hi = cold[0], cold[-1]
            print(
                f"{kind}: {hi['n']:,} vs {lo['n']:,}: peak RSS x{hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f},"
                f" anonymous {hi['peak_anon_mb'] - lo['peak_anon_mb']:+.1f} MB"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
