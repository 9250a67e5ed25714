"""Torch datasets, samplers and collate functions for both branches.

Images are decoded lazily; an unreadable image is skipped and counted (never a crash mid-epoch, never a
silently wrong tensor). Texts are tokenised once per run and batched by length (length bucketing) with
dynamic padding, which is what makes the text loop fast: padding every batch to 512 tokens wastes most of
the compute on a corpus whose median text is ~120 tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dfmm.data.images import ImageSet, load_image
from dfmm.data.text import TextSet
from dfmm.errors import DataError

log = logging.getLogger("dfmm.data")


# --------------------------------------------------------------------------------------------------- images
class ImageDataset(Dataset):
    """Decoded, transformed images with their labels; ``groups`` (a real face with its fakes) for pair batches."""

    def __init__(self, images: ImageSet, transform: Any) -> None:
        self.images = images
        self.transform = transform
        self.groups = list(images.groups)
        self.labels = images.labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            img = load_image(self.images.sources[i], self.images.names[i])
        except DataError as e:
            return {"error": str(e), "index": i}
        return {"inputs": self.transform(img), "label": int(self.labels[i]), "index": i}


def collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    good = [it for it in items if "error" not in it]
    errors = [it["error"] for it in items if "error" in it]
    for e in errors:
        log.warning("skipped %s", e)
    if not good:
        return {"inputs": None, "labels": None, "index": None, "skipped": errors}
    return {
        "inputs": torch.stack([it["inputs"] for it in good]).contiguous(memory_format=torch.channels_last),
        "labels": torch.tensor([it["label"] for it in good], dtype=torch.float32),
        "index": torch.tensor([it["index"] for it in good]),
        "skipped": errors,
    }


class GroupBatchSampler(Sampler[list[int]]):
    """Shuffled batches that keep each group whole: a real face and its fake sit in the same batch.

    Seeing both members of a pair in one step gives the head the contrast it has to learn (same scene, same
    pose, swapped face) instead of the easier cue of which video a face came from.
    """

    def __init__(self, groups: list[str], batch_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        members: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            members[g].append(i)
        self.members = list(members.values())

    def __iter__(self):
        rng = np.random.default_rng(self.seed * 1000 + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.members))
        batch: list[int] = []
        for gi in order:
            group = self.members[gi]
            if batch and len(batch) + len(group) > self.batch_size:
                yield batch
                batch = []
            batch.extend(group)
        if batch:
            yield batch

    def __len__(self) -> int:
        total = sum(len(m) for m in self.members)
        return max(1, -(-total // self.batch_size))


class ShuffledBatchSampler(Sampler[list[int]]):
    """Plain shuffled batches with a seeded, per-epoch order (repeatable on CPU)."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.batch_size, self.seed, self.shuffle, self.epoch = n, batch_size, seed, shuffle, 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed * 1000 + self.epoch)
        self.epoch += 1
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        for s in range(0, self.n, self.batch_size):
            yield order[s : s + self.batch_size].tolist()

    def __len__(self) -> int:
        return max(1, -(-self.n // self.batch_size))


class ShardedBatchSampler(Sampler[list[int]]):
    """Process ``rank`` of ``world`` takes every ``world``-th batch of ``inner`` (one data-parallel shard).

    Every process builds the same inner sampler with the same seed, so all see one batch order and the shards
    are disjoint. Each process gets ``len(inner) // world`` batches (the tail is dropped), so no process waits
    for a gradient all-reduce that another never starts.
    """

    def __init__(self, inner: Sampler[list[int]], rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside 0..{world - 1}")
        self.inner, self.rank, self.world = inner, rank, world

    def __iter__(self):
        for k, batch in enumerate(self.inner):
            if k >= len(self) * self.world:
                break
            if k % self.world == self.rank:
                yield batch

    def __len__(self) -> int:
        return len(self.inner) // self.world


# ---------------------------------------------------------------------------------------------------- texts
class TokenizedTexts(Dataset):
    """Token ids of every text, computed once (and cached on disk per run when ``cache_dir`` is given)."""

    def __init__(self, texts: TextSet, tokenizer: Any, max_length: int, cache_dir: str | Path | None = None) -> None:
        self.labels = texts.labels
        self.max_length = max_length
        key = hashlib.sha256(
            json.dumps([tokenizer.name_or_path, max_length, len(texts.texts)]).encode()
            + "\x00".join(texts.texts).encode("utf-8", "replace")
        ).hexdigest()[:16]
        cache = Path(cache_dir) / f"tokens-{key}.pt" if cache_dir else None
        if cache is not None and cache.is_file():
            saved = torch.load(cache, weights_only=True)
            self.ids = [t for t in saved["ids"]]
            self.full_lengths = saved["full_lengths"].tolist()
        else:
            enc = tokenizer(texts.texts, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
            self.full_lengths = [len(e) for e in enc]
            self.ids = [torch.tensor(self._truncate(e, tokenizer), dtype=torch.long) for e in enc]
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # processes of one launch write in parallel
                torch.save({"ids": self.ids, "full_lengths": torch.tensor(self.full_lengths)}, tmp)
                tmp.replace(cache)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _truncate(self, ids: list[int], tokenizer: Any) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        # keep the closing special token ([SEP] / </s>) so the encoder sees a well-formed sequence
        tail = [ids[-1]] if ids[-1] in (tokenizer.sep_token_id, tokenizer.eos_token_id) else []
        return ids[: self.max_length - len(tail)] + tail

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.ids]

    def truncated(self) -> int:
        """How many texts were cut at ``max_length`` (reported: the card's 512 cuts some long texts)."""
        return sum(n > self.max_length for n in self.full_lengths)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"ids": self.ids[i], "label": int(self.labels[i]), "index": i}

    def collate(self, items: list[dict[str, Any]], pad_to: int | None = None) -> dict[str, Any]:
        """Pad to the longest text in the batch (``pad_to`` forces a length, for the fixed-padding baseline)."""
        width = pad_to or max(len(it["ids"]) for it in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["ids"])
            ids[row, :n] = it["ids"]
            mask[row, :n] = 1
        return {
            "inputs": {"input_ids": ids, "attention_mask": mask},
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.float32),
            "index": torch.tensor([it["index"] for it in items]),
            "skipped": [],
        }


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length: shuffle, sort within pools of ``pool`` batches, shuffle the batches.

    Keeps randomness across epochs while making padded batches nearly full of real tokens. With
    ``shuffle=False`` (evaluation) batches follow length order, which is fastest.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, shuffle: bool = True, pool: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle, self.pool, self.epoch = batch_size, seed, shuffle, pool, 0

    def __iter__(self):
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            for s in range(0, n, self.batch_size):
                yield order[s : s + self.batch_size].tolist()
            return
        rng = np.random.default_rng(self.seed * 1000 + self.epoch)
        self.epoch += 1
        order = rng.permutation(n)
        span = self.batch_size * self.pool
        batches = []
        for s in range(0, n, span):
            chunk = order[s : s + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[b : b + self.batch_size].tolist() for b in range(0, len(chunk), self.batch_size))
        for bi in rng.permutation(len(batches)):
            yield batches[bi]

    def __len__(self) -> int:
        return max(1, -(-len(self.lengths) // self.batch_size))
