"""Scores a study has already computed, kept on disk, so that no notebook runs the same weights over the same
input twice.

Training scores the validation and test splits with every model it keeps (notebooks 02 and 03); notebook 04
reads the promoted branches' logits and features of the same splits again, notebook 05 and the evaluation of
notebook 06 score the test split once more, and the robustness sweep's clean rows are test items too. In the
compact study on 2 cores notebooks 04, 05 and 06 took 324, 152 and 677 s before this cache and 26, 31 and 286 s
with it (the whole study: 60.0 -> 45.7 min, with the replicate seeds no longer scored on test).

An entry is one input's logit (and, when the caller asks for them, its pooled features) under one model. It is
found by two digests:

- the model: its class, whether the logit averages the mirrored view (TTA), every tensor of its ``state_dict``
  (names, dtypes, shapes, bytes: a checkpoint reloaded from disk has the key of the model that wrote it; another
  epoch, seed or recipe has another), how it is run (device type and autocast precision: training's bf16 scores on
  a GPU are not the fp32 scores serving computes) and the code that runs it (the dfmm source digest and the
  torch, timm and transformers versions: a fix to scoring code is never hidden by scores of the code before);
- the input itself: the tensor the model is given, i.e. an image after its transform (size, normalisation) and
  a text's token ids without their padding (padding is masked out, so a text batched with longer or shorter
  ones is the same input).

A cached score is therefore the one that model computes for that very input, whatever the loader, split,
subset or notebook around it, and nothing can go stale: another size, normalisation, tokeniser or weight is
another key. (A score read here may have been computed in another batch composition, which can move a logit in
its last bits, never more.)

Files: ``<cache_dir>/scores/<model key>/<pid>-<n>.npz`` (``keys``, ``logits``, optionally ``features``), one
per scoring call that computed anything, written under a temporary name and renamed, so a killed run leaves
whole files only; an unreadable file is skipped with a warning. joblib's ``Memory`` caches whole calls by
their arguments; the unit here is an input inside a batch, so that a subset (the sweep's 600 test faces, the
epoch-selection texts) finds the rows that a whole split stored.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger("dfmm.scores")

SCORES_VERSION = 1  # bump when what an entry means changes: older entries then sit under other keys
Inputs = torch.Tensor | dict[str, torch.Tensor]
Scored = tuple[torch.Tensor, torch.Tensor | None]  # (logits, features or None) of a batch, on the CPU


def _bytes_of(t: torch.Tensor) -> np.ndarray:
    """The tensor's values as bytes in standard (row-major) order, whatever its memory format or dtype."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


@functools.cache
def _code() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from dfmm.files import code_digest

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return f"dfmm {code_digest()} torch {torch.__version__} timm {v('timm')} transformers {v('transformers')}"


def model_key(model: nn.Module, tta: bool, precision: str = "cpu fp32") -> str:
    """The digest of what a model's scores depend on: class, TTA, ``precision`` (how it runs), the code and
    library versions, and every state-dict tensor."""
    h = hashlib.sha256(f"dfmm scores {SCORES_VERSION} {type(model).__qualname__} tta={bool(tta)}\n".encode())
    h.update(f"{precision}\n{_code()}\n".encode())
    for name, t in model.state_dict().items():
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(_bytes_of(t))
    return h.hexdigest()[:32]


def input_keys(inputs: Inputs) -> list[bytes]:
    """One digest per row of a batch: an image tensor (C x H x W), or a text's tensors at its unpadded positions."""
    keys = []
    if isinstance(inputs, dict):
        mask = inputs["attention_mask"].bool()
        for i in range(len(mask)):
            h = hashlib.blake2b(b"text", digest_size=16)
            for name in sorted(inputs):
                row = inputs[name][i][mask[i]]
                h.update(f"{name} {row.dtype} {row.numel()}\n".encode())
                h.update(_bytes_of(row))
            keys.append(h.digest())
        return keys
    for row in inputs:
        h = hashlib.blake2b(f"image {row.dtype} {tuple(row.shape)}\n".encode(), digest_size=16)
        h.update(_bytes_of(row))
        keys.append(h.digest())
    return keys


def _rows(inputs: Inputs, rows: list[int]) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v[rows] for k, v in inputs.items()}
    return inputs[rows]


class ScoreCache:
    """The stored scores of one model under ``cache_dir``; ``scored`` answers a batch from them and computes
    only the rows it lacks, ``save`` writes what was computed."""

    def __init__(self, cache_dir: str | Path, model: nn.Module, tta: bool = False, precision: str = "cpu fp32") -> None:
        self.folder = Path(cache_dir) / "scores" / model_key(model, tta, precision)
        self._found: dict[bytes, tuple[float, np.ndarray | None]] = {}
        self._new: dict[bytes, tuple[float, np.ndarray | None]] = {}
        for path in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            try:
                with np.load(path) as f:
                    keys, logits = f["keys"], f["logits"]
                    feats = f["features"] if "features" in f.files else None
            except Exception as e:  # noqa: BLE001 - a damaged file is only a lost shortcut
                log.warning("score cache: skipped %s (%s)", path, (str(e).splitlines() or [type(e).__name__])[0][:120])
                continue
            for i, row in enumerate(keys):
                key = row.tobytes()
                entry = (float(logits[i]), None if feats is None else feats[i])
                if entry[1] is not None or key not in self._found:
                    self._found[key] = entry

    def _get(self, key: bytes, features: bool) -> tuple[float, np.ndarray | None] | None:
        entry = self._new.get(key) or self._found.get(key)
        if entry is None or (features and entry[1] is None):
            return None
        return entry

    def scored(self, inputs: Inputs, compute: Callable[[Inputs], Scored], features: bool) -> Scored:
        """(logits, features or None) of every row of ``inputs``: stored rows from the cache, the others from
        ``compute`` (called once, on those rows only) and remembered for ``save``."""
        keys = input_keys(inputs)
        entries = [self._get(k, features) for k in keys]
        todo = [j for j, e in enumerate(entries) if e is None]
        if todo:
            logits, feats = compute(inputs if len(todo) == len(keys) else _rows(inputs, todo))
            for n, j in enumerate(todo):
                entries[j] = (float(logits[n]), None if feats is None else feats[n].numpy())
                self._new[keys[j]] = entries[j]
        logits = torch.tensor([e[0] for e in entries], dtype=torch.float32)
        return logits, torch.from_numpy(np.stack([e[1] for e in entries])) if features else None

    def save(self) -> Path | None:
        """Write the entries computed since this cache was opened (one file); None when there were none."""
        if not self._new:
            return None
        keys = list(self._new)
        arrays: dict[str, np.ndarray] = {
            "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16),  # "S16" drops NUL bytes
            "logits": np.array([self._new[k][0] for k in keys], dtype=np.float32),
        }
        if all(self._new[k][1] is not None for k in keys):
            arrays["features"] = np.stack([self._new[k][1] for k in keys])
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.npz"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
        self._found.update(self._new)
        self._new = {}
        return path
