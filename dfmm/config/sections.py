"""The study's parameters as dataclasses, one per section of a params file (``study``, ``data``, ``visual``, ``text``,
``fusion``, ``video``, ``generalization``; recipes and training-source items inside them), each field with its
default, once; ``Config`` gathers them with the run's derived locations, its digest and ``save``. The recipe fields
the study retired are listed here too, with the message that refuses them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfmm.files import BRANCH_CHECKPOINTS, ENSEMBLE_CHECKPOINT, SCORE_CACHE


@dataclass
class Recipe:
    """One training recipe. ``card`` is the data card's exact config; ``improved`` is ours."""

    optimizer: str = "adam"  # adam | adamw | sgd (Nesterov momentum 0.9)
    lr: float = 1e-4
    weight_decay: float = 1e-4
    head_lr_mult: float = 1.0  # discriminative learning rates: head lr = lr * head_lr_mult
    schedule: str = "constant"  # constant | cosine
    warmup_fraction: float = 0.0  # of all steps
    label_smoothing: float = 0.0
    # none | flip | card | strong | degrade (a flip, then JPEG, blur or downscaling at the robustness sweep's levels)
    augment: str = "card"
    trainable: str = "all"  # all | norm: only the normalisation layers and the head learn (images; GenD, 2025)
    # images: none | self_blend (each real face also as a self-blended pseudo-fake, landmark masks; SBI, 2022) |
    # self_blend_only (reals against pseudo-fakes alone: the training split's fakes are left out)
    pseudo_fakes: str = "none"
    # images: weight of a metric-learning term on the unit-norm features, alignment (same-class pairs close) plus
    # uniformity (features spread over the sphere): GenD's hyperspherical recipe (Wang & Isola, ICML 2020)
    metric_loss: float = 0.0
    pair_batches: bool = False  # keep a real and its fake (same group) in the same batch
    balanced: bool = False  # class-balanced loss: each class contributes half, whatever the counts
    tta: bool = False  # horizontal-flip test-time augmentation (images only)
    batch_size: int = 0  # 0 = the branch's batch_size; smaller batches give more updates for the same epochs
    calibrate: bool = False  # pick the decision threshold on the validation split (max balanced accuracy)
    seeds: int = 0  # 0 = the branch's seeds; e.g. 3 for the recipe whose targets are a mean over seeds


# Recipe fields that benchmarks/recipe_sweep.py tried and the study rejected, removed after commit 6575cbe (which
# still has their code; docs/experiments.md has their numbers). A config.json saved before then holds them at these
# values, which is the same as not holding them.
RETIRED_RECIPE_FIELDS: dict[str, Any] = {
    "grad_clip": 0.0,
    "freeze_norm": False,
    "pair_loss": 0.0,
    "ema": 0.0,
    "layer_decay": 1.0,
    "head_only_fraction": 0.0,
    "self_blend": False,
    "global_pool": "avg",
    "mid_level": -1,
}
RETIRED_AT = "6575cbe"


RETIRED_SUCCESSORS = {"self_blend": "pseudo_fakes: self_blend (landmark masks) replaces it"}


def retired_message(where: str, key: str) -> str:
    successor = f"; {RETIRED_SUCCESSORS[key]}" if key in RETIRED_SUCCESSORS else ""
    return (
        f"{where}: '{key}' is no longer an option (tried and rejected: docs/experiments.md has its numbers, "
        f"commit {RETIRED_AT} its code){successor}"
    )


@dataclass
class StudyConfig:
    name: str = "demo"
    budget: str = "demo"  # demo | compact | full
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16
    num_workers: int = 0
    runs_dir: str = "runs"
    reports_dir: str = "reports"
    notebooks: list[str] = field(default_factory=list)  # empty = all of notebooks/, in order


@dataclass
class SourceItem:
    """One training source of a list in ``data.images`` / ``data.texts`` (``dfmm.data.sources``)."""

    path: str  # a folder, .parquet, .jsonl or .csv file, or hub:<dataset>
    source: str = ""  # its name in tables and folds (default: from the path)
    generator: str = ""  # the generator of its fakes, for rows that do not name one
    family: str = ""  # the generator's family (GAN, diffusion, face swap...)
    domain: str = ""  # the domain of its rows (news, reviews...), for rows that do not name one


@dataclass
class DataConfig:
    # A source is "synthetic", "hub:<dataset>", a folder (images: real/ + fake/), a .parquet, .jsonl or .csv file;
    # images and texts may also list several training sources, each with its name (SourceItem, dfmm.data.sources).
    images: str | list[SourceItem] = "synthetic"
    texts: str | list[SourceItem] = "synthetic"
    videos: str = "synthetic"  # folder with real/ and fake/ clips, "synthetic", or "" for none
    cross_images: dict[str, str] = field(default_factory=dict)  # name -> folder/parquet, never trained on
    cross_texts: dict[str, str] = field(default_factory=dict)
    hub_split: str = "train"
    max_images: int = 0  # training images (0 = all)
    max_texts: int = 0  # training texts (0 = all)
    max_eval_images: int = 0  # per validation/test split (0 = all)
    max_eval_texts: int = 0
    max_cross: int = 0  # per cross-dataset test set (0 = all)
    # The best epoch is chosen on a fixed, balanced subset of the validation split of this size (whole groups, the
    # same for every recipe and seed; 0 = the whole split); the kept model is then scored on the whole split.
    epoch_val_images: int = 0
    epoch_val_texts: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    synthetic_images: int = 240
    synthetic_texts: int = 240
    synthetic_videos: int = 4
    synthetic_image_size: int = 96


