"""Typed study parameters: YAML files merged left to right, validated into dataclasses, saved with every run.

Follows timm's habit: one place holds the defaults, YAML files and ``key=value`` overrides change them, and
the resolved config is written next to the run's outputs so every number can be traced to its settings.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfmm.choices import AGGREGATIONS, IMAGE_SIZES, MAX_LENGTHS, VISUAL_ARCHITECTURES, visual_architecture
from dfmm.errors import ConfigError
from dfmm.params_yaml import MAX_DEPTH, _clip, _load_yaml, _read_yaml, _show


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
    augment: str = "card"  # none | flip | card | strong
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


def retired_message(where: str, key: str) -> str:
    return (
        f"{where}: '{key}' is no longer an option (tried and rejected: docs/experiments.md has its numbers, "
        f"commit {RETIRED_AT} its code)"
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


# ---------------------------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError as e:
                # the option of the value's own kind explains best (a list's item error, not "expected str")
                same_kind = isinstance(value, list) == (typing.get_origin(option) is list)
                errors.insert(0, str(e)) if same_kind else errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {_show(value)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {_show(value)}")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(v, item, f"{where}.{_clip(k, 60)}") for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {_show(value)}")
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got bool {value}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {_show(value)}")
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in values if k not in names), key=str)  # YAML keys may be numbers, null, dates
    if unknown:
        import difflib

        key = unknown[0]
        if cls is Recipe and key in RETIRED_RECIPE_FIELDS:
            raise ConfigError(retired_message(where, key))
        shown = _clip(key, 60)
        if cls is Config:
            names = names - {"sources"}  # written by load_config, not a section of a params file
        close = difflib.get_close_matches(shown, sorted(names), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(names))})"
        if not where:
            raise ConfigError(f"unknown top-level key '{shown}'{hint}")
        raise ConfigError(f"{where}: unknown key '{shown}'{hint}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Hostile params files and overrides are refused cheaply, before anything expands them: no params file is near these.
def parse_override(text: str) -> dict[str, Any]:
    """``visual.epochs=5`` -> ``{"visual": {"epochs": 5}}`` (the value is read as YAML)."""
    if not isinstance(text, str):
        raise ConfigError(f"override {_show(text, 60)}: expected a 'key=value' string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # undecodable bytes on the command line arrive as lone surrogates
        at = len(text[: e.start].encode("utf-8", "surrogateescape"))
        raise ConfigError(f"override '{_clip(text, 120)}': not valid UTF-8 at byte {at}") from None
    if "=" not in text:
        raise ConfigError(f"override '{_clip(text, 120)}': expected key=value, e.g. visual.epochs=5")
    key, raw = text.split("=", 1)
    value = _load_yaml(raw, f"override '{_clip(text, 120)}'") if raw.strip() else ""
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    if len(parts) > MAX_DEPTH:
        raise ConfigError(f"override '{_clip(text, 120)}': key nested more than {MAX_DEPTH} levels deep")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


# Validation beyond types: values a run cannot start with.
_CHOICES = {
    ("study", "budget"): {"demo", "compact", "full"},
    ("study", "device"): {"auto", "cpu", "cuda"},
    ("study", "mixed_precision"): {"auto", "no", "bf16", "fp16"},
    ("visual", "cache"): {"none", "decoded"},
    ("fusion", "pair_rule"): {"either", "both"},
    ("video", "aggregation"): set(AGGREGATIONS),
}
_RECIPE_CHOICES = {
    "optimizer": {"adam", "adamw", "sgd"},
    "schedule": {"constant", "cosine"},
    "augment": {"none", "flip", "card", "strong"},
}


def _at_least(n: int, note: str = "") -> tuple[Any, str]:
    return (lambda v: v >= n, f">= {n}{note}")


def _int_in(lo: int, hi: int, note: str = "") -> tuple[Any, str]:
    return (lambda v: lo <= v <= hi, f"an integer in {lo}..{hi}" + (f" ({note})" if note else ""))


def _between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> tuple[Any, str]:
    def valid(v: float) -> bool:
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

    return valid, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


_POSITIVE = (lambda v: v > 0, "> 0")
_EPOCH_VAL = (lambda v: v == 0 or v >= 2, "0 (the whole validation split) or >= 2 (one item of each class)")
_ALL = " (0 = all)"
# Numeric fields: (check, what the error message says is expected). Every float must also be finite.
_RANGES = {
    ("study", "seed"): _at_least(0),
    ("study", "num_workers"): _at_least(0),
    ("data", "max_images"): _at_least(0, _ALL),
    ("data", "max_texts"): _at_least(0, _ALL),
    ("data", "max_eval_images"): _at_least(0, _ALL),
    ("data", "max_eval_texts"): _at_least(0, _ALL),
    ("data", "max_cross"): _at_least(0, _ALL),
    ("data", "epoch_val_images"): _EPOCH_VAL,
    ("data", "epoch_val_texts"): _EPOCH_VAL,
    ("data", "val_fraction"): _between(0.0, 0.5, lo_open=True, hi_open=True),
    ("data", "test_fraction"): _between(0.0, 0.5, lo_open=True, hi_open=True),
    ("data", "synthetic_images"): _at_least(2, " (one real and one fake)"),
    ("data", "synthetic_texts"): _at_least(2, " (one human and one AI text)"),
    ("data", "synthetic_videos"): _at_least(0, " (0 = none)"),
    ("data", "synthetic_image_size"): _at_least(2),
    ("visual", "image_size"): _int_in(*IMAGE_SIZES, "pixels: what a checkpoint can serve"),
    ("visual", "batch_size"): _at_least(1),
    ("visual", "eval_batch_size"): _at_least(1),
    ("visual", "epochs"): _at_least(1),
    ("visual", "dropout"): _between(0.0, 1.0, hi_open=True),  # 1 would zero every feature
    ("visual", "seeds"): _at_least(1),
    ("visual", "gradcam_examples"): _at_least(0),
    ("visual", "speed_check_steps"): _at_least(0, " (0 = skip)"),
    ("text", "max_length"): _int_in(*MAX_LENGTHS, "tokens: what a checkpoint can serve"),
    ("text", "batch_size"): _at_least(1),
    ("text", "epochs"): _at_least(1),
    ("text", "hidden"): _at_least(1),
    ("text", "dropout"): _between(0.0, 1.0, hi_open=True),
    ("text", "seeds"): _at_least(1),
    ("text", "speed_check_texts"): _at_least(0, " (0 = skip)"),
    ("fusion", "epochs"): _at_least(1),
    ("fusion", "lr"): _POSITIVE,
    ("video", "num_frames"): _at_least(1),
    ("generalization", "fit_texts"): _at_least(0, _ALL),
    ("generalization", "held_texts"): _at_least(0, _ALL),
    ("generalization", "min_items"): _at_least(1),
}
_RECIPE_RANGES = {  # the same for every recipe of both branches
    "lr": _POSITIVE,
    "weight_decay": _at_least(0),
    "head_lr_mult": _POSITIVE,
    "warmup_fraction": _between(0.0, 1.0),
    "label_smoothing": _between(0.0, 1.0, hi_open=True),  # 1 makes every target 0.5: nothing to learn
    "batch_size": _at_least(0, " (0 = the branch's batch_size)"),
    "seeds": _at_least(0, " (0 = the branch's seeds)"),
}


def _check_range(origin: str, key: str, value: Any, check: tuple[Any, str], overrides: list[str]) -> None:
    valid, expected = check
    if isinstance(value, float) and not math.isfinite(value):
        expected = f"a finite {expected[2:]}" if expected.startswith("a number") else f"a finite number {expected}"
    elif valid(value):
        return
    raise ConfigError(f"{_blame(origin, key, overrides)}: {key} = {_show(value)}; expected {expected}")


def _blame(origin: str, key: str, overrides: list[str]) -> str:
    """``origin``, or ``origin (-p key=value)`` when the last override of ``key`` set it."""
    source = next((o for o in reversed(overrides) if o.split("=", 1)[0].strip() == key), None)
    return f"{origin} (-p {_clip(source, 120)})" if source else origin


def _check_ranges(cfg: Config, origin: str, overrides: list[str] | None = None) -> None:
    """Numbers a run cannot start with (epochs -1, lr 0, dropout 1.5, NaN): refused before any work starts."""
    for (section, key), check in _RANGES.items():
        _check_range(origin, f"{section}.{key}", getattr(getattr(cfg, section), key), check, overrides or [])
    for branch in ("visual", "text"):
        for rname, recipe in getattr(cfg, branch).recipes.items():
            for key, check in _RECIPE_RANGES.items():
                where = f"{branch}.recipes.{rname}.{key}"
                _check_range(origin, where, getattr(recipe, key), check, overrides or [])


def _check_values(cfg: Config, origin: str, overrides: list[str] | None = None) -> None:
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            where = _blame(origin, f"{section}.{key}", overrides or [])
            raise ConfigError(f"{where}: {section}.{key} = {_show(value)}; expected one of {sorted(allowed)}")
    for branch in ("visual", "text"):
        bc = getattr(cfg, branch)
        for rname, recipe in bc.recipes.items():
            for key, allowed in _RECIPE_CHOICES.items():
                if getattr(recipe, key) not in allowed:
                    full = f"{branch}.recipes.{_clip(rname, 60)}.{key}"
                    raise ConfigError(
                        f"{_blame(origin, full, overrides or [])}: {full} = {_show(getattr(recipe, key))}; "
                        f"expected one of {sorted(allowed)}"
                    )
        if bc.recipes and bc.report_recipe not in bc.recipes:
            raise ConfigError(
                f"{_blame(origin, f'{branch}.report_recipe', overrides or [])}: {branch}.report_recipe "
                f"{_show(bc.report_recipe)} is not among {_show(sorted(bc.recipes))}"
            )
    _check_ranges(cfg, origin, overrides)
    _check_backbone(cfg, origin, overrides or [])
    _check_source_lists(cfg, origin, overrides or [])
    name = cfg.study.name
    if not _FOLDER_NAME.fullmatch(name):
        got = f" (got {len(name):,} characters)" if len(name) > _FOLDER_NAME_MAX else ""
        raise ConfigError(
            f"{_blame(origin, 'study.name', overrides or [])}: study.name = {_show(name, 80)}; expected a plain "
            f"folder name: 1-{_FOLDER_NAME_MAX} letters, digits, '.', '_' or '-', not starting with '.' or '-'{got}"
        )


def _check_source_lists(cfg: Config, origin: str, overrides: list[str]) -> None:
    """A list of training sources names at least one, each a real source (the demo's ``synthetic`` stands alone)."""
    for key in ("images", "texts"):
        items = getattr(cfg.data, key)
        if not isinstance(items, list):
            continue
        where = _blame(origin, f"data.{key}", overrides)
        if not items:
            raise ConfigError(f"{where}: data.{key} is an empty list; name at least one training source")
        for i, item in enumerate(items):
            if item.path in ("", "synthetic"):
                raise ConfigError(
                    f"{where}: data.{key}[{i}].path = {_show(item.path)}; a list names real sources "
                    f"(the demo data is data.{key}: synthetic, alone)"
                )


def _check_backbone(cfg: Config, origin: str, overrides: list[str]) -> None:
    """A visual backbone whose architecture a checkpoint may name (``dfmm.choices.VISUAL_ARCHITECTURES``): training
    must never write a model that loading refuses. A text encoder's type is known once its config is read
    (``dfmm.models.branches.build_text`` checks it before training)."""
    spec, v = cfg.visual.backbone, cfg.visual
    name = spec[4:] if spec.startswith("hub:") else v.timm_name if spec.startswith("file:") else None
    if name and visual_architecture(name) not in VISUAL_ARCHITECTURES:
        key = "visual.backbone" if spec.startswith("hub:") else "visual.timm_name"
        raise ConfigError(
            f"{_blame(origin, key, overrides)}: {key} names {_show(name, 80)}; a dfmm checkpoint holds one of "
            f"{', '.join(VISUAL_ARCHITECTURES)} (optionally with a timm weight tag, e.g. efficientnet_b0.ra_in1k)"
        )


# study.name names the run and report folders: runs/NAME, reports/NAME
_FOLDER_NAME_MAX = 100
_FOLDER_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9._-]{{0,{_FOLDER_NAME_MAX - 1}}}")


