"""Checkpoints that hold tensors and plain data only: loading never unpickles code.

A dfmm checkpoint is a dict ``{"format": "dfmm", "version": 1, "kind": ..., "meta": <JSON string>,
"state": {name: tensor}}`` written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which
refuses any pickled object that is not a tensor or a plain container. Kinds: ``visual_branch``,
``text_branch``, ``text_ngrams`` (the TF-IDF n-gram text model of ``dfmm.models.ngrams``), ``multimodal_ensemble``
(whose state holds all three modules, prefixed).
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from dfmm.errors import CheckpointError
from dfmm.models.metadata import EnsembleMeta, NgramMeta, TextMeta, VisualMeta, validate
from dfmm.models.ood import OodReference, references_of, split_state

FORMAT = "dfmm"
VERSION = 1
KINDS = ("visual_branch", "text_branch", "text_ngrams", "multimodal_ensemble")


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
    """(kind, state, meta); a missing, foreign, tampered or wrong-kind file, or metadata no model can be built or
    served with (``validate_meta``), raises a one-line ``CheckpointError``. The state and metadata describe the
    model only; ``load_checkpoint_parts`` also returns the out-of-distribution references (``dfmm.models.ood``)."""
    kind, state, meta, _ = load_checkpoint_parts(path, expect)
    return kind, state, meta


def load_checkpoint_parts(
    path: str | Path, expect: tuple[str, ...] = KINDS
) -> tuple[str, dict[str, torch.Tensor], dict[str, Any], dict[str, OodReference]]:
    """``load_checkpoint`` plus the checkpoint's OOD references by branch (checked: one line naming the key)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message is a page of advice to load it unsafely: a fixed reason instead
        raise CheckpointError(
            f"refused to load {path}: not a tensors-only dfmm checkpoint (it pickles Python objects or code, "
            "which dfmm never unpickles)"
        ) from None
    except Exception:  # noqa: BLE001 - RuntimeError (zip), EOFError, OSError...
        raise CheckpointError(
            f"refused to load {path}: not a tensors-only dfmm checkpoint "
            "(truncated, corrupt or not written by torch.save)"
        ) from None
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
    if not isinstance(meta, dict):
        validate_meta(path, kind, meta, state)  # its one-line refusal of metadata that is not an object
    if not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: checkpoint state has a key that is not a string")
    state, ood_state = split_state(state)
    ood_meta = meta.pop("ood", None)  # the references carry it: meta and state describe the model alone
    validate_meta(path, kind, meta, state)
    return kind, state, meta, references_of({"ood": ood_meta}, ood_state, path)


def part_state(state: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """The tensors of one module of an ensemble's state (``visual``, ``text``, ``fusion``), its prefix removed."""
    return {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(part + ".")}


def attach_references(path: str | Path, refs: dict[str, OodReference]) -> Path:
    """Rewrite a checkpoint with these out-of-distribution references (replacing any it held), atomically."""
    kind, state, meta, old = load_checkpoint_parts(path)
    meta = dict(meta)
    section: dict[str, Any] = {}
    for branch, ref in (old | refs).items():
        section[branch], tensors = ref.to_checkpoint(branch)
        state = state | tensors
    meta["ood"] = section
    return save_checkpoint(path, kind, state, meta)


def validate_meta(
    path: str | Path, kind: str, meta: Any, state: dict[str, torch.Tensor] | None = None
) -> VisualMeta | TextMeta | NgramMeta | EnsembleMeta | None:
    """Refuse metadata no model can be built or served with, in one line naming the file and the key
    (``dfmm.models.metadata`` declares the keys, their ranges and defaults). Every key present is checked: a decision
    ``threshold`` in (0, 1), a ``temperature`` > 0, ``image_size``, ``timm_name``, ``hf_config``... at the top
    level or in the ``visual``/``text``/``fusion`` sections of an ensemble. Metadata that describes a model (names
    any of ``timm_name``, ``image_size``, ``backbone``; ``hf_config``, ``tokenizer_json``, ``special_tokens``) must
    describe it completely, and ``state`` must fit the architecture it names (compared on the meta device, before
    anything is allocated). Returns the typed metadata, or None for a tensors container that describes no model."""
    return validate(path, kind, meta, state)
