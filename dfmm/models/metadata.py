"""What a checkpoint's metadata says about its model, typed and checked: ``VisualMeta``, ``TextMeta``, ``EnsembleMeta``.

Every default of a branch's metadata is declared here, once, as a dataclass field; ``from_meta(meta, path)`` reads
the JSON metadata a checkpoint carries and refuses anything no model can be built or served with by raising a
one-line ``CheckpointError`` that names the file and the key, e.g. ``ck.pt: visual_branch metadata image_size =
30000; expected an integer in 32..1024``. ``check_state`` then compares the checkpoint's tensors with the
architecture the metadata names, built on PyTorch's ``meta`` device (shapes only, no memory), so a checkpoint
whose weights do not fit is refused before a single weight is allocated.

Keys that older checkpoints lack (``tta``, ``face_crop``, ``max_length``...) take the defaults below; the keys
that describe the model (``timm_name``, ``image_size``, ``backbone``; ``hf_config``, ``tokenizer_json``,
``special_tokens`` with a ``pad_token``) are required. ``check_present`` checks only the keys a metadata dict holds
(what ``load_checkpoint`` does for a checkpoint that describes no model).

This module holds the ensemble and ``validate``, and re-exports the rest: the branch sections live in
:mod:`dfmm.models.metadata_branches`, the readers and messages in :mod:`dfmm.models.metadata_fields`, the
meta-device shape checks in :mod:`dfmm.models.metadata_shapes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from dfmm.models.metadata_branches import (
    HF_SIZES,
    MAX_TEXT_PARAMETERS,
    SPECIAL_TOKENS,
    FusionMeta,
    NgramMeta,
    TextMeta,
    VisualArch,
    VisualMeta,
)
from dfmm.models.metadata_fields import _common, _meta_dict, _rule, _Where

__all__ = [
    "BRANCH_META",
    "ENSEMBLE_PARTS",
    "HF_SIZES",
    "MAX_TEXT_PARAMETERS",
    "SPECIAL_TOKENS",
    "EnsembleMeta",
    "FusionMeta",
    "NgramMeta",
    "TextMeta",
    "VisualArch",
    "text_section_type",
    "VisualMeta",
    "validate",
]


# ---------------------------------------------------------------------------------------------- ensemble
ENSEMBLE_PARTS: dict[str, type] = {"visual": VisualMeta, "text": TextMeta, "fusion": FusionMeta}


def text_section_type(meta: Any) -> type:
    """The type of a text section: ``NgramMeta`` when it names ``ngrams`` (the n-gram text branch), else
    ``TextMeta`` (a transformer branch)."""
    return NgramMeta if isinstance(meta, Mapping) and "ngrams" in meta else TextMeta


def _part_types(meta: Any) -> dict[str, type]:
    """``ENSEMBLE_PARTS`` with the text section's type read from the metadata."""
    text = meta.get("text") if isinstance(meta, Mapping) else None
    return ENSEMBLE_PARTS | {"text": text_section_type(text)}


@dataclass(frozen=True, kw_only=True)
class EnsembleMeta:
    """A ``multimodal_ensemble`` checkpoint's metadata: ``{"visual": ..., "text": ..., "fusion": ...}``."""

    KIND: ClassVar[str] = "multimodal_ensemble"

    visual: VisualMeta
    text: TextMeta | NgramMeta
    fusion: FusionMeta

    @classmethod
    def check_present(cls, meta: Any, path: str | Path | None = None) -> None:
        w = _Where(path, cls.KIND)
        meta = _meta_dict(w, meta)
        _rule(w, meta)
        _common(w, meta)
        for part, typ in _part_types(meta).items():
            if part in meta:
                typ.check_present(meta[part], path, section=f"{part}.", kind=cls.KIND)

    @classmethod
    def describes_model(cls, meta: Any) -> bool:
        return isinstance(meta, Mapping) and any(
            typ.describes_model(meta.get(part)) for part, typ in _part_types(meta).items()
        )

    @classmethod
    def from_meta(cls, meta: Any, path: str | Path | None = None) -> EnsembleMeta:
        if isinstance(meta, cls):
            return meta
        cls.check_present(meta, path)  # every key present first, then what is missing
        for part in ENSEMBLE_PARTS:
            if part not in meta:
                _Where(path, cls.KIND).fail(
                    f"metadata has no '{part}' section (an ensemble needs visual, text and fusion)"
                )
        parts = {
            part: typ.from_meta(meta[part], path, section=f"{part}.", kind=cls.KIND)
            for part, typ in _part_types(meta).items()
        }
        return cls(**parts)

    def check_state(self, state: Mapping[str, torch.Tensor], path: str | Path | None = None) -> None:
        """Each part's tensors against its architecture, and the fusion's widths against the branches' features."""
        w = _Where(path, self.KIND)
        parts = {
            part: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(part + ".")}
            for part in ENSEMBLE_PARTS
        }
        self.visual.check_state(parts["visual"], path, section="visual.", kind=self.KIND)
        self.text.check_state(parts["text"], path, section="text.", kind=self.KIND)
        if self.fusion.visual_dim != self.visual.feature_dim():
            w.bad(
                "fusion.visual_dim",
                self.fusion.visual_dim,
                f"{self.visual.feature_dim()}, the visual branch's feature width",
            )
        if self.fusion.text_dim != self.text.feature_dim:
            w.bad("fusion.text_dim", self.fusion.text_dim, f"{self.text.feature_dim}, the text branch's feature width")
        self.fusion.check_state(parts["fusion"], path, section="fusion.", kind=self.KIND)
        stray = [k for k in state if k.split(".", 1)[0] not in ENSEMBLE_PARTS]
        if stray:
            w.fail(f"checkpoint state has {len(stray)} tensors outside visual., text. and fusion. (e.g. '{stray[0]}')")


# ---------------------------------------------------------------------------------------------- checkpoint
BRANCH_META: dict[str, type] = {
    "visual_branch": VisualMeta,
    "text_branch": TextMeta,
    "text_ngrams": NgramMeta,
    "multimodal_ensemble": EnsembleMeta,
}


def validate(
    path: str | Path | None, kind: str, meta: Any, state: Mapping[str, torch.Tensor] | None = None
) -> VisualMeta | TextMeta | NgramMeta | EnsembleMeta | None:
    """Check a checkpoint's metadata: every key it holds (type, range); and, when it describes a model (names any
    of the keys a model needs), that the description is complete and ``state`` fits it. Returns the typed
    metadata, or None for a checkpoint that describes no model (a tensors container ``load_model`` refuses)."""
    typ = BRANCH_META[kind]
    typ.check_present(meta, path)
    if not typ.describes_model(meta):
        return None
    typed = typ.from_meta(meta, path)
    if state is not None:
        typed.check_state(state, path)
    return typed
