"""Validation beyond types: the values a run cannot start with (choices of named options, numeric ranges, the
visual backbone's architecture, lists of training sources, the run's folder name), refused before any work starts
with a message that blames the params files or the ``-p`` override that set the value."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from dfmm.choices import AGGREGATIONS, IMAGE_SIZES, MAX_LENGTHS, VISUAL_ARCHITECTURES, visual_architecture
from dfmm.config.sections import Config
from dfmm.errors import ConfigError
from dfmm.files import BRANCH_CHECKPOINTS
from dfmm.params_yaml import _clip, _show

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
    "augment": {"none", "flip", "card", "strong", "degrade"},
    "trainable": {"all", "norm"},
    "pseudo_fakes": {"none", "self_blend", "self_blend_only"},
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
    ("generalization", "recipe_sweep_items"): _at_least(0, _ALL),
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
    "metric_loss": _at_least(0, " (0 = none)"),
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
    for prefix, recipe in _all_recipes(cfg):
        for key, check in _RECIPE_RANGES.items():
            _check_range(origin, f"{prefix}.{key}", getattr(recipe, key), check, overrides or [])


def _all_recipes(cfg: Config) -> list[tuple[str, Any]]:
    """(where, recipe) for every recipe of the params: each branch's, and notebook 07's face recipes."""
    named = [(f"{b}.recipes", getattr(cfg, b).recipes) for b in ("visual", "text")]
    named.append(("generalization.face_recipes", cfg.generalization.face_recipes))
    return [(f"{where}.{_clip(name, 60)}", r) for where, recipes in named for name, r in recipes.items()]


def _check_values(cfg: Config, origin: str, overrides: list[str] | None = None) -> None:
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            where = _blame(origin, f"{section}.{key}", overrides or [])
            raise ConfigError(f"{where}: {section}.{key} = {_show(value)}; expected one of {sorted(allowed)}")
    for prefix, recipe in _all_recipes(cfg):
        for key, allowed in _RECIPE_CHOICES.items():
            if getattr(recipe, key) not in allowed:
                full = f"{prefix}.{key}"
                raise ConfigError(
                    f"{_blame(origin, full, overrides or [])}: {full} = {_show(getattr(recipe, key))}; "
                    f"expected one of {sorted(allowed)}"
                )
    taken = set(cfg.visual.recipes) | {Path(f).stem.removeprefix("visual_") for f in BRANCH_CHECKPOINTS.values()}
    clash = sorted(set(cfg.generalization.face_recipes) & taken)
    if clash:
        where = _blame(origin, f"generalization.face_recipes.{_clip(clash[0], 60)}", overrides or [])
        raise ConfigError(
            f"{where}: face recipe {_show(clash[0])} would save over visual_{_clip(clash[0], 60)}.pt of the study "
            "(a visual recipe or the shipped branch); give it another name"
        )
    for prefix, recipe in _all_recipes(cfg):
        image_only = {"metric_loss": 0.0, "pseudo_fakes": "none"}
        if prefix.startswith("text."):
            for key, default in image_only.items():
                if getattr(recipe, key) != default:
                    where = _blame(origin, f"{prefix}.{key}", overrides or [])
                    raise ConfigError(
                        f"{where}: {prefix}.{key} = {_show(getattr(recipe, key))} is for face recipes; a text recipe "
                        f"takes {_show(default)}"
                    )
        if recipe.pseudo_fakes != "none" and (recipe.augment == "strong" or recipe.balanced):
            bad = "augment: strong (it crops the original image)" if recipe.augment == "strong" else "balanced: true"
            where = _blame(origin, f"{prefix}.pseudo_fakes", overrides or [])
            raise ConfigError(
                f"{where}: {prefix}.pseudo_fakes = {_show(recipe.pseudo_fakes)} cannot be combined with {bad}"
            )
    for branch in ("visual", "text"):
        bc = getattr(cfg, branch)
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
