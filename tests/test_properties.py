"""Property-based tests (hypothesis) for the data layer: group-aware splits, budget subsets, label mappings.

Each property states what the code promises for *any* input of its kind, not for one hand-picked example:
splits partition the items, keep groups whole and cut each stratum within one group of the requested
fractions; subsets are seeded, capped and balanced exactly as far as the data allows; every source schema's
label words map to the one internal convention (0 real/human, 1 fake/AI) and back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfmm.data.images import load_image_folder, load_image_parquet
from dfmm.data.labels import FAKE, NAMES, REAL, hemg_to_internal, parse_label
from dfmm.data.splits import SPLITS, split_by_group, subset_by_group
from dfmm.data.text import load_text_file
from dfmm.errors import DataError

from .conftest import ROOT

FAST = settings(max_examples=100, deadline=None)
EPS = 1e-9  # the code compares float cumulative fractions; allow for rounding at an exact boundary

# The label words each source schema uses, written out here (not read from dfmm) so a dropped word fails.
REAL_WORDS = ("0", "real", "human", "original")  # CSV 0, folder real/, artem9k source=human
FAKE_WORDS = ("1", "fake", "ai", "deepfake", "generated")  # CSV 1, folder fake/, artem9k source=ai
WORDS = {**dict.fromkeys(REAL_WORDS, REAL), **dict.fromkeys(FAKE_WORDS, FAKE)}
HEMG_NAMES = {0: "Fake", 1: "Real"}  # Hemg/deepfake-and-real-images' own ClassLabel names
ARTEM9K = {REAL: "human", FAKE: "ai"}  # artem9k/ai-text-detection-pile's `source` values

group_names = st.text(max_size=6)  # any Unicode text hypothesis draws (lone surrogates: see the JSONL test below)
fractions = st.floats(min_value=0.0, max_value=0.45, allow_nan=False)
seeds = st.integers(min_value=-(2**40), max_value=2**40)


@st.composite
def labelled_groups(draw, min_size=1, max_size=60, singletons=False, min_groups=1):
    """``(labels, groups)``: 0/1 labels, string groups; shared groups may hold both classes (a face and its fakes)."""
    n = draw(st.integers(min_size, max_size))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    k = n if singletons else draw(st.integers(min(min_groups, n), n))
    names = draw(st.lists(group_names, min_size=k, max_size=k, unique=True))
    if singletons:
        return labels, names
    extra = draw(st.lists(st.integers(0, k - 1), min_size=n - k, max_size=n - k))
    which = draw(st.permutations(list(range(k)) + extra))  # every one of the k groups is used
    return labels, [names[j] for j in which]


def _members(groups):
    out = defaultdict(list)
    for i, g in enumerate(groups):
        out[g].append(i)
    return out


def _same(a, b):
    return all(np.array_equal(a[name], b[name]) for name in SPLITS)


# ------------------------------------------------------------------------------------------------ splits
@FAST
@given(labelled_groups(), fractions, fractions, seeds)
def test_split_is_a_partition_that_keeps_every_group_whole(data, val, test, seed):
    labels, groups = data
    s = split_by_group(labels, groups, val, test, seed)
    parts = [s[name] for name in SPLITS]
    everything = np.concatenate(parts)
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and covering
    assert all(np.array_equal(p, np.sort(p)) and p.dtype.kind == "i" for p in parts)
    where = {g: {name for name in SPLITS for i in s[name] if groups[i] == g} for g in set(groups)}
    assert all(len(names) == 1 for names in where.values()), where  # no group straddles two splits
    assert s.sizes() == {name: len(s[name]) for name in SPLITS}


@FAST
@given(labelled_groups(), fractions, fractions, seeds)
def test_split_cuts_each_stratum_within_one_group_of_the_fractions(data, val, test, seed):
    """The docstring's promise, made exact: groups are stratified by their label mix (real only, fake only,
    both); within a stratum of N items whose largest group has m items, the test split holds the largest
    seeded prefix of groups with at most ``test * N`` items, val the next up to ``(test + val) * N``."""
    labels, groups = data
    s = split_by_group(labels, groups, val, test, seed)
    members = _members(groups)
    strata = defaultdict(list)
    for g, idx in members.items():
        strata[(bool((labels[idx] == 0).any()), bool((labels[idx] == 1).any()))].append(g)
    split_of = {int(i): name for name in SPLITS for i in s[name]}
    for gs in strata.values():
        items = [i for g in gs for i in members[g]]
        n, m = len(items), max(len(members[g]) for g in gs)
        count = Counter(split_of[i] for i in items)
        t, tv = count["test"], count["test"] + count["val"]
        assert t <= test * n + EPS and t > test * n - m - EPS, (t, test, n, m)
        assert tv <= (test + val) * n + EPS and tv > (test + val) * n - m - EPS, (tv, test + val, n, m)


@FAST
@given(labelled_groups(singletons=True), fractions, fractions, seeds)
def test_split_of_singletons_is_within_one_item_per_class(data, val, test, seed):
    labels, groups = data
    s = split_by_group(labels, groups, val, test, seed)
    for c in (REAL, FAKE):
        n = int((labels == c).sum())
        got = {name: int((labels[s[name]] == c).sum()) for name in SPLITS}
        assert abs(got["test"] - test * n) < 1 + EPS and got["test"] <= test * n + EPS
        assert abs(got["val"] - val * n) < 1 + EPS
        assert abs(got["train"] - (1 - test - val) * n) < 1 + EPS
        assert sum(got.values()) == n


@FAST
@given(labelled_groups(), fractions, fractions, seeds)
def test_split_is_a_function_of_data_fractions_and_seed(data, val, test, seed):
    labels, groups = data
    a = split_by_group(labels, groups, val, test, seed)
    b = split_by_group(labels.copy(), list(groups), val, test, seed)
    assert _same(a, b)


@FAST
@given(labelled_groups(min_size=20, min_groups=20), seeds)
def test_split_moves_with_the_seed(data, seed):
    """With 20+ groups and 20 % val / 20 % test there are thousands of possible splits; four other seeds
    all landing on the same one would mean the seed is ignored."""
    labels, groups = data
    base = split_by_group(labels, groups, 0.2, 0.2, seed)
    assert any(not _same(base, split_by_group(labels, groups, 0.2, 0.2, seed + k)) for k in range(1, 5))


def test_split_does_not_depend_on_the_process_hash_seed():
    """The order comes from blake2b, not Python's salted hash(): two interpreters agree."""
    code = (
        "import numpy as np; from dfmm.data.splits import split_by_group;"
        "g = [f'group{i // 3}' for i in range(60)]; y = np.arange(60) % 2;"
        "s = split_by_group(y, g, 0.2, 0.2, 5); print([s[k].tolist() for k in ('train', 'val', 'test')])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hs},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hs in ("0", "12345")
    }
    assert len(outs) == 1


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2) | st.text(max_size=3),
        min_size=1,
        max_size=8,
    ).filter(lambda gs: any(0xD800 <= ord(ch) <= 0xDFFF for g in gs for ch in json.loads(json.dumps(g))))
)
def test_split_takes_any_group_a_jsonl_file_can_carry(groups):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "texts.jsonl"
        rows = [{"text": f"text {i}", "label": i % 2, "group": g} for i, g in enumerate(groups)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # ensure_ascii: "\ud800" escapes
        texts = load_text_file(path)
    assert texts.groups == [json.loads(json.dumps(g)) or f"{path}#{i}" for i, g in enumerate(groups)]
    s = split_by_group(texts.labels, texts.groups, 0.2, 0.2, seed=0)
    assert sorted(np.concatenate([s[n] for n in SPLITS]).tolist()) == list(range(len(groups)))


# ----------------------------------------------------------------------------------------------- subsets
@st.composite
def subset_case(draw, binding=False):
    """``(index, labels, groups, limit)``; with ``binding`` the cap is one that actually cuts (1 .. len - 1)."""
    labels, groups = draw(labelled_groups(min_size=2 if binding else 1))
    n = len(labels)
    index = np.array(sorted(draw(st.sets(st.integers(0, n - 1), min_size=2 if binding else 1, max_size=n))), dtype=int)
    limit = draw(st.integers(1, len(index) - 1) if binding else st.integers(-2, len(index) + 2))
    return index, labels, groups, limit


def _cut_groups(sub, index, labels, groups, cls=None):
    """Groups of ``index`` that the subset took in part; with ``cls``, counting only that class's items."""
    keep = set(sub.tolist())
    members = defaultdict(list)
    for i in index.tolist():
        if cls is None or labels[i] == cls:
            members[groups[i]].append(i)
    return {g for g, idx in members.items() if 0 < sum(i in keep for i in idx) < len(idx)}


@FAST
@given(subset_case(), seeds, st.booleans())
def test_subset_is_a_seeded_capped_part_of_its_index(case, seed, balanced):
    index, labels, groups, limit = case
    sub = subset_by_group(index, labels, groups, limit, seed, balanced=balanced)
    if limit <= 0 or limit >= len(index):  # 0 (the config's "all") and generous caps keep everything
        assert np.array_equal(sub, index)
        return
    assert len(sub) == limit  # the cap, exactly: it fills from the other class rather than return fewer
    assert len(set(sub.tolist())) == limit and set(sub.tolist()) <= set(index.tolist())
    assert np.array_equal(sub, np.sort(sub))
    again = subset_by_group(index.copy(), labels.copy(), list(groups), limit, seed, balanced=balanced)
    assert np.array_equal(sub, again)


@FAST
@given(subset_case(binding=True), seeds)
def test_balanced_subset_takes_half_of_each_class_as_far_as_the_data_allows(case, seed):
    index, labels, groups, limit = case
    sub = subset_by_group(index, labels, groups, limit, seed, balanced=True)
    have = {c: int((labels[index] == c).sum()) for c in (REAL, FAKE)}
    quota = {REAL: limit // 2, FAKE: limit - limit // 2}
    real = int((labels[sub] == REAL).sum())
    # the quota when both classes have enough; else all of the short class and the rest from the other
    assert real == min(have[REAL], max(quota[REAL], limit - have[FAKE]))
    assert len(sub) - real == min(have[FAKE], max(quota[FAKE], limit - have[REAL]))


@FAST
@given(subset_case(), seeds)
def test_balanced_subset_cuts_at_most_one_group_per_class(case, seed):
    """Each class's items are taken in the seeded group order until its quota, so per class at most one
    group is taken in part. (A group holding both classes can still lose its surplus fakes to the balance:
    whole groups are *not* promised when a group is not itself balanced.)"""
    index, labels, groups, limit = case
    sub = subset_by_group(index, labels, groups, limit, seed, balanced=True)
    for c in (REAL, FAKE):
        assert len(_cut_groups(sub, index, labels, groups, cls=c)) <= 1


@FAST
@given(subset_case(), seeds)
def test_unbalanced_subset_takes_whole_groups_and_cuts_at_most_one(case, seed):
    index, labels, groups, limit = case
    sub = subset_by_group(index, labels, groups, limit, seed, balanced=False)
    assert len(_cut_groups(sub, index, labels, groups)) <= 1


@FAST
@given(labelled_groups(), fractions, fractions, seeds, st.integers(0, 30), st.integers(0, 30))
def test_capped_splits_still_never_share_a_group(data, val, test, seed, train_cap, eval_cap):
    """What ``dfmm.data._splits`` does: split, then cap each split with its own balanced subset."""
    labels, groups = data
    s = split_by_group(labels, groups, val, test, seed)
    capped = {
        name: subset_by_group(s[name], labels, groups, train_cap if name == "train" else eval_cap, seed)
        for name in SPLITS
    }
    seen = {name: {groups[i] for i in capped[name]} for name in SPLITS}
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    for name in SPLITS:
        cap = train_cap if name == "train" else eval_cap
        assert set(capped[name].tolist()) <= set(s[name].tolist())
        assert len(capped[name]) == (len(s[name]) if cap <= 0 else min(cap, len(s[name])))


# ------------------------------------------------------------------------------------------------ labels
@st.composite
def spelled(draw, words):
    """A label word as a file might spell it: any letter case, stray whitespace around it."""
    word = draw(st.sampled_from(words))
    upper = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    pad = st.text(st.sampled_from(" \t\r\n"), max_size=3)
    return draw(pad) + "".join(ch.upper() if u else ch for ch, u in zip(word, upper, strict=True)) + draw(pad), word


@FAST
@given(spelled(REAL_WORDS + FAKE_WORDS))
def test_parse_label_maps_every_schema_word_to_its_class(case):
    text, word = case
    label = parse_label(text)
    assert label == WORDS[word]
    assert parse_label(NAMES[label]) == label  # and the internal name maps back to the same class


@FAST
@given(st.sampled_from([REAL, FAKE]))
def test_parse_label_round_trips_numbers_and_names(label):
    assert parse_label(label) == label and parse_label(float(label)) == label and parse_label(str(label)) == label
    assert parse_label(NAMES[label]) == label and NAMES[parse_label(NAMES[label])] == NAMES[label]


@FAST
@given(
    st.one_of(
        st.none(),
        st.booleans(),  # True == 1 in Python, but a bool is not a label
        st.integers().filter(lambda v: v not in (0, 1)),
        st.floats().filter(lambda v: v not in (0.0, 1.0)),
        st.text().filter(lambda s: s.strip().lower() not in WORDS),
        st.binary(),
        st.lists(st.integers(0, 1), max_size=2),
    )
)
def test_parse_label_rejects_everything_else(value):
    assert parse_label(value) is None


@FAST
@given(st.sampled_from([0, 1]))
def test_hemg_flip_maps_names_right_and_undoes_itself(raw):
    internal = hemg_to_internal(raw)
    assert NAMES[internal] == HEMG_NAMES[raw].lower()  # Hemg 0 "Fake" -> internal 1 fake, 1 "Real" -> 0 real
    assert hemg_to_internal(internal) == raw  # the flip is its own inverse: internal -> Hemg


@FAST
@given(st.integers().filter(lambda v: v not in (0, 1)))
def test_hemg_flip_rejects_other_numbers(raw):
    with pytest.raises(ValueError, match="Hemg label"):
        hemg_to_internal(raw)


@FAST
@given(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=20))
def test_hemg_parquet_labels_are_flipped_on_load(raw):
    table = pa.table({"image": [{"bytes": b"img", "path": f"{i}.png"} for i in range(len(raw))], "label": raw})
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(table, Path(d) / "hemg.parquet")
        images = load_image_parquet(Path(d) / "hemg.parquet")
    assert images.labels.tolist() == [1 - r for r in raw]
    assert [hemg_to_internal(int(v)) for v in images.labels] == raw
    assert images.counts() == {"real": raw.count(1), "fake": raw.count(0)}


@FAST
@given(
    st.lists(st.sampled_from([0, 1]), min_size=1, max_size=10),
    st.one_of(st.integers(-(2**63), 2**63 - 1).filter(lambda v: v not in (0, 1)), st.none()),
    st.data(),
)
def test_hemg_parquet_refuses_a_row_with_another_label(raw, bad, data):
    at = data.draw(st.integers(0, len(raw)))
    labels = raw[:at] + [bad] + raw[at:]
    table = pa.table(
        {"image": [{"bytes": b"img", "path": f"{i}.png"} for i in range(len(labels))], "label": pa.array(labels)}
    )
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(table, Path(d) / "hemg.parquet")
        with pytest.raises(DataError, match=f"row {at}: label"):
            load_image_parquet(Path(d) / "hemg.parquet")


@FAST
@given(st.lists(spelled(("human", "ai")), min_size=1, max_size=20))
def test_artem9k_source_maps_to_labels_and_back(rows):
    sources = [text for text, _ in rows]
    table = pa.table({"text": [f"some text {i}" for i in range(len(rows))], "source": sources})
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(table, Path(d) / "pile.parquet")
        texts = load_text_file(Path(d) / "pile.parquet")
    assert texts.labels.tolist() == [REAL if word == "human" else FAKE for _, word in rows]
    assert [ARTEM9K[int(v)] for v in texts.labels] == [word for _, word in rows]
    assert texts.counts() == {"human": sum(w == "human" for _, w in rows), "ai": sum(w == "ai" for _, w in rows)}


@FAST
@given(st.one_of(st.text(max_size=8).filter(lambda s: s.strip().lower() not in WORDS), st.none()))
def test_artem9k_refuses_another_source(bad):
    table = pa.table({"text": ["a human text", "an ai text"], "source": ["human", bad]})
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(table, Path(d) / "pile.parquet")
        with pytest.raises(DataError, match="row 1: source"):
            load_text_file(Path(d) / "pile.parquet")


@settings(max_examples=50, deadline=None)  # touches the file system: fewer, still varied, examples
@given(
    st.lists(
        st.tuples(st.sampled_from(["real", "fake"]), st.sampled_from(["", "sub/", "a/b/"])), min_size=2, max_size=8
    ).filter(lambda fs: {f for f, _ in fs} == {"real", "fake"})
)
def test_folder_names_give_the_label_and_back(files):
    with tempfile.TemporaryDirectory() as d:
        for i, (folder, sub) in enumerate(files):
            p = Path(d) / folder / sub / f"img{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\x89PNG")  # never decoded by the loader
        images = load_image_folder(d)
    for name, label in zip(images.names, images.labels, strict=True):
        folder = name.split("/")[0]
        assert label == parse_label(folder) and NAMES[int(label)] == folder
    assert images.counts() == dict(Counter(f for f, _ in files))
