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


class _WordTokenizer:
    """A stand-in fast tokenizer: [CLS]=1, one id per word (its length + 10), [SEP]=2; pad 0."""

    name_or_path = "words"
    pad_token_id, sep_token_id, eos_token_id = 0, 2, None

    def __len__(self) -> int:
        return 1000

    def __call__(self, texts, **kwargs):
        return {"input_ids": [[1, *(len(w) + 10 for w in t.split()), 2] for t in texts]}


def test_tokenised_texts_over_several_arrow_chunks_equal_the_tokenizer_cut_at_max_length(tmp_path):
    import numpy as np
    import torch

    from dfmm.data.batches import TokenizedTexts
    from dfmm.data.text import TextSet

    rng = np.random.default_rng(0)
    texts = [" ".join("w" * int(k) for k in rng.integers(1, 9, rng.integers(0, 40))) for _ in range(2500)]
    items = TextSet(texts, np.arange(2500) % 2, [str(i) for i in range(2500)])
    tok = _WordTokenizer()
    expected = [[1, *(len(w) + 10 for w in t.split()), 2] for t in texts]
    cut = [e if len(e) <= 16 else [*e[:15], 2] for e in expected]  # the closing [SEP] is kept
    built = TokenizedTexts(items, tok, 16, tmp_path)  # 1,000 texts a batch: three Arrow chunks
    (cached,) = tmp_path.glob("tokens-*.arrow")
    again = TokenizedTexts(items, tok, 16, tmp_path)  # read from the file
    in_memory = TokenizedTexts(items, tok, 16)
    for t in (built, again, in_memory):
        assert len(t) == 2500 and t.lengths.tolist() == [len(c) for c in cut]
        assert t.full_lengths.tolist() == [len(e) for e in expected]
        assert t.truncated() == sum(len(e) > 16 for e in expected) > 0
        for i in (0, 999, 1000, 1001, 1999, 2000, 2499):
            assert torch.equal(t[i]["ids"], torch.tensor(cut[i])) and t[i]["index"] == i
    assert list(tmp_path.glob("tokens-*.arrow")) == [cached]
    TokenizedTexts(items, tok, 8, tmp_path)  # another max_length: another file
    assert len(list(tmp_path.glob("tokens-*.arrow"))) == 2
    empty = TokenizedTexts(items.subset([]), tok, 16, tmp_path)
    assert len(empty) == 0 and empty.truncated() == 0
