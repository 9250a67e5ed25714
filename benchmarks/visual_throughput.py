"""Visual training throughput: the project's loop on JPEG files vs a plain loop on pre-decoded tensors.

Same model, batch, optimiser and device, in one run; prints images/s for both and their ratio (target >= 0.9).
The measurement itself is ``dfmm.training.speed.visual_loop_ratio`` (notebook 02 runs a short one in every study).

    CPU:  python benchmarks/visual_throughput.py --images ../shared/data/faces/dfdc --batch 32 --steps 8
    GPU:  python benchmarks/visual_throughput.py --images DIR --batch 256 --steps 30 --workers 12 \
              [--arch efficientnet_b0]      # bf16 autocast and channels_last on CUDA

`--arch` other than tf_efficientnet_lite0 uses random init (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json

import torch

from dfmm.data.images import load_image_folder
from dfmm.models import VisualBranch
from dfmm.models.weights import create_visual_backbone
from dfmm.training.speed import visual_loop_ratio


def builder(arch: str):
    def build() -> VisualBranch:
        if arch == "tf_efficientnet_lite0":
            backbone, _ = create_visual_backbone("package:efficientnet-lite0")
        else:
            import timm

            backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        return VisualBranch(backbone).to(memory_format=torch.channels_last)

    return build


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
    out = visual_loop_ratio(load_image_folder(a.images), builder(a.arch), batch=a.batch, steps=a.steps, size=a.size,
                            workers=a.workers, plain_images=a.plain_images)  # fmt: skip
    print(json.dumps({"arch": a.arch, **out}))


if __name__ == "__main__":
    main()
