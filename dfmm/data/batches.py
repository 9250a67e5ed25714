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
    """Token ids of every text, computed once with ``datasets.map`` (batched) into an Arrow table.

    With ``cache_dir`` the table is the file ``cache_dir/tokens-<key>.arrow``, memory-mapped: the key digests the
    tokenizer (name and vocabulary size), ``max_length`` and every text, so each recipe and seed of a study (and
    notebooks 04-06) reuse one tokenisation, another tokenizer or length never reads it, and no process holds
    every text's ids as Python objects (1.4M texts of the full budget are a few hundred MB of int32 on disk).
    ``datasets`` writes the file beside its name and renames it when complete. Without ``cache_dir`` the table is
    kept in memory. Items are read straight from the Arrow buffers (offsets and values as numpy views).
    """

    def __init__(self, texts: TextSet, tokenizer: Any, max_length: int, cache_dir: str | Path | None = None) -> None:
        from datasets import Dataset as ArrowDataset
        from datasets import Features, Sequence, Value
        from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

        self.labels = texts.labels
        self.max_length = max_length
        key = _tokens_key(texts, tokenizer, max_length)

        def tokenize(batch: dict[str, list[int]]) -> dict[str, list[Any]]:
            rows = batch["row"]
            chunk = [texts.text(i) for i in rows]
            enc = tokenizer(chunk, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
            return {"ids": [self._truncate(e, tokenizer) for e in enc], "full_length": [len(e) for e in enc]}

        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if len(texts) == 0:  # datasets.map returns an empty input as it is, without the new columns
            self._chunks, self._starts = [], np.zeros(1, dtype=np.int64)
            self.full_lengths = self.lengths = np.zeros(0, dtype=np.int32)
            return
        rows = ArrowDataset.from_dict({"row": np.arange(len(texts), dtype=np.int64)})
        where: dict[str, Any] = {"keep_in_memory": True}
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            where = {"cache_file_name": str(Path(cache_dir) / f"tokens-{key}.arrow"), "load_from_cache_file": True}
        shown = is_progress_bar_enabled()
        if len(texts) < 10_000:  # a bar only where tokenising takes a while
            disable_progress_bar()
        try:
            table = rows.map(
                tokenize,
                batched=True,
                batch_size=1000,
                remove_columns=["row"],
                features=Features({"ids": Sequence(Value("int32")), "full_length": Value("int32")}),
                new_fingerprint=key,
                desc="tokenise",
                **where,
            ).data
        finally:
            if shown:
                enable_progress_bar()
        ids = table.column("ids")
        self._chunks = [(c.offsets.to_numpy(), c.values.to_numpy(zero_copy_only=False)) for c in ids.chunks]
        self._starts = np.cumsum([0] + [len(c) for c in ids.chunks])
        self.full_lengths = table.column("full_length").to_numpy()
        self.lengths = np.concatenate([off[1:] - off[:-1] for off, _ in self._chunks])

    def _truncate(self, ids: list[int], tokenizer: Any) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        # keep the closing special token ([SEP] / </s>) so the encoder sees a well-formed sequence
        tail = [ids[-1]] if ids[-1] in (tokenizer.sep_token_id, tokenizer.eos_token_id) else []
        return ids[: self.max_length - len(tail)] + tail

    def truncated(self) -> int:
        """How many texts were cut at ``max_length`` (reported: the card's 512 cuts some long texts)."""
        return int((self.full_lengths > self.max_length).sum())

    def ids(self, i: int) -> torch.Tensor:
        """Text ``i``'s token ids (cut at ``max_length``, closing special token kept)."""
        c = int(np.searchsorted(self._starts, i, side="right")) - 1
        offsets, values = self._chunks[c]
        j = i - int(self._starts[c])
        return torch.from_numpy(values[offsets[j] : offsets[j + 1]].astype(np.int64))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"ids": self.ids(i), "label": int(self.labels[i]), "index": i}

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


def _tokens_key(texts: TextSet, tokenizer: Any, max_length: int) -> str:
    """A digest of what the ids depend on: the tokenizer, ``max_length`` and every text (streamed, in order)."""
    h = hashlib.sha256(json.dumps([tokenizer.name_or_path, len(tokenizer), max_length, len(texts)]).encode())
    for t in texts.iter_texts():
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


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


def in_background(items: Any, depth: int = 2) -> Any:
    """Iterate ``items`` in a worker thread, ``depth`` items ahead of the caller: the next batches are decoded
    while the model scores this one (PIL decoding, resizing and the runtimes release the GIL, so two cores are
    both busy). Items come in order; an exception of the iteration is raised here, where the caller reads it.

    A thread, not a ``DataLoader`` worker process: the items are a few batches of tensors, and a forked process
    would copy the runtime's thread pools mid-flight.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        """Hand one message over unless the caller has stopped reading (then False)."""
        while not stop.is_set():
            try:
                q.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            put(("error", e))

    worker = threading.Thread(target=produce, name="dfmm-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while True:  # a worker blocked on a full queue sees the stop within 0.1 s
            try:
                q.get_nowait()
            except queue.Empty:
                break
        worker.join(timeout=5)
