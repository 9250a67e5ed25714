"""One experiment per call: train a branch with a recipe, score it, save its checkpoint; plus the baselines.

Notebooks 02 and 03 call :func:`train_seeds` for each recipe (:func:`train_visual` / :func:`train_text` once
per seed); :func:`visual_linear_probe` (frozen features + logistic regression, as in UniversalFakeDetect) and
:func:`tfidf_baseline` (word 1-2-grams + logistic regression) are the floors a fine-tuned branch must beat.
Notebook 04 joins the branches' held-out outputs into image-text pairs (:class:`PairScores`) and fits the fusion.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from dfmm.config import Config, Recipe
from dfmm.data import epoch_val_rows
from dfmm.data.batches import (
    GroupBatchSampler,
    ImageDataset,
    LengthBucketSampler,
    ShuffledBatchSampler,
    TokenizedTexts,
    collate_images,
)
from dfmm.data.faces import training_crop_geometry
from dfmm.data.images import ImageSet
from dfmm.data.text import TextSet
from dfmm.data.transforms import image_transform
from dfmm.files import TRAINING_STATES
from dfmm.metrics import (
    best_threshold,
    binary_metrics,
    bootstrap_ci,
    fit_temperature,
    mean_std,
    metrics_with_ci,
    paired_bootstrap,
)
from dfmm.models.branches import build_text, build_visual, text_meta, visual_meta
from dfmm.models.checkpoints import save_checkpoint
from dfmm.models.scoring import DecisionRule, predict, sigmoid
from dfmm.training.loop import TrainResult, fit, make_accelerator


@dataclass
class BranchRun:
    branch: str
    recipe: str
    seed: int
    history: list[dict[str, float]]
    best_epoch: int
    val: dict[str, Any]
    test: dict[str, Any]
    backbone: dict[str, Any]
    train_size: int
    seconds: float
    skipped: list[str] = field(default_factory=list)
    checkpoint: str = ""
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly: what metrics.json records for this run."""
        return {
            "branch": self.branch,
            "recipe": self.recipe,
            "seed": self.seed,
            "best_epoch": self.best_epoch,
            "val": self.val,
            "test": self.test,
            "backbone": self.backbone,
            "train_size": self.train_size,
            "seconds": round(self.seconds, 1),
            "skipped": len(self.skipped),
            "checkpoint": self.checkpoint,
            "history": self.history,
            **self.extra,
        }

    def describe(self) -> str:
        """One line for a notebook: the validation metrics, best epoch, time and unreadable training items."""
        v = self.val
        line = (
            f"{self.branch} {self.recipe} seed {self.seed}: val accuracy {v['accuracy']:.3f}, balanced "
            f"{v['balanced_accuracy']:.3f}, AUC {v['auc']:.3f}; best epoch {self.best_epoch}; {self.seconds:.0f} s"
        )
        return line + (f"; skipped {len(self.skipped)} unreadable items" if self.skipped else "")


def _seed_all(seed: int) -> None:
    from accelerate.utils import set_seed

    set_seed(seed)


def image_loader(
    images: ImageSet,
    cfg: Config,
    *,
    mean: Any,
    std: Any,
    seed: int,
    train: bool = False,
    augment: str = "none",
    pairs: bool = False,
    batch_size: int = 0,
    cache: bool | None = None,
    rows: np.ndarray | None = None,
) -> DataLoader:
    """Batches of ``images`` normalised with the backbone's ``mean``/``std``. Training batches (``train``) are
    shuffled each epoch from ``seed``, augmented (``augment``) and, with ``pairs``, keep each group whole; others
    come in dataset order, unaugmented. ``batch_size`` 0 is ``visual.batch_size`` for training and
    ``visual.eval_batch_size`` for scoring. ``cache`` (None: ``visual.cache`` is
    ``decoded``) reads the pixels from the decoded-image cache (``dfmm.data.decoded``), built first when missing;
    a ``strong`` training loader reads the files all the same. ``rows`` (evaluation only): just these items, read
    through the whole set's dataset (and cache), their ``index`` still positions in ``images``."""
    if rows is not None and train:
        raise ValueError("rows selects evaluation items; a training loader takes its items from images")
    augment = augment if train else "none"
    ds: Any = None
    use_cache = cfg.visual.cache == "decoded" if cache is None else cache
    if use_cache:
        from dfmm.data.decoded import decoded_dataset

        ds = decoded_dataset(images, cfg.visual.image_size, mean, std, augment)
    if ds is None:
        ds = ImageDataset(images, image_transform(cfg.visual.image_size, mean, std, augment))
    if rows is not None:
        ds = Subset(ds, np.asarray(rows, dtype=int).tolist())
    bs = batch_size or (cfg.visual.batch_size if train else cfg.visual.eval_batch_size)
    if train and pairs:
        sampler: Any = GroupBatchSampler(ds.groups, bs, seed)
    else:
        sampler = ShuffledBatchSampler(len(ds), bs, seed, shuffle=train)
    return DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=collate_images,
        num_workers=cfg.study.num_workers,
        persistent_workers=cfg.study.num_workers > 0,
    )


