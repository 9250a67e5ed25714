"""``dfmm score`` throughput on a folder of face crops: images per second, end to end (decode, the face-crop
decision, the model with its test-time views, CSV rows written and synced), beside the model's forward pass alone
on random tensors of the same batch size (the ceiling the loop can reach on this machine).

    python benchmarks/score_throughput.py --model runs/compact/visual_branch.pt --images ../shared/data/faces/dfdc \
        --limit 2000

Target on a 2-core CPU: >= 60 images/s with the Lite0 branch (issue 18). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from dfmm.data.images import IMAGE_EXTENSIONS
from dfmm.serving.inference import _visual_forward, load_model
from dfmm.serving.score_files import score_to_csv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--limit", type=int, default=2000, help="score this many images (0: all)")
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    model, _ = load_model(a.model)
    files = sorted(p for p in Path(a.images).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    files = files[: a.limit] if a.limit else files
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "images")
        for i, f in enumerate(files):  # a folder of links: the same files, a chosen count
            (folder / ("fake" if "fake" in f.parts else "real")).mkdir(parents=True, exist_ok=True)
            os.symlink(f.resolve(), folder / ("fake" if "fake" in f.parts else "real") / f"{i:06d}{f.suffix}")
        summary = score_to_csv(model, "images", str(folder), Path(tmp, "scores.csv"), batch_size=a.batch_size)
    size = model.visual_meta["image_size"]
    tta = model.visual_meta.get("tta", False)
    x = torch.randn(a.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    _visual_forward(model, x, tta)
    t0 = time.perf_counter()
    for _ in range(3):
        _visual_forward(model, x, tta)
    forward = 3 * a.batch_size / (time.perf_counter() - t0)
    out = {
        "threads": torch.get_num_threads(),
        "backbone": model.visual_meta["backbone"].get("architecture"),
        "tta": tta,
        "images": summary["items"],
        "score_images_per_s": summary["items_per_s"],
        "forward_only_images_per_s": round(forward, 1),
        "score_over_forward": round(summary["items_per_s"] / forward, 3),
        "target_images_per_s": 60,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
