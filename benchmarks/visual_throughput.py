"""Visual training throughput: the project's loop on JPEG files vs a plain loop on pre-decoded tensors.

Same model, batch, optimiser and device, in one run; prints images/s for both and their ratio (target >= 0.9).

    CPU:  python benchmarks/visual_throughput.py --images ../shared/data/faces/dfdc --batch 32 --steps 8
    GPU:  python benchmarks/visual_throughput.py --images DIR --batch 256 --steps 30 --workers 12 \
              [--arch efficientnet_b0]      # bf16 autocast and channels_last on CUDA

`--arch` other than tf_efficientnet_lite0 uses random init (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from dfmm.config import Recipe, load_config
from dfmm.data.images import load_image, load_image_folder
from dfmm.data.transforms import image_transform
from dfmm.experiments import image_loader
from dfmm.models import VisualBranch
from dfmm.train import bce_loss, fit, make_accelerator
from dfmm.weights import create_visual_backbone


def build(arch: str) -> VisualBranch:
    if arch == "tf_efficientnet_lite0":
        backbone, _ = create_visual_backbone("package:efficientnet-lite0")
    else:
        import timm

        backbone = timm.create_model(arch, pretrained=False, num_classes=0)
    return VisualBranch(backbone).to(memory_format=torch.channels_last)


def plain_loop(model, x, y, batch, steps, device, bf16) -> float:
    """The reference: tensors already decoded and resized, no DataLoader, the same optimiser step."""
    model.train().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    n = len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch) % n
        xb = x[idx].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yb = y[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = bce_loss(model(xb), yb, 0.0, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--arch", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--plain-images", type=int, default=0, help="decode only this many for the plain loop (cycled)")
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    n = a.batch * a.steps
    images = load_image_folder(a.images)
    pick = np.random.default_rng(0).permutation(len(images))[:n]
    subset = images.subset(pick)
    mean = std = (0.5, 0.5, 0.5)

    # plain: decode once up front (not timed), then train on tensors
    t = image_transform(a.size, mean, std, "none")
    m = a.plain_images or n
    x = torch.stack([t(load_image(s)) for s in subset.sources[:m]])
    y = torch.tensor(subset.labels[:m], dtype=torch.float32)
    torch.manual_seed(0)
    warm = build(a.arch)
    plain_loop(warm, x, y, a.batch, 2, device, cuda)  # warm-up (cudnn autotune, allocator)
    del warm
    torch.manual_seed(0)
    plain = plain_loop(build(a.arch), x, y, a.batch, a.steps, device, cuda)

    # ours: the study's loop, reading JPEG files through the real pipeline (decode + card augmentation)
    cfg = load_config(["params/compact.yaml"], [f"visual.batch_size={a.batch}", f"visual.image_size={a.size}",
                                                 f"study.num_workers={a.workers}"])  # fmt: skip
    loader = image_loader(subset, cfg, mean, std, "card", 0, train=True)
    val = image_loader(subset.subset(np.arange(min(len(subset), a.batch))), cfg, mean, std, "none", 0, train=False)
    torch.manual_seed(0)
    acc = make_accelerator()
    result = fit(build(a.arch), loader, val, Recipe(), 1, accelerator=acc, desc="ours")
    ours = result.history[0]["train_samples_per_s"]

    out = {
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "arch": a.arch, "batch": a.batch, "steps": a.steps, "workers": a.workers, "mixed_precision": acc.mixed_precision,
        "plain_img_s": round(plain, 1), "ours_img_s": round(ours, 1), "ratio": round(ours / plain, 3),
    }  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