def _balance(labels: np.ndarray) -> float | None:
    """The fake class's loss weight that makes each class contribute half (None when a class is missing)."""
    n_fake, n_real = int(labels.sum()), int((labels == 0).sum())
    return n_real / n_fake if n_fake and n_real else None


def train_visual(
    cfg: Config,
    recipe_name: str,
    splits: dict[str, ImageSet],
    *,
    seed: int | None = None,
    save: bool = True,
    states: Path | None = None,
    test: bool = True,
) -> BranchRun:
    """Fine-tune the visual branch with one recipe; score val and test; save ``visual_<recipe>.pt``.

    With ``states`` (a folder) the training saves its state there after every epoch and resumes from the one
    it finds (:func:`training_state`). ``test=False`` scores validation only (``train_seeds``' replicate
    seeds: the study reports their validation numbers, never their test numbers)."""
    recipe: Recipe = cfg.visual.recipes[recipe_name]
    seed = cfg.study.seed if seed is None else seed
    t0 = time.perf_counter()
    _seed_all(seed)
    model, info = build_visual(cfg)
    model = model.to(memory_format=torch.channels_last)
    acc = make_accelerator(cfg.study.device, cfg.study.mixed_precision)
    norm = {"mean": info.mean, "std": info.std, "seed": seed}
    scoring = _score_cache(cfg, save)
    train = image_loader(
        splits["train"],
        cfg,
        **norm,
        train=True,
        augment=recipe.augment,
        pairs=recipe.pair_batches,
        batch_size=recipe.batch_size,
    )
    select = image_loader(
        splits["val"], cfg, **norm, rows=epoch_val_rows(splits["val"], cfg.data.epoch_val_images, cfg.study.seed)
    )
    pos_weight = _balance(train.dataset.labels) if recipe.balanced else None
    result = fit(
        model,
        train,
        select,
        recipe,
        cfg.visual.epochs,
        accelerator=acc,
        pos_weight=pos_weight,
        desc=f"visual {recipe_name}",
        cache_dir=scoring["cache_dir"],
        **training_state(states, cfg, "visual", recipe_name, seed, splits),
    )
    model = acc.unwrap_model(model)
    preds = {}
    for split in _scored_splits(test):
        loader = image_loader(splits[split], cfg, **norm)
        preds[split] = predict(model, loader, acc, tta=recipe.tta, desc=f"score {split}", **scoring)
    rule, scores = _score(preds, recipe.calibrate, _split_groups(splits, preds))
    ckpt = ""
    if save and acc.is_main_process:
        path = cfg.run_dir / f"visual_{recipe_name}.pt"
        geometry = training_crop_geometry(splits["train"], seed=cfg.study.seed)
        meta = {**visual_meta(cfg, info, recipe_name), **rule.to_dict(), "face_crop": geometry.to_meta()}
        ckpt = str(save_checkpoint(path, "visual_branch", model.state_dict(), meta))
    return BranchRun(
        branch="visual",
        recipe=recipe_name,
        seed=seed,
        backbone=info.to_dict(),
        train_size=len(splits["train"]),
        skipped=result.skipped,
        checkpoint=ckpt,
        **_outcome(result, scores, preds, t0),
        extra=_device_and_rule(result, rule),
    )


def _scored_splits(test: bool) -> tuple[str, ...]:
    return ("val", "test") if test else ("val",)


