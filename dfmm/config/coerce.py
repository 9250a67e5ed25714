"""Type validation of params: a YAML mapping checked against the dataclass annotations of
:mod:`dfmm.config.sections` and built into them (``_build``), with one-line ``ConfigError`` messages that name the
key and suggest the closest known one for a typo."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from dfmm.config.sections import RETIRED_RECIPE_FIELDS, Config, Recipe, retired_message
from dfmm.errors import ConfigError
from dfmm.params_yaml import _clip, _show


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
