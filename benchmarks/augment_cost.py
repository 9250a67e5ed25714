"""CPU cost of decoding + augmenting one face image, per data-loader worker: ours vs torchvision's ColorJitter.

    python benchmarks/augment_cost.py --images ../shared/data/faces/dfdc [--n 200]

On a GPU the visual loop is fed by data-loader workers (12 on the H100 machine), so the images per second a
worker can prepare bound the training speed: workers x 1000 / (ms per image). Both pipelines run in the same
process on one thread, alternating, and the medians of 5 rounds are compared.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torchvision.transforms import v2

from dfmm.data.images import load_image, load_image_folder
from dfmm.data.transforms import ColorJitter, image_transform


def torchvision_card(size: int, mean: list[float], std: list[float]) -> v2.Compose:
    """The card pipeline as it was, with torchvision's ColorJitter (an HSV round trip for hue)."""
    return v2.Compose([
        v2.Resize((size, size), antialias=True), v2.RandomHorizontalFlip(), v2.RandomRotation(10),
        v2.ColorJitter(0.2, 0.2, 0.2, 0.05), v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.3),
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), v2.RandomErasing(p=0.25),
    ])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=12, help="for the images/s a loader with this many could feed")
    a = ap.parse_args()
    torch.set_num_threads(1)  # a data-loader worker runs on one thread
    torch.manual_seed(0)
    images = load_image_folder(a.images)
    step = max(1, len(images) // a.n)
    sources = images.sources[::step][: a.n]
    mean = std = [0.5, 0.5, 0.5]
    pipelines = {
        "none": image_transform(a.size, mean, std, "none"),
        "flip": image_transform(a.size, mean, std, "flip"),
        "card (torchvision ColorJitter)": torchvision_card(a.size, mean, std),
        "card": image_transform(a.size, mean, std, "card"),
        "strong": image_transform(a.size, mean, std, "strong"),
    }
    times: dict[str, list[float]] = {k: [] for k in pipelines}
    for _ in range(a.rounds):
        for name, tf in pipelines.items():
            t0 = time.perf_counter()
            for src in sources:
                tf(load_image(src))
            times[name].append((time.perf_counter() - t0) * 1000 / len(sources))
    # colour jitter alone, on the same float image: our colour matrix vs torchvision's HSV round trip
    x = v2.ToDtype(torch.float32, scale=True)(v2.ToImage()(v2.Resize((a.size, a.size))(load_image(sources[0]))))
    jitters = {"ours": ColorJitter(0.2, 0.2, 0.2, 0.05), "torchvision": v2.ColorJitter(0.2, 0.2, 0.2, 0.05)}
    jitter_ms: dict[str, list[float]] = {k: [] for k in jitters}
    for _ in range(a.rounds):
        for name, jitter in jitters.items():
            t0 = time.perf_counter()
            for _ in range(a.n):
                jitter(x)
            jitter_ms[name].append((time.perf_counter() - t0) * 1000 / a.n)
    out = {"images": len(sources), "size": a.size, "rounds": a.rounds}
    out["color_jitter_ms"] = {k: round(float(np.median(v)), 2) for k, v in jitter_ms.items()}
    out["color_jitter_speedup"] = round(out["color_jitter_ms"]["torchvision"] / out["color_jitter_ms"]["ours"], 2)
    for name, ts in times.items():
        ms = float(np.median(ts))
        out[name] = {"ms_per_image": round(ms, 2), f"images_per_s_{a.workers}_workers": round(a.workers * 1000 / ms)}
    out["card_speedup"] = round(out["card (torchvision ColorJitter)"]["ms_per_image"] / out["card"]["ms_per_image"], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
