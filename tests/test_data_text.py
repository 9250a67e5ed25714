from __future__ import annotations

import json

import pytest

from dfmm.data.text import load_text_file, load_texts
from dfmm.errors import DataError, HubUnavailable

from .conftest import shared


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_labels_groups_and_meta(tmp_path):
    p = _jsonl(tmp_path / "t.jsonl", [
        {"text": "a human wrote this", "label": 0, "group": "g1", "domain": "news"},
        {"text": "an AI rewrote this", "label": 1, "group": "g1", "domain": "news"},
        {"text": "no group here", "label": "ai"},
    ])  # fmt: skip
    s = load_text_file(p)
    assert s.labels.tolist() == [0, 1, 1]
    assert s.groups[0] == s.groups[1] == "g1" and s.groups[2] not in ("g1", "")
    assert s.meta["domain"][:2] == ["news", "news"]


@pytest.mark.parametrize(
    "line,needle",
    [
        ('{"label": 0}', "no 'text' field"),
        ('{"text": "x", "label": 2}', "label 2 is not 0"),
        ('{"text": "   ", "label": 0}', "empty or whitespace"),
        ('{"text": null, "label": 0}', "missing"),
        ("{not json", "not valid JSON"),
        ('{"text": "x"}', "no 'label'"),
    ],
)
def test_bad_lines_name_the_line(tmp_path, line, needle):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "fine", "label": 0}\n' + line + "\n")
    with pytest.raises(DataError) as e:
        load_text_file(p)
    assert "bad.jsonl:2" in str(e.value) and needle in str(e.value)


def test_non_utf8_line(tmp_path):
    p = tmp_path / "latin.jsonl"
    p.write_bytes(b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 1}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:2: not valid UTF-8"):
        load_text_file(p)


def test_other_scripts_and_huge_texts_load(tmp_path):
    p = _jsonl(
        tmp_path / "t.jsonl",
        [{"text": "这是一个由人类写的句子。", "label": 0}, {"text": "word " * 1_000_000, "label": 1}],
    )
    s = load_text_file(p)
    assert s.texts[0].startswith("这是") and len(s.texts[1]) == 1_000_000  # capped before tokenising


def test_artem9k_schema_from_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [1, 2, 3], "source": ["human", "ai", "human"], "text": ["a b", "c d", "e f"]})
    pq.write_table(table, tmp_path / "pile.parquet")
    s = load_texts(str(tmp_path / "pile.parquet"))
    assert s.labels.tolist() == [0, 1, 0]


def test_csv_with_text_and_label(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('text,label\n"hello, world",0\nbye,1\n')
    assert load_texts(str(p)).labels.tolist() == [0, 1]


def test_unreachable_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailable, match="artem9k/ai-text-detection-pile.*offline"):
        load_texts("hub:artem9k/ai-text-detection-pile")


@pytest.mark.shared_data
def test_real_l2r_counts():
    s = load_text_file(shared("text", "l2r_rewrites", "data.jsonl"))
    assert s.counts() == {"human": 3750, "ai": 14823}
