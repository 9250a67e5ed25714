"""Deterministic, stratified, group-aware splits and subsets.

Items that share a group (a real face and the fakes made from its video, a human text and its AI rewrites)
always land in the same split: otherwise a detector is scored on near-copies of its training data.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
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
    labels: np.ndarray, groups: list[str], val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Assign whole groups to train/val/test, stratified by the group's label mix, in a seeded order."""
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
        # cut by item counts, not group counts, so fractions hold when group sizes differ
        sizes = np.array([len(members[g]) for g in gs])
        cum = np.cumsum(sizes) / max(sizes.sum(), 1)
        for g, c in zip(gs, cum, strict=True):
            name = "test" if c <= test_fraction else "val" if c <= test_fraction + val_fraction else "train"
            out[name].extend(members[g])
    return Split(*(np.array(sorted(out[name]), dtype=int) for name in SPLITS))


def subset_by_group(
    index: np.ndarray, labels: np.ndarray, groups: list[str], limit: int, seed: int, balanced: bool = True
) -> np.ndarray:
    """At most ``limit`` items of ``index``, whole groups first, in a seeded order.

    ``balanced`` aims for half real and half fake (the card's compact budgets are balanced); groups are kept
    whole while they fit so pairs stay pairs.
    """
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