@dataclass
class VisualConfig:
    backbone: str = "package:efficientnet-lite0"  # hub:<timm name> | package:efficientnet-lite0 | file:<path>
    timm_name: str = ""  # architecture for file: weights
    image_size: int = 224
    batch_size: int = 32
    # images per batch when scoring (validation, test, notebooks 04-06): on 2 CPU cores a Lite0 forward pass runs
    # 1.3-1.6x faster at 8 than at 32 in benchmarks/cpu_paths.py (inside the compact study's training process the two
    # were within the machine's day-to-day drift); a GPU wants more (params/full.yaml)
    eval_batch_size: int = 8
    epochs: int = 3
    dropout: float = 0.2
    recipes: dict[str, Recipe] = field(default_factory=dict)
    report_recipe: str = "improved"  # the recipe whose checkpoint becomes visual_branch.pt
    seeds: int = 1  # train each recipe with seeds study.seed, study.seed + 1, ...; report mean and std
    linear_probe: bool = True
    gradcam_examples: int = 8
    speed_check_steps: int = 0  # notebook 02 times this many batches of our loop vs a plain loop (0 = skip)
    # none | decoded: decode and resize every image once into a memory-mapped uint8 array (dfmm.data.decoded)
    cache: str = "none"


@dataclass
class TextConfig:
    encoder: str = "package:all-MiniLM-L6-v2"  # hub:<model id> | package:all-MiniLM-L6-v2 | <local HF folder>
    max_length: int = 512
    batch_size: int = 16
    epochs: int = 3
    hidden: int = 256
    dropout: float = 0.1
    recipes: dict[str, Recipe] = field(default_factory=dict)
    report_recipe: str = "improved"
    seeds: int = 1
    tfidf_baseline: bool = True
    speed_check_texts: int = 0  # notebook 03 times bucketed vs fixed-padding training on this many texts (0 = skip)


@dataclass
class FusionConfig:
    attention: bool = True  # also train the cross-modal attention variant
    pair_rule: str = "either"  # either | both: when a pair (image, text) counts as fake
    epochs: int = 200
    lr: float = 0.05


@dataclass
class VideoConfig:
    num_frames: int = 32
    aggregation: str = "mean"
    face_crop: bool = True  # score the largest face of each frame, cut like the training crops (dfmm.data.faces)


@dataclass
class GeneralizationConfig:
    """Notebook 07: the held-out-source folds (texts) and the cross-source measures (faces, clips)."""

    fit_texts: int = 2000  # per text source: training texts of the folds' recipes (0 = the whole train split)
    held_texts: int = 1000  # per text source: the held-out texts each fold scores (0 = the whole test split)
    min_items: int = 20  # a fold with fewer held-out items of either class reports null, with the reason
    # fake-only face sets (never trained on): detection rate at the threshold with 5% FPR on validation reals
    fake_only_images: dict[str, str] = field(default_factory=dict)
    # face recipes meant to transfer, each trained once (seed study.seed) on the study's training faces and
    # measured on every face set beside the shipped visual branch
    face_recipes: dict[str, Recipe] = field(default_factory=dict)
    # test faces (balanced, whole groups; 0 = all) on which the face recipes and the shipped branch are compared
    # under post-processing (dfmm.analysis.face_recipe_measures.RECIPE_SWEEP)
    recipe_sweep_items: int = 300


@dataclass
class Config:
    study: StudyConfig = field(default_factory=StudyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    generalization: GeneralizationConfig = field(default_factory=GeneralizationConfig)
    sources: list[str] = field(default_factory=list)  # the params files this config came from

    # ----- derived locations
    @property
    def run_dir(self) -> Path:
        return Path(self.study.runs_dir) / self.study.name

    @property
    def report_dir(self) -> Path:
        return Path(self.study.reports_dir) / self.study.name

    @property
    def cache_dir(self) -> Path:
        """``runs/NAME/cache``: tokens and every score the study computed (:mod:`dfmm.models.score_cache`)."""
        return self.run_dir / SCORE_CACHE

    def checkpoint(self, name: str) -> Path:
        """Where this run keeps a checkpoint: ``"visual"`` / ``"text"`` (the card's branch files) or ``"ensemble"``."""
        return self.run_dir / (ENSEMBLE_CHECKPOINT if name == "ensemble" else BRANCH_CHECKPOINTS[name])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the resolved config: ties a checkpoint and a report to their settings."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        tmp.replace(path)
        return path
