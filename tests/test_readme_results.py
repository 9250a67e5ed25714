"""The README's results block is the committed compact report's, as ``dfmm.study.report.readme_results`` renders it."""

from __future__ import annotations

import json

import pytest

from dfmm.study.report import README_END, README_START, readme_results, update_readme

from .conftest import ROOT


def test_readme_results_block_matches_the_committed_compact_report():
    report = ROOT / "reports" / "compact" / "metrics.json"
    if not report.is_file():
        pytest.skip("no committed compact report")
    text = (ROOT / "README.md").read_text()
    block = README_START + text.split(README_START, 1)[1].split(README_END, 1)[0] + README_END
    expected = readme_results(json.loads(report.read_text()), "reports/compact/index.html")
    assert block == expected, "README results are stale: run `make readme-results`"


def test_update_readme_replaces_only_the_block(tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    metrics = {"visual": {"recipes": {"improved": {"test": {"n": 10, "accuracy": 0.7, "auc": 0.8}}}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{README_START}\nold\n{README_END}\n\n## after\n")
    assert update_readme(readme, folder)
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\n## after\n") and "old" not in text
    assert "| visual / improved | test | 10 | 0.700 |" in text
    assert not update_readme(readme, folder)  # idempotent
