"""One experiment per call: train a branch with a recipe, score it with its decision rule, save its checkpoint.

Notebooks 02 and 03 call :func:`train_seeds` for each recipe (:func:`train_branch` once per seed, with the branch's
:class:`BranchSpec`: :data:`VISUAL` or :data:`TEXT`; ``dfmm train`` calls it through :func:`train_visual` /
:func:`train_text`) and :func:`promote` the shipped recipe's checkpoint to the card's file name. The floors a branch must beat
are in :mod:`dfmm.training.baselines`, the paired comparisons in :mod:`dfmm.training.comparisons`, the loaders in
:mod:`dfmm.training.loaders` and the fusion (notebook 04) in :mod:`dfmm.training.fusion`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dfmm.config import Config, Recipe
from dfmm.data import epoch_val_rows
from dfmm.data.batches import (
    TokenizedTexts,
)
from dfmm.data.faces import training_crop_geometry
from dfmm.data.images import ImageSet
from dfmm.data.text import TextSet
from dfmm.files import TRAINING_STATES
from dfmm.metrics import (
    mean_std,
)
from dfmm.models.branches import build_text, build_visual, text_meta, visual_meta
from dfmm.models.checkpoints import save_checkpoint
from dfmm.models.scoring import DecisionRule, predict
from dfmm.models.weights import BackboneInfo
from dfmm.training.loaders import image_loader, text_loader
from dfmm.training.loop import ResumeState, apply_trainable, fit, make_accelerator, seed_all
from dfmm.training.rule_fitting import fit_rule_and_score, split_groups


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

    @property
    def rule(self) -> DecisionRule:
        """The decision rule (temperature, threshold) fitted on this run's validation scores, as its checkpoint serves."""
        return DecisionRule(self.extra.get("threshold", 0.5), self.extra.get("temperature", 1.0))

    def describe(self) -> str:
        """One line for a notebook: the validation metrics, best epoch, time and unreadable training items."""
        v = self.val
        line = (
            f"{self.branch} {self.recipe} seed {self.seed}: val accuracy {v['accuracy']:.3f}, balanced "
            f"{v['balanced_accuracy']:.3f}, AUC {v['auc']:.3f}; best epoch {self.best_epoch}; {self.seconds:.0f} s"
        )
        return line + (f"; skipped {len(self.skipped)} unreadable items" if self.skipped else "")


def _balance(labels: np.ndarray) -> float | None:
    """The fake class's loss weight that makes each class contribute half (None when a class is missing)."""
    n_fake, n_real = int(labels.sum()), int((labels == 0).sum())
    return n_real / n_fake if n_fake and n_real else None


class BuiltBranch(NamedTuple):
    """A freshly built branch: the model, its backbone's description and (text) its tokenizer."""

    model: nn.Module
    info: BackboneInfo
    tokenizer: Any = None


@dataclass
class BranchLoaders:
    """What one training reads: shuffled training batches, the validation rows that choose the epoch, a loader
    per split to score afterwards, and what the branch records about them (text: how many texts were cut)."""

    train: DataLoader
    select: DataLoader
    scored: Callable[[str], DataLoader]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BranchSpec:
    """What differs between training the visual and the text branch; :func:`train_branch` does the rest.

    ``build`` makes the pretrained model, ``loaders`` its batches for a recipe and seed, ``meta`` its checkpoint
    metadata (the decision rule is added to it), ``mirrored`` whether the recipe's ``tta`` (the mirrored view) is
    scored, ``extra`` what a run records besides the device and rule (given the loaders and the loss weight)."""

    name: str
    build: Callable[[Config], BuiltBranch]
    loaders: Callable[[Config, Recipe, dict[str, Any], BuiltBranch, int], BranchLoaders]
    meta: Callable[[Config, BuiltBranch, str, dict[str, Any]], dict[str, Any]]
    extra: Callable[[BranchLoaders, float | None], dict[str, Any]]
    mirrored: bool = False


def _build_visual(cfg: Config) -> BuiltBranch:
    model, info = build_visual(cfg)
    return BuiltBranch(model.to(memory_format=torch.channels_last), info)


def _visual_loaders(
    cfg: Config, recipe: Recipe, splits: dict[str, ImageSet], built: BuiltBranch, seed: int
) -> BranchLoaders:
    mean, std = built.info.mean, built.info.std
    train = image_loader(
        splits["train"],
        cfg,
        mean=mean,
        std=std,
        seed=seed,
        train=True,
        augment=recipe.augment,
        pairs=recipe.pair_batches,
        batch_size=recipe.batch_size,
        pseudo_fakes=recipe.pseudo_fakes,
    )
    rows = epoch_val_rows(splits["val"], cfg.data.epoch_val_images, cfg.study.seed)
    select = image_loader(splits["val"], cfg, mean=mean, std=std, seed=seed, rows=rows)
    return BranchLoaders(train, select, lambda split: image_loader(splits[split], cfg, mean=mean, std=std, seed=seed))


