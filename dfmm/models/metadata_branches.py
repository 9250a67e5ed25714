"""The typed metadata of each part a checkpoint may hold: ``VisualArch`` / ``VisualMeta`` (a visual branch),
``TextMeta`` (a text branch) and ``FusionMeta`` (an ensemble's fusion), each field with its declared default, the
checks of its keys (ranges, the transformers config, the tokenizer, the face-crop geometry) and ``check_state``
against the architecture it names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from dfmm.choices import IMAGE_SIZES, MAX_LENGTHS, TEXT_MODEL_TYPES, VISUAL_ARCHITECTURES, visual_architecture
from dfmm.config import RETIRED_AT, RETIRED_RECIPE_FIELDS
from dfmm.data.faces import CropGeometry
from dfmm.models.metadata_fields import (
    _bool,
    _common,
    _dropout,
    _int,
    _is_number,
    _object,
    _rule,
    _Section,
    _show,
    _Where,
)
from dfmm.models.metadata_shapes import (
    _built,
    _compare,
    _fusion_shapes,
    _hf_config_object,
    _millions,
    _text_shapes,
    _visual_shapes,
)
from dfmm.models.ngrams import CHAR_NGRAMS, NGRAM_FEATURES, PREFIX, TENSORS, WORD_NGRAMS
from dfmm.models.scoring import DecisionRule

# hf_config size fields and their bounds (roberta-large: 1024 hidden, 24 layers, 4096 intermediate, 50265 tokens)
HF_SIZES: dict[str, tuple[int, int]] = {
    "hidden_size": (8, 4096),
    "num_hidden_layers": (1, 48),
    "num_attention_heads": (1, 128),
    "intermediate_size": (8, 16384),
    "vocab_size": (8, 300_000),
    "max_position_embeddings": (8, 8192),
}
MAX_TEXT_PARAMETERS = 600_000_000  # 2.4 GB of float32 weights: roberta-large has 355M
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_RULE = DecisionRule()


# ------------------------------------------------------------------------------------------------ visual
class _Ruled:
    """A branch section's decision rule, from its ``threshold`` and ``temperature`` fields."""

    threshold: float
    temperature: float

    @property
    def rule(self) -> DecisionRule:
        return DecisionRule(self.threshold, self.temperature)


@dataclass(frozen=True, kw_only=True)
class VisualArch(_Section):
    """What builds the visual network: the timm architecture and the head's dropout."""

    KIND: ClassVar[str] = "visual_branch"
    REQUIRED: ClassVar[tuple[str, ...]] = ("timm_name",)

    timm_name: str
    dropout: float = 0.0

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        """The typed values of the keys ``meta`` holds; any bad one raises."""
        out: dict[str, Any] = {}
        for key in ("global_pool", "mid_level"):  # options removed after commit RETIRED_AT: only their defaults load
            if key in meta and meta[key] != RETIRED_RECIPE_FIELDS[key]:
                w.fail(
                    f"metadata {w.section}{key} = {_show(meta[key])}, an option this dfmm no longer has "
                    f"(commit {RETIRED_AT} can load it)"
                )
        if "timm_name" in meta:
            name = meta["timm_name"]
            if not isinstance(name, str) or visual_architecture(name) not in VISUAL_ARCHITECTURES:
                w.bad("timm_name", name, f"one of {', '.join(VISUAL_ARCHITECTURES)}")
            out["timm_name"] = name
        if "dropout" in meta:
            out["dropout"] = _dropout(w, meta["dropout"])
        return out

    def feature_dim(self) -> int:
        return _visual_shapes(self.timm_name)[1]

    def check_state(
        self, state: Mapping[str, torch.Tensor], path: str | Path | None = None, *, section: str = "", kind: str = ""
    ) -> None:
        """Refuse, before anything is allocated, a state that is not this architecture's (meta-device build)."""
        w = _Where(path, kind or self.KIND, section)
        what = f"timm '{self.timm_name}'"
        _compare(w, what, _built(w, what, _visual_shapes, self.timm_name)[0], state)


