"""Which test-time views help a trained visual branch: accuracy at 0.5 and ROC AUC per combination of views.

    python benchmarks/tta_views.py --model runs/compact/visual_improved.pt params/compact.yaml \
        params/sources/local.yaml [--splits val,test]

Views of each (already resized and normalised) image: the image, its mirror, centre crops of 90% and 80% scaled
back up, the image upsampled to 288 px, and copies shifted by 4 or 8 px (reflect padding). The shipped recipes
average the image and its mirror (``tta: true``); this script is how the other views were ruled out.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dfmm.config import load_config
from dfmm.data import image_splits
from dfmm.data.batches import ImageDataset, ShuffledBatchSampler, collate_images
from dfmm.metrics import binary_metrics
from dfmm.models.scoring import sigmoid
from dfmm.serving.inference import load_model


def centre_crop(x: torch.Tensor, scale: float) -> torch.Tensor:
    n = x.shape[-1]
    c = round(n * scale)
    o = (n - c) // 2
    return F.interpolate(x[..., o : o + c, o : o + c], size=(n, n), mode="bilinear", align_corners=False)


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    p, n = max(abs(dx), abs(dy)), x.shape[-1]
    return F.pad(x, (p, p, p, p), mode="reflect")[..., p + dy : p + dy + n, p + dx : p + dx + n]


def views(x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {"image": x, "mirror": x.flip(3)}
    for s in (0.9, 0.8):
        out[f"crop{s}"] = centre_crop(x, s)
        out[f"crop{s}_mirror"] = out[f"crop{s}"].flip(3)
    out["up288"] = F.interpolate(x, size=(288, 288), mode="bilinear", align_corners=False)
    out["up288_mirror"] = out["up288"].flip(3)
    for d in (4, 8):
        for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            out[f"shift{d}_{sx:+d}{sy:+d}"] = shifted(x, sx * d, sy * d)
    return out


def _shifts(d: int) -> list[str]:
    return [f"shift{d}_{a}{b}" for a in ("+1", "-1") for b in ("+1", "-1")]


COMBINATIONS = {
    "image": ["image"],
    "image + mirror (shipped)": ["image", "mirror"],
    "crop 0.9 + mirror": ["crop0.9", "crop0.9_mirror"],
    "image, mirror, crop 0.9 x2": ["image", "mirror", "crop0.9", "crop0.9_mirror"],
    "... + crop 0.8 x2": ["image", "mirror", "crop0.9", "crop0.9_mirror", "crop0.8", "crop0.8_mirror"],
    "up 288 + mirror": ["up288", "up288_mirror"],
    "image, mirror, up 288 x2": ["image", "mirror", "up288", "up288_mirror"],
    "4 shifts of 4 px": _shifts(4),
    "image, mirror, 4 shifts of 4 px": ["image", "mirror", *_shifts(4)],
    "image, mirror, 4 shifts of 8 px": ["image", "mirror", *_shifts(8)],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("params", nargs="+")
    ap.add_argument("--splits", default="val,test")
    a = ap.parse_args()
    splits = image_splits(load_config(a.params))
    detector, _ = load_model(a.model)
    net = detector.visual.eval()
    for split in a.splits.split(","):
        ds = ImageDataset(splits[split], detector.transform())
        loader = DataLoader(
            ds, batch_sampler=ShuffledBatchSampler(len(ds), 50, 0, shuffle=False), collate_fn=collate_images
        )
        logits: dict[str, list[torch.Tensor]] = {}
        labels = []
        with torch.no_grad():
            for batch in loader:
                if batch["inputs"] is None:
                    continue
                for name, v in views(batch["inputs"]).items():
                    logits.setdefault(name, []).append(net(v.contiguous(memory_format=torch.channels_last)))
                labels.append(batch["labels"])
        y = torch.cat(labels).numpy()
        by_view = {k: torch.cat(v).numpy() for k, v in logits.items()}
        print(f"\n{split} ({len(y)} images)   accuracy at 0.5   ROC AUC")
        for name, keys in COMBINATIONS.items():
            m = binary_metrics(y, sigmoid(np.mean([by_view[k] for k in keys], axis=0)))
            print(f"  {name:34s} {m['accuracy']:.3f}            {m['auc']:.4f}", flush=True)


if __name__ == "__main__":
    main()