def _visual_checkpoint_meta(
    cfg: Config, built: BuiltBranch, recipe_name: str, splits: dict[str, ImageSet]
) -> dict[str, Any]:
    geometry = training_crop_geometry(splits["train"], seed=cfg.study.seed)  # how serving crops faces like these
    return visual_meta(cfg, built.info, recipe_name) | {"face_crop": geometry.to_meta()}


def _build_text(cfg: Config) -> BuiltBranch:
    model, tokenizer, info = build_text(cfg)
    return BuiltBranch(model, info, tokenizer)


def _text_loaders(
    cfg: Config, recipe: Recipe, splits: dict[str, TextSet], built: BuiltBranch, seed: int
) -> BranchLoaders:
    tokens = {
        s: TokenizedTexts(splits[s], built.tokenizer, cfg.text.max_length, cfg.cache_dir)
        for s in ("train", "val", "test")
    }
    bs = recipe.batch_size or cfg.text.batch_size
    loaders = {
        s: text_loader(tokens[s], bs if s == "train" else cfg.text.batch_size, seed=seed, train=s == "train")
        for s in tokens
    }
    rows = epoch_val_rows(splits["val"], cfg.data.epoch_val_texts, cfg.study.seed)
    select = text_loader(tokens["val"], cfg.text.batch_size, seed=seed, rows=rows)
    truncated = {s: tokens[s].truncated() for s in tokens}
    return BranchLoaders(
        loaders["train"], select, loaders.__getitem__, {"truncated": truncated, "max_length": cfg.text.max_length}
    )


def _text_checkpoint_meta(cfg: Config, built: BuiltBranch, recipe_name: str, splits: dict[str, TextSet]) -> dict:
    return text_meta(cfg, built.model, built.tokenizer, built.info, recipe_name)


def _visual_extra(loaders: BranchLoaders, pos_weight: float | None) -> dict[str, Any]:
    """Self-blended training (``pseudo_fakes``): how many pseudo-fakes, and on what share of them MTCNN found the
    landmarks that place the blend mask."""
    ds = loaders.train.dataset
    if not hasattr(ds, "found_landmarks"):
        return {}
    return {"pseudo_fakes": len(ds.real), "landmarks_found": ds.found_landmarks}


VISUAL = BranchSpec("visual", _build_visual, _visual_loaders, _visual_checkpoint_meta, _visual_extra, mirrored=True)
TEXT = BranchSpec(
    "text",
    _build_text,
    _text_loaders,
    _text_checkpoint_meta,
    lambda loaders, pos_weight: loaders.extra | {"pos_weight": pos_weight},
)
BRANCHES = {spec.name: spec for spec in (VISUAL, TEXT)}  # keyed by dfmm.choices.BRANCH_NAMES


def train_branch(
    spec: BranchSpec,
    cfg: Config,
    recipe_name: str,
    splits: dict[str, Any],
    *,
    seed: int | None = None,
    save: bool = True,
    states: Path | None = None,
    test: bool = True,
) -> BranchRun:
    """Fine-tune a branch (``spec``: :data:`VISUAL` or :data:`TEXT`) with one recipe; score val and test with the
    decision rule fitted on val; save ``<branch>_<recipe>.pt``.

    With ``states`` (a folder) the training saves its state there after every epoch and resumes from the one
    it finds (:func:`training_state`). ``test=False`` scores validation only (``train_seeds``' replicate
    seeds: the study reports their validation numbers, never their test numbers). ``save`` also keeps each scored
    item's features in the score cache, since notebooks 04-07 read the saved checkpoint's features again."""
    branch = getattr(cfg, spec.name)
    recipe: Recipe = branch.recipes[recipe_name]
    seed = cfg.study.seed if seed is None else seed
    t0 = time.perf_counter()
    seed_all(seed)
    built = spec.build(cfg)
    apply_trainable(built.model, recipe)
    loaders = spec.loaders(cfg, recipe, splits, built, seed)
    pos_weight = _balance(splits["train"].labels) if recipe.balanced else None
    acc = make_accelerator(cfg.study.device, cfg.study.mixed_precision)
    result = fit(
        built.model,
        loaders.train,
        loaders.select,
        recipe,
        branch.epochs,
        accelerator=acc,
        pos_weight=pos_weight,
        desc=f"{spec.name} {recipe_name}",
        cache_dir=cfg.cache_dir,
        resume=training_state(states, cfg, spec.name, recipe_name, seed, splits),
    )
    model = acc.unwrap_model(built.model)
    tta = recipe.tta and spec.mirrored
    preds = {
        s: predict(model, loaders.scored(s), acc, tta=tta, desc=f"score {s}", cache_dir=cfg.cache_dir, features=save)
        for s in _scored_splits(test)
    }
    rule, scores = fit_rule_and_score(preds, recipe.calibrate, split_groups(splits, preds))
    ckpt = ""
    if save and acc.is_main_process:
        meta = spec.meta(cfg, built, recipe_name, splits) | rule.to_dict()
        path = cfg.run_dir / f"{spec.name}_{recipe_name}.pt"
        ckpt = str(save_checkpoint(path, f"{spec.name}_branch", model.state_dict(), meta))
    return BranchRun(
        branch=spec.name,
        recipe=recipe_name,
        seed=seed,
        history=result.history,
        best_epoch=result.best_epoch,
        val=scores["val"],
        test=scores.get("test", {}),
        backbone=built.info.to_dict(),
        train_size=len(splits["train"]),
        seconds=time.perf_counter() - t0,
        skipped=result.skipped,
        checkpoint=ckpt,
        predictions=preds,
        extra=spec.extra(loaders, pos_weight)
        | {"device": result.device, "mixed_precision": result.mixed_precision, **rule.to_dict()},
    )


