"""The decoded-image cache (``visual.cache: decoded``): build time, and how fast it feeds training.

    python benchmarks/decoded_cache.py --images ../shared/data/faces/dfdc [--limit 2000] [--workers 0]

On ``--limit`` images drawn from the folder (seeded): the cache build (seconds, images/s, all CPUs); one epoch
of the training loader (flip augmentation, batch 32, no model) reading the cache and reading the JPEG files, on
one torch thread like one DataLoader worker (tiny tensor ops on several threads of a busy CPU mostly wait for
each other); and the visual training throughput (``dfmm.training.loop.fit`` on the branch ``dfmm.models.branches.build_visual``
builds, batch 16, ``--steps`` steps on the cache: the model's speed, as notebook 02 measures it). Prints one
JSON object; ``cache_over_training`` is the loader's images/s over training's (target >= 10: the cache never
holds training back). The cache is built in a temporary folder (``--cache-dir`` to keep it), so it is always
built, never found.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from dfmm.config import Config, Recipe
from dfmm.data.decoded import build_decoded
from dfmm.data.images import load_image_folder
from dfmm.models.branches import build_visual
from dfmm.training.loaders import image_loader
from dfmm.training.loop import fit, make_accelerator
from dfmm.training.speed import device_name


def _epoch(loader) -> tuple[float, int]:
    """images/s of one pass over ``loader`` (batches built and dropped), and the images seen; one batch first,
    untimed (lazy set-up of the transforms)."""
    next(iter(loader))
    t0, seen = time.perf_counter(), 0
    for batch in loader:
        seen += 0 if batch["inputs"] is None else len(batch["inputs"])
    return seen / (time.perf_counter() - t0), seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default="../shared/data/faces/dfdc")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32, help="loader batch")
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="training steps timed (after one warm-up step)")
    ap.add_argument("--build-workers", type=int, default=0, help="cache build processes (0: one per CPU)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (study.num_workers)")
    ap.add_argument("--loader-threads", type=int, default=1, help="torch threads while the loaders are timed")
    ap.add_argument("--cache-dir", default="", help="keep the cache here (default: a temporary folder)")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="dfmm-decoded-") as tmp:
        os.environ["DFMM_CACHE_DIR"] = a.cache_dir or tmp  # dfmm.data.decoded reads it when it builds
        folder = load_image_folder(a.images)
        pick = np.random.default_rng(0).permutation(len(folder))[: a.limit]
        images = folder.subset(np.sort(pick))
        n = len(images)
        cfg = Config()
        cfg.visual.image_size, cfg.visual.batch_size, cfg.study.num_workers = a.size, a.batch, a.workers
        norm = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "seed": 0}

        t0 = time.perf_counter()
        decoded = build_decoded(images, a.size, workers=a.build_workers, progress=False)
        build_s = time.perf_counter() - t0

        threads = torch.get_num_threads()
        torch.set_num_threads(a.loader_threads)  # what one DataLoader worker gets
        files_img_s, _ = _epoch(image_loader(images, cfg, **norm, train=True, augment="flip", cache=False))
        cache_img_s, seen = _epoch(image_loader(images, cfg, **norm, train=True, augment="flip", cache=True))
        torch.set_num_threads(threads)

        steps = max(1, min(a.steps, n // a.train_batch - 1))
        part = images.subset(np.arange(min(n, a.train_batch * (steps + 1))))
        recipe = Recipe(augment="flip")
        model, info = build_visual(cfg)
        model = model.to(memory_format=torch.channels_last)
        kw = {"mean": info.mean, "std": info.std, "seed": 0}
        warm = image_loader(
            part.subset(np.arange(min(len(part), a.train_batch))),
            cfg,
            **kw,
            train=True,
            augment="flip",
            batch_size=a.train_batch,
            cache=True,
        )
        val = image_loader(part.subset(np.arange(min(len(part), 2))), cfg, **kw, cache=True)
        fit(model, warm, val, recipe, 1, accelerator=make_accelerator(), desc="warm-up")
        train = image_loader(
            part.subset(np.arange(a.train_batch, len(part))),
            cfg,
            **kw,
            train=True,
            augment="flip",
            batch_size=a.train_batch,
            cache=True,
        )
        result = fit(model, train, val, recipe, 1, accelerator=make_accelerator(), desc="train")
        train_img_s = result.history[0]["train_samples_per_s"]

        out = {
            "device": device_name(),
            "images": n,
            "size": a.size,
            "unreadable": int(decoded.unreadable.sum()),
            "cache_mib": round(decoded.path.stat().st_size / 2**20, 1),
            "build_s": round(build_s, 2),
            "build_img_s": round(n / build_s, 1),
            "build_workers": a.build_workers or os.cpu_count(),
            "loader_batch": a.batch,
            "loader_workers": a.workers,
            "loader_threads": a.loader_threads,
            "loader_images": seen,
            "files_loader_img_s": round(files_img_s, 1),
            "cache_loader_img_s": round(cache_img_s, 1),
            "cache_over_files": round(cache_img_s / files_img_s, 2),
            "train_batch": a.train_batch,
            "train_steps": steps,
            "train_img_s": round(train_img_s, 2),
            "cache_over_training": round(cache_img_s / train_img_s, 2),
            "target": 10,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
