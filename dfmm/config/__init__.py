"""Typed study parameters: YAML files merged left to right, validated into dataclasses, saved with every run.

Follows timm's habit: one place holds the defaults, YAML files and ``key=value`` overrides change them, and
the resolved config is written next to the run's outputs so every number can be traced to its settings.

The package re-exports what callers import from its modules: the sections (:mod:`dfmm.config.sections`),
type validation (:mod:`dfmm.config.coerce`), value checks (:mod:`dfmm.config.checks`) and loading
(:mod:`dfmm.config.loading`).
"""

from __future__ import annotations

from dfmm.config.checks import _RANGES, _RECIPE_RANGES
from dfmm.config.loading import config_from_dict, load_config, load_resolved, parse_override
from dfmm.config.sections import (
    RETIRED_AT,
    RETIRED_RECIPE_FIELDS,
    Config,
    DataConfig,
    FusionConfig,
    GeneralizationConfig,
    Recipe,
    SourceItem,
    StudyConfig,
    TextConfig,
    VideoConfig,
    VisualConfig,
    retired_message,
)

__all__ = [
    "RETIRED_AT",
    "RETIRED_RECIPE_FIELDS",
    "_RANGES",
    "_RECIPE_RANGES",
    "Config",
    "DataConfig",
    "FusionConfig",
    "GeneralizationConfig",
    "Recipe",
    "SourceItem",
    "StudyConfig",
    "TextConfig",
    "VideoConfig",
    "VisualConfig",
    "config_from_dict",
    "load_config",
    "load_resolved",
    "parse_override",
    "retired_message",
]