def _score_cache(cfg: Config, save: bool) -> dict[str, Any]:
    """How training scores its splits: through the study's score cache (``dfmm.models.score_cache``), with features for
    the run whose checkpoint is saved, since notebooks 04-06 read that checkpoint's scores and features again."""
    return {"cache_dir": cfg.run_dir / "cache", "features": save}


def _outcome(result: TrainResult, scores: dict[str, Any], preds: dict[str, Any], t0: float) -> dict[str, Any]:
    """The ``BranchRun`` fields that training and scoring give, alike for both branches."""
    return {
        "history": result.history,
        "best_epoch": result.best_epoch,
        "val": scores["val"],
        "test": scores.get("test", {}),
        "predictions": preds,
        "seconds": time.perf_counter() - t0,
    }


def _device_and_rule(result: TrainResult, rule: DecisionRule) -> dict[str, Any]:
    return {"device": result.device, "mixed_precision": result.mixed_precision, **rule.to_dict()}


def _score(
    preds: dict[str, dict[str, np.ndarray]], calibrate: bool, groups: dict[str, np.ndarray] | None = None
) -> tuple[DecisionRule, dict[str, dict[str, Any]]]:
    """The decision rule and the metrics of val and test under it, each with ``ci``: 95% percentile bootstrap
    intervals at the rule's threshold (``metrics_with_ci``, seed 0, so a rerun is bit-identical).

    With ``calibrate`` the rule is fitted on validation data only: a temperature (Guo et al., "On Calibration of
    Modern Neural Networks", ICML 2017: one scalar minimising the validation NLL) and then the threshold with the
    best balanced accuracy on the temperature-scaled validation scores. Test data only scores;
    ``scores["test"]["calibration"]`` holds its ECE and Brier score before and after the temperature. Accuracies at
    0.5 (``at_0.5``, what the targets read) do not depend on the temperature. Without ``calibrate`` the rule is
    plain: temperature 1, threshold 0.5.

    ``groups`` maps a split to one group id per row of ``preds[split]`` (see ``_split_groups``): a group (a real
    face and the fakes made from its video, a human text and its rewrites) is resampled as a whole. Bootstrapping
    happens here, once per run, never per epoch.
    """
    rule = DecisionRule()
    if calibrate:
        temperature = fit_temperature(preds["val"]["labels"], preds["val"]["logits"])
        val_probs = DecisionRule(temperature=temperature).probability(preds["val"]["logits"])
        rule = DecisionRule(best_threshold(preds["val"]["labels"], val_probs), temperature)
    probs = {s: rule.probability(p["logits"]) for s, p in preds.items()}
    g = groups or {}
    scores = {
        s: {**metrics_with_ci(preds[s]["labels"], probs[s], rule.threshold, g.get(s), seed=0), **rule.to_dict()}
        for s in preds
    }
    if calibrate:  # val accuracy at a threshold picked on val is optimistic: keep the figures at 0.5 too
        for s in preds:
            at_half = binary_metrics(preds[s]["labels"], probs[s], 0.5)
            scores[s]["at_0.5"] = {k: at_half[k] for k in ("accuracy", "balanced_accuracy")}
            scores[s]["at_0.5"]["ci"] = bootstrap_ci(preds[s]["labels"], probs[s], 0.5, g.get(s), seed=0)
        if "test" in preds:
            raw = binary_metrics(preds["test"]["labels"], sigmoid(preds["test"]["logits"]), rule.threshold)
            scores["test"]["calibration"] = {
                "temperature": rule.temperature,
                "ece_before": raw["ece"],
                "ece_after": scores["test"]["ece"],
                "brier_before": raw["brier"],
                "brier_after": scores["test"]["brier"],
            }
    return rule, scores


def compare_on_test(
    name_a: str, a: dict[str, np.ndarray], name_b: str, b: dict[str, np.ndarray], groups: Any = None
) -> dict[str, Any]:
    """Paired bootstrap of the test ROC AUC difference a - b on the same items (``paired_bootstrap``, resampled by
    group), for the comparisons the study makes: improved - card, a branch - its floor, fusion - best branch.

    ``a`` and ``b`` hold ``labels`` and ``probs`` in the same item order (both in dataset order, as ``predict``
    and the baselines return them); differing labels mean they are not the same items, which is an error.
    """
    ya, yb = np.asarray(a["labels"]).astype(int), np.asarray(b["labels"]).astype(int)
    if ya.shape != yb.shape or not np.array_equal(ya, yb):
        raise ValueError(f"{name_a} and {name_b} were not scored on the same items")
    out = paired_bootstrap(ya, a["probs"], b["probs"], metric="auc", groups=groups, seed=0)
    return {**out, "a": name_a, "b": name_b, "auc_a": out["a"], "auc_b": out["b"], "split": "test"}


