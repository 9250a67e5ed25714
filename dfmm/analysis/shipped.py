"""What a study ships for users (notebook 07): ``runs/NAME/shipped/`` holds ``visual_branch.pt``, ``text_branch.pt``
and ``multimodal_ensemble.pt``, the recipes that win held-out-source validation, or the card's (``improved``) files
where none does. The card's own files in ``runs/NAME/`` are never replaced: notebooks 02-07 read them, and the
card's tables are theirs.

When the n-gram text recipe wins (``generalization.ngram_ship_decision``), its branch is refitted on every fit text
of every source (``dfmm.training.ngram_branch``) and the fusion head is fitted again as notebook 04 fits it (same
pairs, variants and choice on held-out validation pairs), since the new branch's logits have another scale. The
shipped ensemble is measured on the card's test pairs (the same images and texts, paired alike), beside the card's
ensemble, with a paired bootstrap interval of the difference.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dfmm.config import Config
from dfmm.data.text import TextSet
from dfmm.files import BRANCH_CHECKPOINTS, ENSEMBLE_CHECKPOINT
from dfmm.metrics import interval, metric_draws
from dfmm.serving.evaluate import score_branch
from dfmm.serving.inference import load_model
from dfmm.training.fusion import BranchOutputs, fit_fusion_variants, fused_probs, pair_outputs, save_ensemble
from dfmm.training.ngram_branch import train_text_ngrams

SHIPPED = "shipped"  # runs/NAME/shipped/


def shipped_dir(cfg: Config) -> Path:
    return cfg.run_dir / SHIPPED


PAIR_SPLITS = {"val": 0, "test": 1}  # split -> its pairing seed offset (notebook 04: study.seed + i)


def branch_pairs(
    cfg: Config,
    vis: Any,
    txt: Any,
    isplits: dict[str, Any],
    tsplits: dict[str, Any],
    splits: tuple[str, ...] = ("val", "test"),
) -> dict[str, Any]:
    """Image-text pairs of two loaded branches on ``splits``, built as notebook 04 builds them (each split's
    held-out outputs through ``score_branch``, paired with seed ``study.seed + PAIR_SPLITS[split]`` under
    ``fusion.pair_rule``)."""
    pairs = {}
    for split in splits:
        images = score_branch(vis, "visual", isplits[split], cfg.visual.eval_batch_size, cfg.cache_dir, features=True)
        texts = score_branch(txt, "text", tsplits[split], cfg.text.batch_size, cfg.cache_dir, features=True)
        visual, text = BranchOutputs.of(images), BranchOutputs.of(texts)
        seed = cfg.study.seed + PAIR_SPLITS[split]
        pairs[split] = pair_outputs(visual, text, seed=seed, rule=cfg.fusion.pair_rule)
    return pairs


def ship_models(
    cfg: Config,
    isplits: dict[str, Any],
    tsplits: dict[str, TextSet],
    ngram_pool: TextSet | None = None,
    ngram_features: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write ``runs/NAME/shipped/`` (into a temporary folder, renamed into place: never half-written) and return
    what it holds: the card's visual branch (no face recipe is chosen on a held-out face source: there is none to
    train on); the n-gram text branch fitted on ``ngram_pool`` (its rows' frozen encoder features
    ``ngram_features``) with a refitted ensemble, or the card's text branch and ensemble when ``ngram_pool`` is
    None."""
    out = shipped_dir(cfg)
    tmp = out.with_name(f".{SHIPPED}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(cfg.checkpoint("visual"), tmp / BRANCH_CHECKPOINTS["visual"])
    record: dict[str, Any] = {"folder": f"{SHIPPED}/", "visual": cfg.visual.report_recipe}
    if ngram_pool is None:
        shutil.copyfile(cfg.checkpoint("text"), tmp / BRANCH_CHECKPOINTS["text"])
        shutil.copyfile(cfg.checkpoint("ensemble"), tmp / ENSEMBLE_CHECKPOINT)
        record |= {"text": cfg.text.report_recipe, "fusion": "the card's (notebook 04)"}
    else:
        text_path = train_text_ngrams(cfg, ngram_pool, ngram_features, tmp / BRANCH_CHECKPOINTS["text"])
        record |= {"text": "TF-IDF n-grams", "fusion": _refit_fusion(cfg, isplits, tsplits, text_path, tmp)}
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return record


def _refit_fusion(cfg: Config, isplits: dict[str, Any], tsplits: dict[str, Any], text_path: Path, tmp: Path) -> dict:
    """Fit the fusion of the card's visual branch and the n-gram text branch, save the ensemble, and measure it
    beside the card's ensemble on the card's test pairs."""
    vis, _ = load_model(cfg.checkpoint("visual"))
    txt, _ = load_model(text_path)
    card, _ = load_model(cfg.checkpoint("ensemble"))
    pairs = branch_pairs(cfg, vis, txt, isplits, tsplits)
    f = cfg.fusion
    fits = fit_fusion_variants(pairs["val"], attention=f.attention, epochs=f.epochs, lr=f.lr, seed=cfg.study.seed)
    fusion = fits.modules[fits.chosen]
    save_ensemble(tmp / ENSEMBLE_CHECKPOINT, cfg.checkpoint("visual"), text_path, fusion, fits.meta(f.pair_rule), cfg)
    card_pairs = branch_pairs(cfg, card, card, isplits, tsplits, ("test",))["test"]
    test = pairs["test"]
    same = all(
        np.array_equal(getattr(test, k), getattr(card_pairs, k)) for k in ("labels", "visual_labels", "text_labels")
    )
    if not same or not np.array_equal(test.visual_logits, card_pairs.visual_logits):  # same items, paired alike
        raise RuntimeError("shipped and card test pairs differ: the branches scored different items")
    auc, draws = metric_draws(test.labels, fused_probs(fusion, test))
    card_auc, card_draws = metric_draws(test.labels, fused_probs(card.fusion, card_pairs))
    return {
        "variant": fits.chosen,
        "weights": fits.weights()[fits.chosen],
        "chosen_on": {"pairs": len(fits.held), "auc": {n: r["auc"] for n, r in fits.selection.items()}},
        "test_pairs": {"n": len(test), "auc": auc, "ci": interval(draws)},
        "card_test_pairs": {"auc": card_auc, "ci": interval(card_draws)},
        "minus_card": auc - card_auc,
        "minus_card_ci": interval(draws - card_draws),
    }
