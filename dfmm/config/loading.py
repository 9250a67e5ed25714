"""Loading a config: params files merged left to right, ``key=value`` overrides on top, each checked on its own so
an error names the file or override at fault (``load_config``); and rebuilding a saved, resolved config
(``config_from_dict``, ``load_resolved``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from dfmm.config.checks import _check_ranges, _check_values
from dfmm.config.coerce import _build
from dfmm.config.sections import RETIRED_RECIPE_FIELDS, Config, retired_message
from dfmm.errors import ConfigError
from dfmm.params_yaml import MAX_DEPTH, _clip, _load_yaml, _read_yaml, _show


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