def run_scores(run: BranchRun, split: str = "test") -> dict[str, np.ndarray]:
    """A run's ``labels`` and ``probs`` on a split under its own decision rule, in dataset order."""
    p = run.predictions[split]
    rule = DecisionRule(run.extra.get("threshold", 0.5), run.extra.get("temperature", 1.0))
    return {"labels": p["labels"], "probs": rule.probability(p["logits"]), "index": p["index"]}


def _split_groups(splits: dict[str, Any], preds: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each scored split's group ids aligned with its predictions (``predict`` keeps dataset indices in ``index``
    and skips unreadable items), for the group bootstrap in ``_score``."""
    return {s: np.asarray(splits[s].groups)[np.asarray(p["index"], dtype=int)] for s, p in preds.items()}


class BranchOutputs(NamedTuple):
    """A branch's outputs on a split, row i = item i: what the fusion is fitted on."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray


def branch_outputs(model: Any, loader: DataLoader, tta: bool = False, cache_dir: Any = None) -> BranchOutputs:
    """(features, logits, labels) of every readable item in dataset order, through the branch's ``scored`` (as
    ``classify_multimodal`` serves them: with ``tta`` the visual logits average the mirrored view). With
    ``cache_dir`` (the study's cache) what training already scored with these weights is read, not recomputed."""
    out = predict(model, loader, tta=tta, desc="features", features=True, cache_dir=cache_dir)
    return BranchOutputs(out["features"], out["logits"], out["labels"])


def visual_linear_probe(cfg: Config, splits: dict[str, ImageSet]) -> dict[str, Any]:
    """Frozen pretrained features + logistic regression (UniversalFakeDetect's recipe): is fine-tuning worth it?"""
    from sklearn.linear_model import LogisticRegressionCV

    t0 = time.perf_counter()
    _seed_all(cfg.study.seed)
    model, info = build_visual(cfg)
    model = model.to(memory_format=torch.channels_last).eval()
    feats = {}
    for split in ("train", "val", "test"):
        loader = image_loader(splits[split], cfg, mean=info.mean, std=info.std, seed=cfg.study.seed)
        feats[split] = branch_outputs(model, loader)
    clf = LogisticRegressionCV(Cs=8, max_iter=2000, cv=3, scoring="roc_auc")
    clf.fit(feats["train"].features, feats["train"].labels)
    out = {"backbone": info.to_dict(), "train_size": len(splits["train"]), "seconds": 0.0}
    for split in ("val", "test"):
        out[split] = binary_metrics(feats[split].labels, clf.predict_proba(feats[split].features)[:, 1])
    test = feats["test"]
    out["scores"] = {"labels": test.labels, "probs": clf.predict_proba(test.features)[:, 1]}  # in dataset order
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# ----------------------------------------------------------------------------------------------------- text
def text_loader(
    tokens: TokenizedTexts,
    batch_size: int,
    *,
    seed: int,
    train: bool = False,
    workers: int = 0,
    rows: np.ndarray | None = None,
) -> DataLoader:
    """Length-bucketed batches of tokenised texts: shuffled each epoch from ``seed`` when ``train``, else in
    length order. ``rows`` (evaluation only): just these texts, their ``index`` still positions in ``tokens``."""
    if rows is not None and train:
        raise ValueError("rows selects evaluation items; a training loader takes its items from tokens")
    dataset, lengths = tokens, tokens.lengths
    if rows is not None:
        rows = np.asarray(rows, dtype=int)
        dataset, lengths = Subset(tokens, rows.tolist()), tokens.lengths[rows]
    return DataLoader(
        dataset,
        batch_sampler=LengthBucketSampler(lengths, batch_size, seed, shuffle=train),
        collate_fn=tokens.collate,
        num_workers=workers,
    )


