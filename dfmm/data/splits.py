"""Deterministic, stratified, group-aware splits and subsets.

Items that share a group (a real face and the fakes made from its video, a human text and its AI rewrites)
always land in the same split: otherwise a detector is scored on near-copies of its training data.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")


def _rank(seed: int, key: str) -> int:
    """A seeded, platform-independent order (Python's hash() is salted per process). ``surrogatepass``: a group
    name read from JSON may hold a lone surrogate; every other name encodes exactly as before."""
    return int.from_bytes(
        hashlib.blake2b(f"{seed}:{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {name: len(self[name]) for name in SPLITS}


def split_by_group(
    labels: np.ndarray, groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Assign whole groups to train/val/test, stratified by the group's label mix, in a seeded order.

    Strata in order (no real, no fake) < (fake only) < (real only) < (both); within one, groups in the order of
    ``_rank(seed, group)`` are cut by cumulative item counts: the first ``test_fraction`` of the items go to
    test, the next ``val_fraction`` to val, the rest to train. Memory stays a few numpy arrays of the item count:
    each item's group rank is computed as ``groups`` is read, and items sharing a rank form a group.
    """
    labels = np.asarray(labels)
    n = len(labels)
    runs = _group_runs(groups, np.arange(n), seed)
    if runs is None:  # two different groups with one 64-bit rank (about 1 in 10**8 at a million groups)
        return _split_by_group_dicts(labels, groups, val_fraction, test_fraction, seed)
    order, starts, lengths = runs
    split_of = np.full(n, 2, dtype=np.int8)  # 0 test, 1 val, 2 train
    if n:
        lab = labels[order]
        has_real = np.logical_or.reduceat(lab == 0, starts)
        has_fake = np.logical_or.reduceat(lab == 1, starts)
        stratum = 2 * has_real.astype(np.int8) + has_fake  # sorted((has_real, has_fake)) order
        where = np.zeros(len(starts), dtype=np.int8)
        for key in range(4):
            gs = np.flatnonzero(stratum == key)
            if not len(gs):
                continue
            sizes = lengths[gs]
            # cut by item counts, not group counts, so fractions hold when group sizes differ
            cum = np.cumsum(sizes) / max(sizes.sum(), 1)
            where[gs] = np.where(cum <= test_fraction, 0, np.where(cum <= test_fraction + val_fraction, 1, 2))
        split_of[order] = np.repeat(where, lengths)
    test, val, train = (np.flatnonzero(split_of == k).astype(int) for k in range(3))
    return Split(train, val, test)


def subset_by_group(
    index: np.ndarray, labels: np.ndarray, groups: Sequence[str], limit: int, seed: int, balanced: bool = True
) -> np.ndarray:
    """At most ``limit`` items of ``index``, whole groups first, in a seeded order.

    ``balanced`` aims for half real and half fake (the card's compact budgets are balanced); groups are kept
    whole while they fit so pairs stay pairs. Items are visited group by group in the order of
    ``_rank(seed + 7919, group)`` (a group's items in ``index`` order); each is taken while its class is under
    its quota (``limit // 2`` real, the rest fake; no quota when not ``balanced``); when one class runs short
    the first items not taken fill the cap.
    """
    index = np.asarray(index, dtype=int)
    if limit <= 0 or limit >= len(index):
        return index
    labels = np.asarray(labels)
    runs = _group_runs(groups, index, seed + 7919)
    lab = labels[index]
    if runs is None or len(np.unique(index)) != len(index) or not np.isin(lab, (0, 1)).all():
        return _subset_by_group_dicts(index, labels, groups, limit, seed, balanced)
    order = runs[0]
    lab = lab[order]
    if balanced:
        quota = {0: limit // 2, 1: limit - limit // 2}
        taken = np.zeros(len(order), dtype=bool)
        for c, q in quota.items():
            is_c = lab == c
            taken |= is_c & (np.cumsum(is_c) <= q)
    else:
        taken = np.arange(len(order)) < limit
    short = limit - int(taken.sum())
    if short > 0:  # one class ran short: fill with the other
        taken[np.flatnonzero(~taken)[:short]] = True
    return np.sort(index[order][taken])


def _group_runs(
    groups: Sequence[str], index: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Positions of ``index`` ordered by their group's rank (ties in ``index`` order), with the start and length
    of each group's run; None when a run holds two different groups (equal 64-bit ranks)."""
    m = len(index)
    ranks = np.fromiter((_rank(seed, groups[i]) for i in index), dtype=np.uint64, count=m)
    order = np.argsort(ranks, kind="stable")
    ranked = ranks[order]
    starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]])) if m else np.zeros(0, dtype=int)
    lengths = np.diff(np.append(starts, m))
    for s, k in zip(starts[lengths > 1], lengths[lengths > 1], strict=True):
        first = groups[index[order[s]]]
        if any(groups[index[order[j]]] != first for j in range(s + 1, s + k)):
            return None
    return order, starts, lengths


# The same two functions over dicts of groups: the reference the array versions above reproduce exactly, and
# their fallback when two groups share a rank.
def _split_by_group_dicts(
    labels: np.ndarray, groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> Split:
    labels = np.asarray(labels)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    strata: dict[tuple[bool, bool], list[str]] = defaultdict(list)
    for g, idx in members.items():
        labs = labels[idx]
        strata[(bool((labs == 0).any()), bool((labs == 1).any()))].append(g)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for key in sorted(strata):
        gs = sorted(strata[key], key=lambda g: _rank(seed, g))
        sizes = np.array([len(members[g]) for g in gs])
        cum = np.cumsum(sizes) / max(sizes.sum(), 1)
        for g, c in zip(gs, cum, strict=True):
            name = "test" if c <= test_fraction else "val" if c <= test_fraction + val_fraction else "train"
            out[name].extend(members[g])
    return Split(*(np.array(sorted(out[name]), dtype=int) for name in SPLITS))


def _subset_by_group_dicts(
    index: np.ndarray, labels: np.ndarray, groups: Sequence[str], limit: int, seed: int, balanced: bool = True
) -> np.ndarray:
    index = np.asarray(index, dtype=int)
    if limit <= 0 or limit >= len(index):
        return index
    labels = np.asarray(labels)
    members: dict[str, list[int]] = defaultdict(list)
    for i in index:
        members[groups[i]].append(int(i))
    order = sorted(members, key=lambda g: _rank(seed + 7919, g))
    quota = {0: limit // 2, 1: limit - limit // 2} if balanced else None
    taken: list[int] = []
    count = {0: 0, 1: 0}
    for g in order:
        if len(taken) >= limit:
            break
        for i in members[g]:
            lab = int(labels[i])
            if len(taken) >= limit:
                break
            if quota is not None and count[lab] >= quota[lab]:
                continue
            taken.append(i)
            count[lab] += 1
    if len(taken) < limit:  # one class ran short: fill with the other
        chosen = set(taken)
        rest = [int(i) for g in order for i in members[g] if i not in chosen]
        taken.extend(rest[: limit - len(taken)])
    return np.array(sorted(taken), dtype=int)
