"""Is a face recipe's detection of an unseen fake source at the in-domain 5%-FPR threshold detection, or a shift of
its whole score level on that source? The check behind notebook 07's fake-only detection rates (issue 26).

    python benchmarks/face_threshold_shift.py [PARAMS...]   (default: params/compact.yaml params/sources/local.yaml)

Reads a finished study's run folder: the shipped visual branch and the face recipes notebook 07 trained
(``visual_<recipe>.pt``), scored through the score cache. For each model: the threshold that calls 5% of the DFDC
validation reals fake, and at it the share of each cross-source set's reals and fakes called fake (with group
bootstrap intervals). A recipe that calls an unseen source's reals fake as often as its fakes has not learnt to
detect that source; it has moved its score level there, and a fake-only set (SDFD) cannot tell the two apart.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="*", default=["params/compact.yaml", "params/sources/local.yaml"])
    args = ap.parse_args(argv)

    from dfmm.analysis.generalization import detection_rate, threshold_at_fpr
    from dfmm.config import load_config
    from dfmm.data import cross_images, fake_only_images, image_splits
    from dfmm.data.labels import FAKE, REAL
    from dfmm.serving.detector import load_model
    from dfmm.serving.evaluate import score_images

    cfg = load_config(args.params)
    sets = {"val": image_splits(cfg)["val"]} | cross_images(cfg) | fake_only_images(cfg)
    models = {"shipped": cfg.checkpoint("visual")}
    models |= {name: cfg.run_dir / f"visual_{name}.pt" for name in cfg.generalization.face_recipes}
    out = {}
    for name, path in models.items():
        if not path.is_file():
            print(f"{name}: {path} missing (run the study first)", file=sys.stderr)
            continue
        model, _ = load_model(path)
        scored = {k: score_images(model, v, cfg.visual.eval_batch_size, cfg.cache_dir) for k, v in sets.items()}
        at = threshold_at_fpr(scored["val"]["probs"][scored["val"]["labels"] == REAL])
        rows = {"threshold_5fpr": at}
        for k, s in scored.items():
            groups = np.asarray([sets[k].groups[i] for i in s["index"]])
            for label, cls in (("reals", REAL), ("fakes", FAKE)):
                mine = s["labels"] == cls
                if mine.any():
                    rate = detection_rate(s["probs"][mine], at, groups[mine])
                    rows[f"{k} {label} called fake"] = [round(rate["rate"], 3), [round(v, 3) for v in rate["ci"]]]
        out[name] = rows
        print(name, json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
