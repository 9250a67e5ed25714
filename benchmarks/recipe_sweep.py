"""How the `improved` recipes were chosen: recipe variants x seeds at one budget, one table of metrics.

    python benchmarks/recipe_sweep.py visual params/compact.yaml params/sources/local.yaml --seeds 3 \
        [--only card,improved,no_pairs] [--first-seed 1] [-p key=value ...] [--out sweep.jsonl]

Every variant except `card` starts from the params' `improved` recipe and changes the fields listed in
VARIANTS. Training seeds are study.seed + first-seed, ...; the splits and budget subsets follow study.seed alone, so
keep it fixed when adding seeds to a sweep. Runs on whatever device `study.device` picks; on a GPU a compact sweep takes minutes.

Variants whose recipe options were rejected and removed from dfmm (freeze_bn, pair_loss, ema_0.98, layer_decay_0.7,
head_only_0.2, self_blend, avgmax_pool, mid_level_2, mid_level_3) keep their rows in benchmarks/results/ and
docs/experiments.md; commit 6575cbe is the last with their code and can rerun them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from dfmm.config import load_config
from dfmm.data import image_splits, text_splits
from dfmm.training.experiments import train_text, train_visual

VARIANTS: dict[str, dict[str, dict]] = {
    "visual": {
        "card": {},
        "improved": {},
        "no_pairs": {"pair_batches": False},
        "card_augment": {"augment": "card"},
        "no_smoothing": {"label_smoothing": 0.0},
        "lr_3e-4": {"lr": 3e-4},
        "lr_2e-3": {"lr": 2e-3},
        "batch_8": {"batch_size": 8},
        "flip_augment": {"augment": "flip"},
        "no_augment": {"augment": "none"},
        "batch_32": {"batch_size": 32},
        "lr_5e-4": {"lr": 5e-4},
        "head_x3": {"head_lr_mult": 3.0},
        "sgd_0.02": {"optimizer": "sgd", "lr": 0.02, "head_lr_mult": 1.0, "weight_decay": 1e-4},
    },
    "text": {
        "card": {},
        "improved": {},
        "lr_5e-5": {"lr": 5e-5},
        "lr_2e-4": {"lr": 2e-4},
        "head_x1": {"head_lr_mult": 1.0},
        "batch_8": {"batch_size": 8},
        "batch_8_lr_5e-5": {"batch_size": 8, "lr": 5e-5},
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("branch", choices=sorted(VARIANTS))
    ap.add_argument("params", nargs="+")
    ap.add_argument("-p", dest="overrides", action="append", default=[])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="training seeds study.seed + first ... (splits stay)")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--save", action="store_true", help="keep each variant's first-seed checkpoint")
    a = ap.parse_args()
    cfg = load_config(a.params, ["study.name=sweep", *a.overrides])
    bc = getattr(cfg, a.branch)
    splits = image_splits(cfg) if a.branch == "visual" else text_splits(cfg)
    train = train_visual if a.branch == "visual" else train_text
    names = a.only.split(",") if a.only else list(VARIANTS[a.branch])
    unknown = [n for n in names if n not in VARIANTS[a.branch]]
    if unknown:
        ap.error(f"unknown {a.branch} variant {unknown[0]!r} (a removed option's variant needs commit 6575cbe)")
    table = []
    for name in names:
        if name != "card":
            bc.recipes[name] = dataclasses.replace(bc.recipes["improved"], **VARIANTS[a.branch][name])
        rows = []
        for s in range(a.first_seed, a.first_seed + a.seeds):
            t0 = time.perf_counter()
            run = train(cfg, name, splits, seed=cfg.study.seed + s, save=a.save and s == 0)
            row = {
                "branch": a.branch,
                "variant": name,
                "seed": run.seed,
                "train_size": run.train_size,
                "epochs": bc.epochs,
                "best_epoch": run.best_epoch,
                "val": run.val,
                "test": run.test,
                "seconds": round(time.perf_counter() - t0, 1),
                "device": run.extra["device"],
                "train_samples_s": round(run.history[-1]["train_samples_per_s"], 1),
                "params": cfg.sources,
                "overrides": a.overrides,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
        mean = {
            f"{split}_{k}": float(np.mean([r[split][k] for r in rows]))
            for split in ("val", "test")
            for k in ("accuracy", "balanced_accuracy", "auc")
        }
        table.append((name, mean))
    print(f"\n{a.branch}: mean of {a.seeds} seeds, {len(splits['train'])} training items, {bc.epochs} epochs")
    print(f"{'variant':16s} val_acc val_bacc val_auc  test_acc test_bacc test_auc")
    for name, m in table:
        print(
            f"{name:16s} {m['val_accuracy']:.3f}   {m['val_balanced_accuracy']:.3f}    {m['val_auc']:.3f}    "
            f"{m['test_accuracy']:.3f}    {m['test_balanced_accuracy']:.3f}     {m['test_auc']:.3f}"
        )


if __name__ == "__main__":
    main()