def train_text(
    cfg: Config,
    recipe_name: str,
    splits: dict[str, TextSet],
    *,
    seed: int | None = None,
    save: bool = True,
    states: Path | None = None,
    test: bool = True,
) -> BranchRun:
    """Fine-tune the text branch with one recipe; score val and test; save ``text_<recipe>.pt`` (``states`` and
    ``test``: as :func:`train_visual`)."""
    recipe: Recipe = cfg.text.recipes[recipe_name]
    seed = cfg.study.seed if seed is None else seed
    t0 = time.perf_counter()
    _seed_all(seed)
    model, tokenizer, info = build_text(cfg)
    cache = cfg.run_dir / "cache"
    tokens = {s: TokenizedTexts(splits[s], tokenizer, cfg.text.max_length, cache) for s in ("train", "val", "test")}
    bs = recipe.batch_size or cfg.text.batch_size
    loaders = {
        s: text_loader(tokens[s], bs if s == "train" else cfg.text.batch_size, seed=seed, train=s == "train")
        for s in tokens
    }
    chosen = epoch_val_rows(splits["val"], cfg.data.epoch_val_texts, cfg.study.seed)
    loaders["select"] = text_loader(tokens["val"], cfg.text.batch_size, seed=seed, rows=chosen)
    labels = splits["train"].labels
    pos_weight = _balance(labels) if recipe.balanced else None
    acc = make_accelerator(cfg.study.device, cfg.study.mixed_precision)
    scoring = _score_cache(cfg, save)
    result = fit(
        model,
        loaders["train"],
        loaders["select"],
        recipe,
        cfg.text.epochs,
        accelerator=acc,
        pos_weight=pos_weight,
        desc=f"text {recipe_name}",
        cache_dir=scoring["cache_dir"],
        **training_state(states, cfg, "text", recipe_name, seed, splits),
    )
    model = acc.unwrap_model(model)
    preds = {s: predict(model, loaders[s], acc, desc=f"score {s}", **scoring) for s in _scored_splits(test)}
    rule, scores = _score(preds, recipe.calibrate, _split_groups(splits, preds))
    ckpt = ""
    if save and acc.is_main_process:
        meta = {**text_meta(cfg, model, tokenizer, info, recipe_name), **rule.to_dict()}
        ckpt = str(save_checkpoint(cfg.run_dir / f"text_{recipe_name}.pt", "text_branch", model.state_dict(), meta))
    truncated = {s: tokens[s].truncated() for s in tokens}
    return BranchRun(
        branch="text",
        recipe=recipe_name,
        seed=seed,
        backbone=info.to_dict(),
        train_size=len(splits["train"]),
        checkpoint=ckpt,
        **_outcome(result, scores, preds, t0),
        extra={
            "truncated": truncated,
            "max_length": cfg.text.max_length,
            "pos_weight": pos_weight,
            **_device_and_rule(result, rule),
        },
    )


@dataclass
class SeedRuns:
    """One recipe trained with seeds ``study.seed``, ``study.seed + 1``, ...: the first run saved its checkpoint."""

    runs: list[BranchRun]

    @property
    def first(self) -> BranchRun:
        return self.runs[0]

    def summary(self) -> dict[str, Any]:
        """Mean and standard deviation over seeds of the validation metrics (``mean_std``)."""
        return mean_std([r.val for r in self.runs])

    def record(self) -> dict[str, Any]:
        """What metrics.json records for the recipe: the first run, the mean over seeds and each seed's val."""
        return {
            **self.first.summary(),
            "seeds_summary": self.summary(),
            "seed_runs": [r.val | {"seed": r.seed} for r in self.runs],
        }