@dataclass(frozen=True, kw_only=True)
class VisualMeta(VisualArch, _Ruled):
    """Everything serving a visual branch reads: the architecture, the input size and normalisation, the recipe's
    test-time augmentation, the face-crop geometry and the decision rule."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("timm_name", "image_size", "backbone")

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tta: bool = False
    face_crop: CropGeometry = field(default_factory=CropGeometry)
    threshold: float = _RULE.threshold
    temperature: float = _RULE.temperature

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        out = super()._values(meta, w)
        if "image_size" in meta:
            out["image_size"] = _int(w, "image_size", meta["image_size"], *IMAGE_SIZES)
        if "backbone" in meta:
            b = _object(w, "backbone", meta["backbone"])
            for key in ("mean", "std"):
                if key not in b:
                    w.fail(f"metadata has no {w.section}backbone.{key} (the input normalisation)")
                v = b[key]
                if not (isinstance(v, list | tuple) and len(v) == 3 and all(_is_number(x) for x in v)):
                    w.bad(f"backbone.{key}", v, "3 finite numbers (R, G, B)")
                if key == "std" and not all(x > 0 for x in v):
                    w.bad("backbone.std", v, "3 numbers > 0")
                out[key] = tuple(float(x) for x in v)
        if "tta" in meta:
            out["tta"] = _bool(w, "tta", meta["tta"])
        if meta.get("face_crop") is not None:
            out["face_crop"] = _face_crop(w, meta["face_crop"])
        out |= _rule(w, meta)
        _common(w, meta)
        return out


def _face_crop(w: _Where, value: Any) -> CropGeometry:
    fc = _object(w, "face_crop", value)
    for key in ("face_width", "face_height"):
        if key in fc and not (_is_number(fc[key]) and fc[key] > 0):
            w.bad(f"face_crop.{key}", fc[key], "a finite number > 0 (a fraction of the crop side)")
    for key in ("center_x", "center_y"):
        if key in fc and not _is_number(fc[key]):
            w.bad(f"face_crop.{key}", fc[key], "a finite number")
    if "measured_on" in fc and (isinstance(fc["measured_on"], bool) or not isinstance(fc["measured_on"], int)):
        w.bad("face_crop.measured_on", fc["measured_on"], "an integer")
    if "source" in fc and not isinstance(fc["source"], str):
        w.bad("face_crop.source", fc["source"], "a string")
    return CropGeometry.from_meta(fc)


# -------------------------------------------------------------------------------------------------- text
def _hf_config(w: _Where, value: Any) -> dict[str, Any]:
    hf = _object(w, "hf_config", value)
    model_type = hf.get("model_type")
    if model_type not in TEXT_MODEL_TYPES:
        w.bad("hf_config.model_type", model_type, f"one of {', '.join(TEXT_MODEL_TYPES)}")
    for key, (lo, hi) in HF_SIZES.items():
        if key not in hf:
            w.fail(f"metadata has no {w.section}hf_config.{key}")
        _int(w, f"hf_config.{key}", hf[key], lo, hi)
    if hf["hidden_size"] % hf["num_attention_heads"]:
        w.bad(
            "hf_config.num_attention_heads", hf["num_attention_heads"], f"a divisor of hidden_size {hf['hidden_size']}"
        )
    if "hidden_act" in hf:
        from transformers.activations import ACT2FN

        if not isinstance(hf["hidden_act"], str) or hf["hidden_act"] not in ACT2FN:
            w.bad("hf_config.hidden_act", hf["hidden_act"], "an activation transformers knows (e.g. 'gelu')")
    types = hf.get("type_vocab_size", 2)
    _int(w, "hf_config.type_vocab_size", types, 1, 1024)
    h, n, i = hf["hidden_size"], hf["num_hidden_layers"], hf["intermediate_size"]
    params = (hf["vocab_size"] + hf["max_position_embeddings"] + types) * h + n * (4 * h * h + 2 * h * i) + h * h
    if params > MAX_TEXT_PARAMETERS:
        w.fail(
            f"metadata {w.section}hf_config describes a {_millions(params)}-parameter encoder; "
            f"this dfmm loads at most {_millions(MAX_TEXT_PARAMETERS)}"
        )
    try:
        _hf_config_object(json.dumps(hf, sort_keys=True))
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError, TypeError, KeyError...
        w.fail(f"metadata {w.section}hf_config is not a valid {model_type} config ({_show(str(e), 100)})")
    return hf


def _position_limit(hf: Mapping[str, Any]) -> int:
    """The longest input the encoder's position table allows (RoBERTa's first two positions are reserved)."""
    return hf["max_position_embeddings"] - (2 if hf["model_type"] == "roberta" else 0)


def _tokenizer(w: _Where, value: Any) -> Any:
    from tokenizers import Tokenizer

    if not isinstance(value, str):
        w.bad("tokenizer_json", value, "a tokenizer.json document (a string)")
    try:
        return Tokenizer.from_str(value)
    except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception subclasses
        w.fail(
            f"metadata {w.section}tokenizer_json is not a tokenizer the tokenizers library loads ({_show(str(e), 80)})"
        )


@dataclass(frozen=True, kw_only=True)
class TextMeta(_Section, _Ruled):
    """Everything building and serving a text branch reads: the transformers config, the tokenizer, the head and
    the decision rule."""

    KIND: ClassVar[str] = "text_branch"
    REQUIRED: ClassVar[tuple[str, ...]] = ("hf_config", "tokenizer_json", "special_tokens")

    hf_config: dict[str, Any] = field(hash=False)
    tokenizer_json: str = field(repr=False)
    special_tokens: dict[str, str] = field(hash=False)  # pad_token among them: serving pads batches
    max_length: int = 512
    hidden: int = 256
    dropout: float = 0.0
    threshold: float = _RULE.threshold
    temperature: float = _RULE.temperature

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "hf_config" in meta:
            out["hf_config"] = _hf_config(w, meta["hf_config"])
        tokenizer = None
        if "tokenizer_json" in meta:
            tokenizer = _tokenizer(w, meta["tokenizer_json"])
            out["tokenizer_json"] = meta["tokenizer_json"]
            tokens = tokenizer.get_vocab_size(with_added_tokens=True)
            if "hf_config" in out and tokens > out["hf_config"]["vocab_size"]:
                w.fail(
                    f"metadata {w.section}tokenizer_json has {tokens} tokens, "
                    f"more than hf_config.vocab_size {out['hf_config']['vocab_size']}"
                )
        if "special_tokens" in meta:
            st = meta["special_tokens"]
            if not (isinstance(st, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in st.items())):
                w.bad("special_tokens", st, "an object of token names to tokens (strings)")
            if "pad_token" not in st:
                w.bad("special_tokens", st, "an object naming the pad_token (texts are padded into batches)")
            for k, v in st.items():
                if k not in SPECIAL_TOKENS:
                    w.bad(f"special_tokens.{k}", v, f"only {', '.join(SPECIAL_TOKENS)}")
                if tokenizer is not None and tokenizer.token_to_id(v) is None:
                    w.bad(f"special_tokens.{k}", v, "a token of the tokenizer's vocabulary")
            out["special_tokens"] = dict(st)
        if "max_length" in meta:
            n = _int(w, "max_length", meta["max_length"], *MAX_LENGTHS)
            if "hf_config" in out and n > _position_limit(out["hf_config"]):
                w.bad("max_length", n, f"at most {_position_limit(out['hf_config'])}, the encoder's position table")
            out["max_length"] = n
        if "hidden" in meta:
            out["hidden"] = _int(w, "hidden", meta["hidden"], 1, 65536)
        if "dropout" in meta:
            out["dropout"] = _dropout(w, meta["dropout"])
        out |= _rule(w, meta)
        _common(w, meta)
        return out

    @property
    def feature_dim(self) -> int:
        return int(self.hf_config["hidden_size"])

    def config(self) -> Any:
        """The transformers config object of the encoder."""
        return _hf_config_object(json.dumps(self.hf_config, sort_keys=True))

    def check_state(
        self, state: Mapping[str, torch.Tensor], path: str | Path | None = None, *, section: str = "", kind: str = ""
    ) -> None:
        """Refuse, before anything is allocated, a state that is not this encoder's (meta-device build). Buffers
        that transformers versions save or not (``position_ids``, ``token_type_ids``) may be present or absent."""
        w = _Where(path, kind or self.KIND, section)
        what = f"a {self.hf_config['model_type']} encoder of {self.hf_config['num_hidden_layers']} layers"
        expected = _built(w, what, _text_shapes, json.dumps(self.hf_config, sort_keys=True), self.hidden)
        _compare(w, what, expected, state, ("position_ids", "token_type_ids"))


# ------------------------------------------------------------------------------------------------ n-grams
@dataclass(frozen=True, kw_only=True)
class NgramMeta(_Section, _Ruled):
    """A ``text_ngrams`` checkpoint (``dfmm.models.ngrams``): the hashing it was fitted with (fixed in this dfmm:
    another width or n-gram range would hash texts elsewhere), the IDF of unseen n-grams and the decision rule."""

    KIND: ClassVar[str] = "text_ngrams"
    REQUIRED: ClassVar[tuple[str, ...]] = ("ngrams",)

    default_idf: float
    seen: int
    max_length: int = 512  # tokens the out-of-distribution reference's frozen encoder reads (not the n-grams)
    threshold: float = _RULE.threshold
    temperature: float = _RULE.temperature
    feature_dim: int = 1

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "ngrams" in meta:
            ng = _object(w, "ngrams", meta["ngrams"])
            fixed = {"word": list(WORD_NGRAMS), "char_wb": list(CHAR_NGRAMS), "n_features": NGRAM_FEATURES}
            for key, value in fixed.items():
                if ng.get(key) != value:
                    w.bad(f"ngrams.{key}", ng.get(key), f"{value} (the hashing this dfmm scores with)")
            idf = ng.get("default_idf")
            if not (_is_number(idf) and idf >= 1.0):
                w.bad("ngrams.default_idf", idf, "a number >= 1 (a smoothed IDF)")
            out["default_idf"] = float(idf)
            out["seen"] = _int(w, "ngrams.seen", ng.get("seen"), 1, 2 * NGRAM_FEATURES)
        if "max_length" in meta:
            out["max_length"] = _int(w, "max_length", meta["max_length"], *MAX_LENGTHS)
        out |= _rule(w, meta)
        _common(w, meta)
        return out

    def check_state(
        self, state: Mapping[str, torch.Tensor], path: str | Path | None = None, *, section: str = "", kind: str = ""
    ) -> None:
        """The four tensors, ``seen`` long (the bias one number), the indices int64, sorted, distinct and within
        the hashed width; IDF, coefficients and bias finite floats, every IDF between 1 and ``default_idf`` (the IDF
        of an n-gram no training text held, the largest there is): anything else is refused before a text is
        scored."""
        w = _Where(path, kind or self.KIND, section)
        expected = {PREFIX + t: (1,) if t == "bias" else (self.seen,) for t in TENSORS}
        _compare(w, f"an n-gram model of {self.seen} seen n-grams", expected, state)
        index, idf = state[PREFIX + "index"], state[PREFIX + "idf"]
        if index.dtype != torch.int64:
            w.fail(f"tensor '{PREFIX}index' is {index.dtype}, expected torch.int64")
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= 2 * NGRAM_FEATURES):
            w.fail(f"tensor '{PREFIX}index' has entries outside 0..{2 * NGRAM_FEATURES - 1}")
        if len(index) > 1 and not bool((index[1:] > index[:-1]).all()):
            w.fail(f"tensor '{PREFIX}index' is not sorted and distinct")
        for name in ("idf", "coef", "bias"):
            t = state[PREFIX + name]
            if not t.is_floating_point():
                w.fail(f"tensor '{PREFIX}{name}' is {t.dtype}, expected a floating-point tensor")
            if not bool(torch.isfinite(t).all()):
                w.fail(f"tensor '{PREFIX}{name}' holds non-finite values (NaN or inf)")
        if len(idf) and (float(idf.min()) < 1.0 or float(idf.max()) > self.default_idf + 1e-9):
            w.fail(
                f"tensor '{PREFIX}idf' holds values outside [1, {self.default_idf:.4f}] (a smoothed IDF is at least 1 "
                "and at most the metadata's ngrams.default_idf)"
            )


# ------------------------------------------------------------------------------------------------ fusion
@dataclass(frozen=True, kw_only=True)
class FusionMeta(_Section):
    """The fusion module of an ensemble: the branch feature widths and whether it has cross-modal attention."""

    KIND: ClassVar[str] = "multimodal_ensemble"
    REQUIRED: ClassVar[tuple[str, ...]] = ("visual_dim", "text_dim", "attention")

    visual_dim: int
    text_dim: int
    attention: bool

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("visual_dim", "text_dim"):
            if key in meta:
                out[key] = _int(w, key, meta[key], 1, 65536)
        if "attention" in meta:
            out["attention"] = _bool(w, "attention", meta["attention"])
        return out

    def check_state(
        self, state: Mapping[str, torch.Tensor], path: str | Path | None = None, *, section: str = "", kind: str = ""
    ) -> None:
        expected = _fusion_shapes(self.visual_dim, self.text_dim, self.attention)
        _compare(_Where(path, kind or self.KIND, section), "the fusion its metadata describes", expected, state)
