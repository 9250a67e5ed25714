"""Checkpoints that hold tensors and plain data only: loading never unpickles code.

A dfmm checkpoint is a dict ``{"format": "dfmm", "version": 1, "kind": ..., "meta": <JSON string>,
"state": {name: tensor}}`` written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which
refuses any pickled object that is not a tensor or a plain container. Kinds: ``visual_branch``,
``text_branch``, ``multimodal_ensemble`` (whose state holds all three modules, prefixed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from dfmm.errors import CheckpointError

FORMAT = "dfmm"
VERSION = 1
KINDS = ("visual_branch", "text_branch", "multimodal_ensemble")


def save_checkpoint(path: str | Path, kind: str, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "meta": json.dumps(meta, sort_keys=True, default=str),
        "state": {k: v.detach().cpu().contiguous() for k, v in state.items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)  # never a half-written checkpoint under the real name
    return path


def load_checkpoint(
    path: str | Path, expect: tuple[str, ...] = KINDS
) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(kind, state, meta); a missing, foreign, tampered or wrong-kind file raises ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...
        first = str(e).strip().splitlines()[0][:150] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"refused to load {path}: not a tensors-only dfmm checkpoint ({first})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"refused to load {path}: not a dfmm checkpoint (no 'format': 'dfmm' entry)")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {blob.get('version')!r}, this dfmm reads version {VERSION}")
    kind = blob.get("kind")
    if kind not in expect:
        raise CheckpointError(f"{path}: is a {kind!r} checkpoint, expected {' or '.join(expect)}")
    state = blob.get("state")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: checkpoint state is not a mapping of tensors")
    try:
        meta = json.loads(blob.get("meta", "{}"))
    except (json.JSONDecodeError, TypeError):
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON") from None
    for name, tensor in state.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor '{name}' holds non-finite values (NaN or inf)")
    validate_meta(path, kind, meta)
    return kind, state, meta


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_meta(path: str | Path, kind: str, meta: Any) -> None:
    """Refuse metadata no prediction can be made with: a decision ``threshold`` that is not a number in (0, 1)
    or a ``temperature`` that is not a finite number > 0, at the top level or in the ``visual``/``text``
    sections of an ensemble. Both keys are optional (a missing threshold means 0.5)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: checkpoint metadata is a JSON {type(meta).__name__}, expected an object")
    sections = {"": meta}
    for part in ("visual", "text"):
        if part in meta:
            if not isinstance(meta[part], dict):
                raise CheckpointError(f"{path}: {kind} metadata '{part}' is not an object")
            sections[f"{part}."] = meta[part]
    for prefix, section in sections.items():
        if "threshold" in section:
            t = section["threshold"]
            if not (_number(t) and 0.0 < t < 1.0):
                raise CheckpointError(
                    f"{path}: {kind} metadata {prefix}threshold = {t!r}; expected a number between 0 and 1 (exclusive)"
                )
        if "temperature" in section:
            t = section["temperature"]
            if not (_number(t) and t > 0.0):
                raise CheckpointError(
                    f"{path}: {kind} metadata {prefix}temperature = {t!r}; expected a finite number > 0"
                )
