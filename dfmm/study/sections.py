"""The contract of ``metrics.json``: one typed section per notebook, checked when written and when assembled.

Each notebook records one section (``ctx.record("visual", {...})``); :mod:`dfmm.study.report` and :mod:`dfmm.study.targets`
read them. The ``TypedDict`` classes below are that contract, in one place: :func:`check_section` validates a
section against its class (required keys, value types, nested run and metric records) when the notebook records
it, so a malformed section fails in the notebook's own cell, and :func:`check_sections` runs again when the study
assembles the report, so a section that is missing fails the study naming the notebook that should have written
it. Keys beyond the contract are allowed (a notebook may record more); missing or mistyped ones are not.
"""

import types
import typing
from typing import Any, NotRequired, TypedDict, Union

from dfmm.errors import StudyError

Number = float  # an int is accepted where a float is declared (JSON does not tell 3.0 from 3)


class Metrics(TypedDict):
    """``dfmm.metrics.binary_metrics``: the metric set of one split (undefined values are null)."""

    n: int
    accuracy: Number | None
    balanced_accuracy: Number | None
    auc: Number | None


class RunRecord(TypedDict):
    """One trained branch with one recipe (``BranchRun.summary``)."""

    branch: str
    recipe: str
    seed: int
    best_epoch: int
    val: Metrics
    test: Metrics
    history: list[dict[str, Any]]
    checkpoint: str


class DataSection(TypedDict):  # 01_data_exploration
    balance: dict[str, Any]
    formats: dict[str, Any]
    text_lengths: dict[str, Any]
    leakage: dict[str, Any]
    videos: list[Any]


class BranchSection(TypedDict):
    """What notebooks 02 and 03 both record for their branch."""

    backbone: dict[str, Any]
    report_recipe: str
    recipes: dict[str, RunRecord]
    comparisons: NotRequired[list[dict[str, Any]]]
    speed: dict[str, Any]
    checkpoint: str


class VisualSection(BranchSection):  # 02_visual_training
    linear_probe: dict[str, Any]


class TextSection(BranchSection):  # 03_text_training
    tfidf_baseline: dict[str, Any]
    attribution_examples: list[Any]


class FusionSection(TypedDict):  # 04_fusion
    pair_rule: str
    pair_mix: dict[str, Any]
    test_pairs: dict[str, Metrics]
    weights: dict[str, Any]
    chosen: str
    chosen_on: dict[str, Any]
    beats_best_single_auc: bool | None
    comparison: NotRequired[dict[str, Any] | None]
    checkpoint: str


class GradcamSection(TypedDict):  # 05_gradcam_analysis
    counts: dict[str, int]
    deletion: dict[str, Any]
    median_ms_one_image: Number
    image_size: int
    layer: str


class EvaluationSection(TypedDict):  # 06_evaluation
    test: dict[str, Any]
    cross_dataset: dict[str, Any]
    thresholds: dict[str, Any]
    robustness: NotRequired[dict[str, Any] | None]
    format_control: NotRequired[dict[str, Any] | None]
    videos: dict[str, Any] | None


class GeneralizationSection(TypedDict):  # 07_generalization
    texts: dict[str, Any]
    text_sources: dict[str, Any]
    faces: list[dict[str, Any]]
    face_recipes: NotRequired[dict[str, Any]]
    flags: dict[str, Any]
    selective: dict[str, Any]
    clips: list[dict[str, Any]]
    shipped: dict[str, Any]


SECTIONS: dict[str, tuple[str, type]] = {
    "data": ("01_data_exploration", DataSection),
    "visual": ("02_visual_training", VisualSection),
    "text": ("03_text_training", TextSection),
    "fusion": ("04_fusion", FusionSection),
    "gradcam": ("05_gradcam_analysis", GradcamSection),
    "evaluation": ("06_evaluation", EvaluationSection),
    "generalization": ("07_generalization", GeneralizationSection),
}


def _problem(value: Any, kind: Any, where: str) -> str | None:
    """The first way ``value`` breaks type ``kind`` (a one-line message naming the key path), or None."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return None
    if origin in (Union, types.UnionType):
        problems = [_problem(value, k, where) for k in typing.get_args(kind)]
        return None if any(p is None for p in problems) else next(p for p in problems if p)
    if kind is type(None):
        return None if value is None else f"{where}: expected null, got {type(value).__name__}"
    if typing.is_typeddict(kind):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {type(value).__name__}"
        hints = typing.get_type_hints(kind)
        for key in sorted(kind.__required_keys__):
            if key not in value:
                return f"{where}: missing key '{key}'"
        for key, hint in hints.items():
            if key in value:
                problem = _problem(value[key], hint, f"{where}.{key}")
                if problem:
                    return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {type(value).__name__}"
        _, item = typing.get_args(kind)
        return next((p for k, v in value.items() if (p := _problem(v, item, f"{where}.{k}"))), None)
    if origin is list:
        if not isinstance(value, list):
            return f"{where}: expected a list, got {type(value).__name__}"
        (item,) = typing.get_args(kind)
        return next((p for i, v in enumerate(value) if (p := _problem(v, item, f"{where}[{i}]"))), None)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    return None if ok else f"{where}: expected {kind.__name__}, got {type(value).__name__}"


def check_section(name: str, values: Any) -> None:
    """Raise ``ValueError`` (one line, naming the key) when a known section breaks its contract; other section
    names are free-form."""
    if name not in SECTIONS:
        return
    problem = _problem(values, SECTIONS[name][1], name)
    if problem:
        raise ValueError(f"metrics section {problem}")


def check_sections(sections: dict[str, Any], notebooks: list[str]) -> None:
    """At assembly: every notebook that ran recorded its section, and each one keeps the contract; a failure
    names the notebook (``StudyError``)."""
    for name, (notebook, _) in SECTIONS.items():
        if notebook not in notebooks:
            continue
        if name not in sections:
            raise StudyError(f"notebook {notebook} did not record its metrics section '{name}' (ctx.record)")
        try:
            check_section(name, sections[name])
        except ValueError as e:
            raise StudyError(f"notebook {notebook}: {e}") from None