def train_seeds(cfg: Config, branch: str, recipe_name: str, splits: dict[str, Any]) -> SeedRuns:
    """Train ``branch`` (visual | text) with one recipe once per seed: the recipe's ``seeds`` or else the branch's,
    from ``study.seed`` up; only the first seed saves its checkpoint (the one ``promote`` copies) and is scored on
    the test split: the others are replicates whose validation numbers give the mean and sd over seeds (their test
    scores were never reported; skipping them saves about 3 minutes of the compact study). Every training keeps its
    state in ``runs/NAME/resume/`` so that an interrupted notebook, rerun, resumes each one where it stopped (a
    finished one returns at once); ``dfmm study`` empties that folder unless ``--resume``."""
    train = {"visual": train_visual, "text": train_text}[branch]
    bc = getattr(cfg, branch)
    n = bc.recipes[recipe_name].seeds or bc.seeds
    states = cfg.run_dir / TRAINING_STATES
    return SeedRuns(
        [
            train(cfg, recipe_name, splits, seed=cfg.study.seed + i, save=i == 0, states=states, test=i == 0)
            for i in range(n)
        ]
    )


def training_state_path(states: Path, branch: str, recipe_name: str, seed: int) -> Path:
    return Path(states) / f"{branch}_{recipe_name}_seed{seed}.pt"


def training_state(
    states: Path | None, cfg: Config, branch: str, recipe_name: str, seed: int, splits: dict[str, Any]
) -> dict[str, Any]:
    """``fit``'s ``state_path`` and ``fingerprint`` for one training: a state is resumed only by the same config,
    dfmm code, branch, recipe, seed and split sizes."""
    if states is None:
        return {}
    from dfmm.files import code_digest, digest_of

    sizes = {k: len(v) for k, v in splits.items()}
    return {
        "state_path": training_state_path(states, branch, recipe_name, seed),
        "fingerprint": digest_of([cfg.digest(), code_digest(), branch, recipe_name, seed, sizes]),
    }


def tfidf_baseline(splits: dict[str, TextSet], extra: dict[str, TextSet] | None = None) -> dict[str, Any]:
    """Word 1-2-gram TF-IDF + class-balanced logistic regression on the same training texts: the floor."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True)
    x = vec.fit_transform(splits["train"].texts)
    clf = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced")
    clf.fit(x, splits["train"].labels)
    out: dict[str, Any] = {"train_size": len(splits["train"])}
    for name, ts in {"val": splits["val"], "test": splits["test"], **(extra or {})}.items():
        out[name] = binary_metrics(ts.labels, clf.predict_proba(vec.transform(ts.texts))[:, 1])
    out["scores"] = {
        "labels": splits["test"].labels,
        "probs": clf.predict_proba(vec.transform(splits["test"].texts))[:, 1],
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def promote(run: BranchRun, name: str, run_dir: Path, reference: Any = None) -> Path:
    """Copy a recipe's checkpoint to the card's file name (``visual_branch.pt`` / ``text_branch.pt``), with the
    out-of-distribution ``reference`` (``dfmm.training.reference.fit_ood_reference``) when one is given."""
    import shutil

    from dfmm.models.checkpoints import attach_references

    dst = Path(run_dir) / name
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(run.checkpoint, tmp)
    tmp.replace(dst)
    if reference is not None:
        attach_references(dst, {run.branch: reference})
    return dst


# --------------------------------------------------------------------------------------------------- fusion
def make_pairs(n_images: int, n_texts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair held-out images with held-out texts of the same split, each item used once, in a seeded order."""
    rng = np.random.default_rng(seed)
    n = min(n_images, n_texts)
    return rng.permutation(n_images)[:n], rng.permutation(n_texts)[:n]


@dataclass
class PairScores:
    """Image-text pairs of held-out items: each part's branch features, logits and label, and the pair's label."""

    visual_features: np.ndarray
    visual_logits: np.ndarray
    visual_labels: np.ndarray
    text_features: np.ndarray
    text_logits: np.ndarray
    text_labels: np.ndarray
    labels: np.ndarray  # the pair's: fake (1) or real (0) under the pair rule

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, index: np.ndarray) -> PairScores:
        """The pairs at ``index``."""
        return PairScores(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def mix(self) -> dict[str, int]:
        """How many pairs join each kind of image with each kind of text."""
        return pair_mix(self.visual_labels, self.text_labels)

    def fusion_inputs(self) -> tuple[torch.Tensor, ...]:
        """(visual logits, text logits, visual features, text features): the fusion module's arguments."""
        arrays = (self.visual_logits, self.text_logits, self.visual_features, self.text_features)
        return tuple(torch.as_tensor(a, dtype=torch.float32) for a in arrays)


def pair_outputs(visual: BranchOutputs, text: BranchOutputs, seed: int, rule: str) -> PairScores:
    """Held-out outputs of images and texts (``branch_outputs``) joined into pairs by ``make_pairs``.

    The splits may differ in size: each item is used at most once, ``min(n_images, n_texts)`` pairs.
    """
    ii, ti = make_pairs(len(visual.labels), len(text.labels), seed)
    return PairScores(
        visual_features=visual.features[ii],
        visual_logits=visual.logits[ii],
        visual_labels=visual.labels[ii],
        text_features=text.features[ti],
        text_logits=text.logits[ti],
        text_labels=text.labels[ti],
        labels=pair_labels(visual.labels[ii], text.labels[ti], rule),
    )


def split_pairs(pairs: PairScores, fraction: float, seed: int) -> tuple[PairScores, PairScores]:
    """(fit, select): the pairs split at random, ``fraction`` of them (at least one) held out to choose among
    fitted fusion variants, so that the test pairs score the chosen one and choose nothing."""
    n = len(pairs)
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, round(n * fraction)))
    return pairs.rows(order[k:]), pairs.rows(order[:k])


