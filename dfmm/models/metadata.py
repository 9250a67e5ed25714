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
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import torch

from dfmm.choices import IMAGE_SIZES, MAX_LENGTHS, TEXT_MODEL_TYPES, VISUAL_ARCHITECTURES, visual_architecture
from dfmm.config import RETIRED_AT, RETIRED_RECIPE_FIELDS
from dfmm.data.faces import CropGeometry
from dfmm.errors import CheckpointError
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


# ------------------------------------------------------------------------------------------------ messages
def _show(value: Any, limit: int = 60) -> str:
    """repr of a value, cut at a word boundary with an ellipsis when long."""
    text = " ".join(repr(value).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(",:") + "…"


@dataclass(frozen=True)
class _Where:
    """Whose metadata is read: a file (None when the caller adds it), the checkpoint kind and a section prefix."""

    path: str | Path | None
    kind: str
    section: str = ""  # "visual." in an ensemble

    def _head(self) -> str:
        return f"{self.path}: " if self.path is not None else ""

    def bad(self, key: str, value: Any, expected: str) -> NoReturn:
        raise CheckpointError(
            f"{self._head()}{self.kind} metadata {self.section}{key} = {_show(value)}; expected {expected}"
        )

    def fail(self, what: str) -> NoReturn:
        raise CheckpointError(f"{self._head()}{self.kind} {what}")

    def missing(self, key: str, needs: tuple[str, ...]) -> NoReturn:
        names = ", ".join(self.section + k for k in needs)
        self.fail(f"metadata has no {self.section}{key} (a {self.kind.split('_')[0]} branch needs {names})")

    def sub(self, section: str) -> _Where:
        return _Where(self.path, self.kind, self.section + section)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(w: _Where, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        w.bad(key, value, f"an integer in {lo}..{hi}")
    return value


def _bool(w: _Where, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        w.bad(key, value, "true or false")
    return value


def _dropout(w: _Where, value: Any) -> float:
    if not (_is_number(value) and 0.0 <= value < 1.0):
        w.bad("dropout", value, "a number in [0, 1)")
    return float(value)


def _object(w: _Where, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        w.bad(key, value, "an object")
    return value


def _rule(w: _Where, meta: Mapping[str, Any]) -> dict[str, float]:
    """The decision rule's keys (optional: 0.5 and 1.0 when training chose none)."""
    out = {}
    if "threshold" in meta:
        t = meta["threshold"]
        if not (_is_number(t) and 0.0 < t < 1.0):
            w.bad("threshold", t, "a number between 0 and 1 (exclusive)")
        out["threshold"] = float(t)
    if "temperature" in meta:
        t = meta["temperature"]
        if not (_is_number(t) and t > 0.0):
            w.bad("temperature", t, "a finite number > 0")
        out["temperature"] = float(t)
    return out


def _common(w: _Where, meta: Mapping[str, Any]) -> None:
    """Keys every section may carry that ``load_model`` hands on: the config and its digest."""
    if "config" in meta:
        _object(w, "config", meta["config"])
    if "config_digest" in meta and not isinstance(meta["config_digest"], str):
        w.bad("config_digest", meta["config_digest"], "a string")


def _meta_dict(w: _Where, meta: Any) -> Mapping[str, Any]:
    if not isinstance(meta, Mapping):
        if w.section:
            w.fail(f"metadata '{w.section.rstrip('.')}' is not an object")
        w.fail(f"checkpoint metadata is a JSON {type(meta).__name__}, expected an object")
    return meta


# -------------------------------------------------------------------------------------------- state checks
def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _compare(
    w: _Where,
    what: str,
    expected: Mapping[str, tuple[int, ...]],
    state: Mapping[str, torch.Tensor],
    tolerated: tuple[str, ...] = (),
) -> None:
    """Refuse a state whose tensors are not the architecture's, in one line: counts, then the first differences."""

    def optional(key: str) -> bool:
        return any(key.endswith(t) for t in tolerated)

    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected and not optional(k)]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or shapes):
        return
    want = sum(math.prod(s) for s in expected.values())
    have = sum(int(v.numel()) for v in state.values())
    parts = []
    if missing:
        parts.append(f"missing: {len(missing)} (e.g. '{missing[0]}')")
    if unexpected:
        parts.append(f"unexpected: {len(unexpected)} (e.g. '{unexpected[0]}')")
    if shapes:
        k = shapes[0]
        parts.append(f"other shape: {len(shapes)} (e.g. '{k}' {list(state[k].shape)}, expected {list(expected[k])})")
    which = f"checkpoint state {w.section}*" if w.section else "checkpoint state"
    w.fail(
        f"{which} does not fit {what}: it expects {_millions(want)} weights in {len(expected)} tensors, "
        f"the checkpoint holds {_millions(have)} in {len(state)}; " + ", ".join(parts)
    )


class _BuildError(Exception):
    """The architecture the metadata names could not be built, even shapes-only (the reason)."""


def _built(w: _Where, what: str, shapes: Callable[..., Any], *args: Any) -> Any:
    try:
        return shapes(*args)
    except _BuildError as e:
        w.fail(f"metadata {w.section}names {what}, which does not build ({_show(str(e), 100)})")


@functools.lru_cache(maxsize=8)
def _visual_shapes(timm_name: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """(tensor shapes, feature width) of a visual branch on timm ``timm_name``, built on the meta device."""
    import timm

    from dfmm.models.visual import VisualBranch

    try:
        with torch.device("meta"):
            model = VisualBranch(timm.create_model(timm_name, pretrained=False, num_classes=0, global_pool="avg"))
    except Exception as e:  # noqa: BLE001 - a timm that lacks an architecture of the registry
        raise _BuildError(" ".join(str(e).split())) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, model.feature_dim


@functools.lru_cache(maxsize=8)
def _text_shapes(hf_json: str, hidden: int) -> dict[str, tuple[int, ...]]:
    from transformers import AutoModel

    from dfmm.models.text import TextBranch

    try:
        with torch.device("meta"):
            model = TextBranch(AutoModel.from_config(_hf_config_object(hf_json)), hidden)
    except Exception as e:  # noqa: BLE001 - a config field transformers rejects only when it builds the model
        raise _BuildError(" ".join(str(e).split())) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _hf_config_object(hf_json: str) -> Any:
    from transformers import AutoConfig

    hf = json.loads(hf_json)
    model_type = hf.pop("model_type")
    return AutoConfig.for_model(model_type, **{k: v for k, v in hf.items() if not k.startswith("_")})


def _fusion_shapes(visual_dim: int, text_dim: int, attention: bool) -> dict[str, tuple[int, ...]]:
    from dfmm.models.fusion import FusionEnsemble

    with torch.device("meta"):
        model = FusionEnsemble(visual_dim, text_dim, attention)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------ sections
class _Section:
    """``from_meta``, ``check_present`` and ``describes_model`` of a section type: ``_values`` reads the keys."""

    KIND: ClassVar[str]
    REQUIRED: ClassVar[tuple[str, ...]]

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_meta(cls, meta: Any, path: str | Path | None = None, *, section: str = "", kind: str = "") -> Any:
        """The typed metadata of ``meta`` (a checkpoint's JSON metadata; an instance is returned as is): every key it
        holds is checked, then the required ones must be there; the others take the declared defaults."""
        if isinstance(meta, cls):
            return meta
        w = _Where(path, kind or cls.KIND, section)
        meta = _meta_dict(w, meta)
        values = cls._values(meta, w)
        for key in cls.REQUIRED:
            if key not in meta:
                w.missing(key, cls.REQUIRED)
        return cls(**values)

    @classmethod
    def check_present(cls, meta: Any, path: str | Path | None = None, *, section: str = "", kind: str = "") -> None:
        """Check the keys ``meta`` holds (types, ranges), requiring none."""
        w = _Where(path, kind or cls.KIND, section)
        cls._values(_meta_dict(w, meta), w)

    @classmethod
    def describes_model(cls, meta: Any) -> bool:
        """Whether ``meta`` names any key of the model's description (then it must name them all)."""
        return isinstance(meta, Mapping) and any(k in meta for k in cls.REQUIRED)


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


# ---------------------------------------------------------------------------------------------- ensemble
ENSEMBLE_PARTS: dict[str, type] = {"visual": VisualMeta, "text": TextMeta, "fusion": FusionMeta}


@dataclass(frozen=True, kw_only=True)
class EnsembleMeta:
    """A ``multimodal_ensemble`` checkpoint's metadata: ``{"visual": ..., "text": ..., "fusion": ...}``."""

    KIND: ClassVar[str] = "multimodal_ensemble"

    visual: VisualMeta
    text: TextMeta
    fusion: FusionMeta

    @classmethod
    def check_present(cls, meta: Any, path: str | Path | None = None) -> None:
        w = _Where(path, cls.KIND)
        meta = _meta_dict(w, meta)
        _rule(w, meta)
        _common(w, meta)
        for part, typ in ENSEMBLE_PARTS.items():
            if part in meta:
                typ.check_present(meta[part], path, section=f"{part}.", kind=cls.KIND)

    @classmethod
    def describes_model(cls, meta: Any) -> bool:
        return isinstance(meta, Mapping) and any(
            typ.describes_model(meta.get(part)) for part, typ in ENSEMBLE_PARTS.items()
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
            for part, typ in ENSEMBLE_PARTS.items()
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
    "multimodal_ensemble": EnsembleMeta,
}


def validate(
    path: str | Path | None, kind: str, meta: Any, state: Mapping[str, torch.Tensor] | None = None
) -> VisualMeta | TextMeta | EnsembleMeta | None:
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
