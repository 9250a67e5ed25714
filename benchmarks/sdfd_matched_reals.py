"""SDFD's Stable Diffusion faces against real faces put through SDFD's own preprocessing: a transfer AUC that a
moved score level cannot pass for detection (issue 26's SDFD target, read the way the data's SOURCE.md suggests).

    python benchmarks/sdfd_matched_reals.py [PARAMS...]   (default: params/compact.yaml params/sources/local.yaml)

SDFD is fake only, so notebook 07 reports its detection rate at the threshold that calls 5% of the DFDC validation
reals fake; a recipe whose scores rise on everything unfamiliar "detects" it without telling it from real faces
(``face_threshold_shift.py``). SDFD's SOURCE.md names the fix: an AUC against real faces re-encoded with the same
recipe (Pillow: RGB, short side to 256 px bicubic, centre crop 256 x 256, JPEG quality 90, 4:2:0, optimised), so
that size and format carry no label. The only real faces of known origin at >= 250 px here are LFW FaceSwap's
reals (250 x 250): they are re-encoded that way into a temporary folder. For the shipped visual branch and each
face recipe notebook 07 trained (a finished study's run folder), prints: the AUC of the SDFD fakes notebook 07
scores against the re-encoded LFW reals, with its 95% group-bootstrap interval (SDFD prompt groups, LFW identities);
the same against the LFW reals as stored (JPEG from another pipeline: what the format alone is worth); and, at the
DFDC 5%-FPR threshold, SDFD's detection rate beside the share of re-encoded LFW reals called fake.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def reencode(src: str, dst: Path) -> None:
    """SDFD's preprocessing (SOURCE.md) applied to one image."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        f = 256 / min(w, h)
        im = im.resize((max(256, round(w * f)), max(256, round(h * f))), Image.Resampling.BICUBIC)
        w, h = im.size
        left, top = (w - 256) // 2, (h - 256) // 2
        im.crop((left, top, left + 256, top + 256)).save(dst, "JPEG", quality=90, subsampling="4:2:0", optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="*", default=["params/compact.yaml", "params/sources/local.yaml"])
    args = ap.parse_args(argv)

    from dfmm.analysis.generalization import detection_rate, threshold_at_fpr
    from dfmm.config import load_config
    from dfmm.data import cross_images, fake_only_images, image_splits
    from dfmm.data.images import ImageSet
    from dfmm.data.labels import REAL
    from dfmm.metrics import interval, metric_draws
    from dfmm.serving.detector import load_model
    from dfmm.serving.evaluate import score_images

    cfg = load_config(args.params)
    lfw, sdfd = cross_images(cfg)["lfw_faceswap"], fake_only_images(cfg)["sdfd"]
    reals = np.flatnonzero(np.asarray(lfw.labels) == REAL)
    models = {"shipped": cfg.checkpoint("visual")}
    models |= {name: cfg.run_dir / f"visual_{name}.pt" for name in cfg.generalization.face_recipes}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k, i in enumerate(reals):
            files.append(str(Path(tmp) / f"lfw_real_{k:04d}.jpg"))
            reencode(str(lfw.sources[i]), Path(files[-1]))
        groups = [lfw.groups[i] for i in reals]
        names = [f"lfw_real_{k:04d}.jpg" for k in range(len(reals))]
        matched = ImageSet(files, np.full(len(files), REAL), groups, names)  # never cached: new files, same names
        sets = {
            "val": image_splits(cfg)["val"],
            "lfw_as_stored": lfw.subset(reals),
            "lfw_reencoded": matched,
            "sdfd": sdfd,
        }
        for name, path in models.items():
            if not path.is_file():
                print(f"{name}: {path} missing (run the study first)", file=sys.stderr)
                continue
            model, _ = load_model(path)
            cache = {k: cfg.cache_dir if k != "lfw_reencoded" else None for k in sets}
            s = {k: score_images(model, v, cfg.visual.eval_batch_size, cache[k]) for k, v in sets.items()}
            at = threshold_at_fpr(s["val"]["probs"][s["val"]["labels"] == REAL])
            fakes = s["sdfd"]["probs"]
            sdfd_groups = [sdfd.groups[i] for i in s["sdfd"]["index"]]
            row = {"threshold_5fpr": round(at, 4)}
            for reals_name in ("lfw_reencoded", "lfw_as_stored"):
                r = s[reals_name]
                y = np.r_[np.zeros(len(r["probs"])), np.ones(len(fakes))]
                g = [f"lfw:{sets[reals_name].groups[i]}" for i in r["index"]] + [f"sdfd:{x}" for x in sdfd_groups]
                auc, draws = metric_draws(y, np.r_[r["probs"], fakes], g, "auc", 1000, 0)
                row[f"auc_vs_{reals_name}"] = [round(auc, 3), [round(v, 3) for v in interval(draws)]]
            rate = detection_rate(fakes, at, sdfd_groups)
            row["sdfd_detected_at_5fpr"] = [round(rate["rate"], 3), [round(v, 3) for v in rate["ci"]]]
            r = s["lfw_reencoded"]
            rate = detection_rate(r["probs"], at, [sets["lfw_reencoded"].groups[i] for i in r["index"]])
            row["lfw_reencoded_reals_called_fake"] = [round(rate["rate"], 3), [round(v, 3) for v in rate["ci"]]]
            out[name] = row
            print(name, json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