def train_visual(cfg: Config, recipe_name: str, splits: dict[str, ImageSet], **how: Any) -> BranchRun:
    """:func:`train_branch` of the visual branch (``how``: its keywords)."""
    return train_branch(VISUAL, cfg, recipe_name, splits, **how)


def train_text(cfg: Config, recipe_name: str, splits: dict[str, TextSet], **how: Any) -> BranchRun:
    """:func:`train_branch` of the text branch (``how``: its keywords)."""
    return train_branch(TEXT, cfg, recipe_name, splits, **how)


def _scored_splits(test: bool) -> tuple[str, ...]:
    return ("val", "test") if test else ("val",)


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
    spec = BRANCHES[branch]
    bc = getattr(cfg, branch)
    n = bc.recipes[recipe_name].seeds or bc.seeds
    states = cfg.run_dir / TRAINING_STATES
    return SeedRuns(
        [
            train_branch(
                spec, cfg, recipe_name, splits, seed=cfg.study.seed + i, save=i == 0, states=states, test=i == 0
            )
            for i in range(n)
        ]
    )


def train_face_recipes(cfg: Config, splits: dict[str, ImageSet]) -> dict[str, BranchRun]:
    """Notebook 07's face recipes (``generalization.face_recipes``): each trained once, seed ``study.seed``, on the
    study's training faces like a visual recipe, scored on validation only (the decision rule's split; their test
    numbers are the held-out face sets), saved as ``visual_<name>.pt`` and resumable like ``train_seeds``."""
    import dataclasses

    runs = {}
    for name, recipe in cfg.generalization.face_recipes.items():
        own = dataclasses.replace(cfg, visual=dataclasses.replace(cfg.visual, recipes={name: recipe}))
        runs[name] = train_branch(VISUAL, own, name, splits, states=cfg.run_dir / TRAINING_STATES, test=False)
    return runs


def training_state_path(states: Path, branch: str, recipe_name: str, seed: int) -> Path:
    return Path(states) / f"{branch}_{recipe_name}_seed{seed}.pt"


def training_state(
    states: Path | None, cfg: Config, branch: str, recipe_name: str, seed: int, splits: dict[str, Any]
) -> ResumeState | None:
    """Where one training keeps its state (None: nowhere) and its fingerprint: a state is resumed only by the same
    config, dfmm code, branch, recipe, seed and split sizes."""
    if states is None:
        return None
    from dfmm.files import code_digest, digest_of

    sizes = {k: len(v) for k, v in splits.items()}
    fingerprint = digest_of([cfg.digest(), code_digest(), branch, recipe_name, seed, sizes])
    return ResumeState(training_state_path(states, branch, recipe_name, seed), fingerprint)


def promote(run: BranchRun, dst: Path, reference: Any = None) -> Path:
    """Copy a recipe's checkpoint to ``dst`` (the card's file name: ``cfg.checkpoint("visual")`` / ``("text")``),
    with the out-of-distribution ``reference`` (``dfmm.training.reference.fit_ood_reference``) when one is given."""
    import shutil

    from dfmm.models.checkpoints import attach_references

    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(run.checkpoint, tmp)
    tmp.replace(dst)
    if reference is not None:
        attach_references(dst, {run.branch: reference})
    return dst