def fused_probs(fusion: Any, pairs: PairScores) -> np.ndarray:
    """P(fake) of each pair from a fitted fusion module."""
    with torch.no_grad():
        return torch.sigmoid(fusion(*pairs.fusion_inputs())).numpy()


def pair_labels(image_labels: np.ndarray, text_labels: np.ndarray, rule: str) -> np.ndarray:
    """``either``: a pair is fake if either part is fake; ``both``: only if both are."""
    a, b = image_labels.astype(bool), text_labels.astype(bool)
    return (a | b if rule == "either" else a & b).astype(np.float32)


def pair_mix(image_labels: np.ndarray, text_labels: np.ndarray) -> dict[str, int]:
    a, b = image_labels.astype(int), text_labels.astype(int)
    names = ("real", "fake")
    return {f"image_{names[i]}_text_{names[j]}": int(((a == i) & (b == j)).sum()) for i in (0, 1) for j in (0, 1)}


def train_fusion(fusion: Any, pairs: PairScores, *, epochs: int, lr: float, seed: int) -> list[dict[str, float]]:
    """Full-batch Adam on the fusion parameters only (branches frozen) for ``epochs`` steps, keeping the last;
    returns the loss and the weights after each step.

    Not :func:`dfmm.training.loop.fit`: that loop keeps the epoch with the best validation AUC, and these pairs have
    no validation split of their own (the held-out ones choose between fusion variants).
    """
    torch.manual_seed(seed)
    vl, tl, vf, tf = pairs.fusion_inputs()
    y = torch.as_tensor(pairs.labels, dtype=torch.float32)
    opt = torch.optim.Adam(fusion.parameters(), lr=lr, weight_decay=1e-4)
    history = []
    for epoch in range(1, epochs + 1):
        fusion.train()
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(fusion(vl, tl, vf, tf), y)
        loss.backward()
        opt.step()
        w = fusion.weights().detach().numpy()
        history.append({"epoch": epoch, "loss": float(loss.detach()), "w_visual": float(w[0]), "w_text": float(w[1])})
    fusion.eval()
    return history


def save_ensemble(
    path: Path, visual_ckpt: Path, text_ckpt: Path, fusion: Any, fusion_meta: dict[str, Any], cfg: Config
) -> Path:
    """``multimodal_ensemble.pt``: both branches and the fusion module, tensors only."""
    from dfmm.models.checkpoints import attach_references, load_checkpoint_parts

    _, vs, vm, vrefs = load_checkpoint_parts(visual_ckpt, ("visual_branch",))
    _, ts, tm, trefs = load_checkpoint_parts(text_ckpt, ("text_branch",))
    state = {f"visual.{k}": v for k, v in vs.items()}
    state |= {f"text.{k}": v for k, v in ts.items()}
    state |= {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    meta = {"visual": vm, "text": tm, "fusion": fusion_meta, "config": cfg.to_dict(), "config_digest": cfg.digest()}
    save_checkpoint(path, "multimodal_ensemble", state, meta)
    refs = {b: r for b, r in (("visual", vrefs.get("visual")), ("text", trefs.get("text"))) if r is not None}
    return attach_references(path, refs) if refs else path