def load_config(paths: list[str | Path] | tuple[str | Path, ...], overrides: list[str] | None = None) -> Config:
    """Merge the params files left to right, then the ``key=value`` overrides, and validate."""
    if not paths:
        raise ConfigError("no params file given, e.g. dfmm study params/demo.yaml")
    merged: dict[str, Any] = {}
    for p in paths:
        data = _read_yaml(Path(p))
        try:  # validate each file on its own so the error names the file with the typo
            alone = _build(Config, _merge({}, data), "")
        except ConfigError as e:
            raise ConfigError(f"{_clip(p, 300)}: {e}") from None
        _check_ranges(alone, _clip(p, 300))  # and the file with the out-of-range number
        merged = _merge(merged, data)
    origin = _clip(" + ".join(str(p) for p in paths), 400)
    for o in overrides or []:
        extra = parse_override(o)
        try:  # and each override on its own: an unknown key or a wrong type is the override's, not the files'
            _build(Config, extra, "")
        except ConfigError as e:
            raise ConfigError(f"{origin} (-p {_clip(o, 120)}): {e}") from None
        merged = _merge(merged, extra)
    try:
        cfg = _build(Config, merged, "")
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None
    cfg.sources = [str(p) for p in paths] + [f"-p {o}" for o in overrides or []]
    _check_values(cfg, origin, overrides)
    return cfg


def _without_retired(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config without the retired recipe fields, which it may hold at their defaults (and only there)."""
    out = copy.deepcopy(data)
    for branch in ("visual", "text"):
        recipes = (out.get(branch) or {}).get("recipes") or {}
        for name, recipe in recipes.items():
            if not isinstance(recipe, dict):
                continue
            for key, default in RETIRED_RECIPE_FIELDS.items():
                if key in recipe and recipe.pop(key) != default:
                    raise ConfigError(retired_message(f"{branch}.recipes.{name}", key) + "; this dfmm cannot rerun it")
    return out


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a saved (resolved) config, e.g. ``runs/NAME/config.json`` (one saved before the retired recipe
    fields were removed too, when it held them at their defaults)."""
    return _build(Config, _without_retired(data), "")


def load_resolved(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"resolved config not found: {path}")
    try:
        return config_from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
