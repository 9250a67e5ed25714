"""Bad checkpoint metadata, in the table style of ``test_bad_input``: one line naming the file and the key, before
any model is built.

Each case edits the metadata of one of the session's tiny checkpoints (``tiny_models``: real visual, text and
ensemble models), saves a copy with ``save_checkpoint`` and feeds it to ``dfmm.serving.inference.load_model`` (API) or to
``dfmm classify`` (CLI: one ``dfmm: error:`` line, exit status 2). Checkpoints written by today's code, and copies
that lack the optional keys, must load and classify as before.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from dfmm.errors import CheckpointError
from dfmm.models.checkpoints import load_checkpoint, save_checkpoint
from dfmm.models.metadata import EnsembleMeta, TextMeta, VisualMeta

from .test_bad_input import Ctx, Evil, _jpeg, api, cli
from .test_bad_input import test_bad_input as run_case

KINDS = {"visual": "visual_branch", "text": "text_branch", "ensemble": "multimodal_ensemble"}
DROP = object()  # an edit's value that removes the key


def _edit(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    for p in parents:
        target = target[p]
    if value is DROP:
        del target[key]
    else:
        target[key] = value


def edited(model: str, edits: dict[str, Any], state: Callable[[dict], dict] | None = None) -> Callable[[Ctx], str]:
    """A copy of the tiny ``model`` checkpoint with its metadata edited (dotted keys; ``DROP`` removes one)."""

    def make(t: Ctx) -> str:
        kind, st, meta = load_checkpoint(t.model(model))
        meta = copy.deepcopy(meta)
        for dotted, value in edits.items():
            _edit(meta, dotted, value)
        name = "-".join(k.replace(".", "_") for k in edits) or "copy"
        return str(save_checkpoint(t.tmp / f"{model}-{name}.pt", kind, state(st) if state else st, meta))

    return make


def loaded(model: str, edits: dict[str, Any], state: Callable[[dict], dict] | None = None) -> Callable[[Ctx], Any]:
    """``load_model`` on the edited copy (the API case)."""
    return lambda t: _load_model(edited(model, edits, state)(t))


def classify_image_cli(model: str, edits: dict[str, Any]) -> Callable[[Ctx], list[str]]:
    return lambda t: ["classify", "image", t.file("face.jpg", _jpeg()), "--model", edited(model, edits)(t)]


def classify_text_cli(model: str, edits: dict[str, Any]) -> Callable[[Ctx], list[str]]:
    return lambda t: ["classify", "text", "hi", "--model", edited(model, edits)(t)]


def _raw_pickle(t: Ctx) -> str:
    p = t.tmp / "raw.pkl"
    with p.open("wb") as f:
        pickle.dump({"a": 1}, f)
    return str(p)


def _reduce_pickle(t: Ctx) -> str:
    p = t.tmp / "reduce.pt"
    torch.save(Evil(), p)
    return str(p)


def _load_model(path: str) -> Any:
    from dfmm.serving.inference import load_model

    return load_model(path)


def _without_head(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "head.weight"}


def _bad(id: str, model: str, edits: dict[str, Any], error: str, state: Any = None) -> Any:
    return api(id, loaded(model, edits, state), error, raises=CheckpointError)


CASES = [
    # ---- visual branch: required keys, ranges, the registry of architectures
    _bad("vis-image-size-missing", "visual", {"image_size": DROP}, "visual_branch metadata has no image_size"),
    _bad("vis-image-size-zero", "visual", {"image_size": 0}, "image_size = 0; expected an integer in 32..1024"),
    _bad("vis-image-size-word", "visual", {"image_size": "big"}, "image_size = 'big'; expected an integer in 32"),
    _bad("vis-image-size-bool", "visual", {"image_size": True}, "image_size = True; expected an integer"),
    _bad(
        "vis-image-size-30000",
        "visual",
        {"image_size": 30000},
        "visual-image_size.pt: visual_branch metadata image_size = 30000; expected an integer in 32..1024",
    ),
    _bad("vis-backbone-missing", "visual", {"backbone": DROP}, "visual_branch metadata has no backbone"),
    _bad("vis-backbone-not-object", "visual", {"backbone": "lite0"}, "backbone = 'lite0'; expected an object"),
    _bad("vis-mean-missing", "visual", {"backbone.mean": DROP}, "metadata has no backbone.mean"),
    _bad("vis-mean-empty", "visual", {"backbone.mean": []}, "backbone.mean = []; expected 3 finite numbers"),
    _bad("vis-mean-nan", "visual", {"backbone.mean": [float("nan"), 0.5, 0.5]}, "backbone.mean = [nan, 0.5, 0.5]"),
    _bad("vis-std-zero", "visual", {"backbone.std": [0, 0, 0]}, "backbone.std = [0, 0, 0]; expected 3 numbers > 0"),
    _bad("vis-timm-name-missing", "visual", {"timm_name": DROP}, "visual_branch metadata has no timm_name"),
    _bad("vis-timm-name-int", "visual", {"timm_name": 5}, "timm_name = 5; expected one of tf_efficientnet_lite0"),
    _bad(
        "vis-timm-name-vit-huge",
        "visual",
        {"timm_name": "vit_huge_patch14_224"},
        "timm_name = 'vit_huge_patch14_224'; expected one of tf_efficientnet_lite0, efficientnet_b0",
    ),
    _bad(
        "vis-architecture-does-not-fit-state",  # a known name, another network: refused on the meta-device shapes
        "visual",
        {"timm_name": "efficientnet_b0"},
        "visual_branch checkpoint state does not fit timm 'efficientnet_b0'",
    ),
    _bad("vis-state-lacks-a-tensor", "visual", {}, "missing: 1 (e.g. 'head.weight')", state=_without_head),
    _bad("vis-dropout-one", "visual", {"dropout": 1.0}, "dropout = 1.0; expected a number in [0, 1)"),
    _bad("vis-tta-string", "visual", {"tta": "yes"}, "tta = 'yes'; expected true or false"),
    _bad("vis-face-crop-width-zero", "visual", {"face_crop.face_width": 0}, "face_crop.face_width = 0; expected"),
    _bad("vis-face-crop-list", "visual", {"face_crop": [1, 2]}, "face_crop = [1, 2]; expected an object"),
    _bad("vis-threshold-kept", "visual", {"threshold": 1.5}, "threshold = 1.5; expected a number between 0 and 1"),
    _bad("vis-retired-pooling", "visual", {"global_pool": "max"}, "global_pool = 'max', an option this dfmm no longer"),
    # ---- text branch
    _bad("txt-hf-config-missing", "text", {"hf_config": DROP}, "text_branch metadata has no hf_config"),
    _bad("txt-tokenizer-missing", "text", {"tokenizer_json": DROP}, "text_branch metadata has no tokenizer_json"),
    _bad("txt-tokenizer-bad", "text", {"tokenizer_json": "{not json"}, "tokenizer_json is not a tokenizer the"),
    _bad("txt-tokenizer-not-string", "text", {"tokenizer_json": 5}, "tokenizer_json = 5; expected a tokenizer.json"),
    _bad("txt-special-tokens-list", "text", {"special_tokens": ["[PAD]"]}, "special_tokens = ['[PAD]']; expected an"),
    _bad("txt-special-tokens-no-pad", "text", {"special_tokens.pad_token": DROP}, "naming the pad_token"),
    _bad(
        "txt-special-token-not-in-vocab",
        "text",
        {"special_tokens.pad_token": "<nope>"},
        "special_tokens.pad_token = '<nope>'; expected a token of the tokenizer's vocabulary",
    ),
    _bad("txt-special-tokens-missing", "text", {"special_tokens": DROP}, "text_branch metadata has no special_tokens"),
    _bad("txt-max-length-negative", "text", {"max_length": -5}, "max_length = -5; expected an integer in 8..4096"),
    _bad(
        "txt-max-length-100000", "text", {"max_length": 100000}, "max_length = 100000; expected an integer in 8..4096"
    ),
    _bad("txt-max-length-over-positions", "text", {"max_length": 1000}, "max_length = 1000; expected at most 512"),
    _bad("txt-hidden-zero", "text", {"hidden": 0}, "hidden = 0; expected an integer in 1..65536"),
    _bad("txt-dropout-negative", "text", {"dropout": -0.1}, "dropout = -0.1; expected a number in [0, 1)"),
    _bad(
        "txt-hf-layers-10000",
        "text",
        {"hf_config.num_hidden_layers": 10000},
        "hf_config.num_hidden_layers = 10000; expected an integer in 1..48",
    ),
    _bad("txt-hf-model-type", "text", {"hf_config.model_type": "gpt2"}, "hf_config.model_type = 'gpt2'; expected one"),
    _bad("txt-hf-hidden-size-missing", "text", {"hf_config.hidden_size": DROP}, "has no hf_config.hidden_size"),
    _bad("txt-hf-heads", "text", {"hf_config.num_attention_heads": 7}, "a divisor of hidden_size 384"),
    _bad(
        "txt-hf-too-big",
        "text",
        {"hf_config.hidden_size": 4096, "hf_config.vocab_size": 250000, "hf_config.num_attention_heads": 32},
        "-parameter encoder; this dfmm loads at most 600.00M",
    ),
    _bad(
        "txt-hf-layers-do-not-fit-state",  # within range, but the state holds 6 layers
        "text",
        {"hf_config.num_hidden_layers": 12},
        "does not fit a bert encoder of 12 layers",
    ),
    _bad(
        "txt-hf-vocab-smaller-than-tokenizer", "text", {"hf_config.vocab_size": 1000}, "more than hf_config.vocab_size"
    ),
    # ---- ensemble: the sections, named with their prefix
    _bad(
        "ens-visual-image-size",
        "ensemble",
        {"visual.image_size": 30000},
        "multimodal_ensemble metadata visual.image_size = 30000",
    ),
    _bad(
        "ens-text-max-length", "ensemble", {"text.max_length": -5}, "multimodal_ensemble metadata text.max_length = -5"
    ),
    _bad("ens-text-tokenizer-missing", "ensemble", {"text.tokenizer_json": DROP}, "has no text.tokenizer_json"),
    _bad("ens-fusion-missing", "ensemble", {"fusion": DROP}, "metadata has no 'fusion' section"),
    _bad("ens-fusion-attention", "ensemble", {"fusion.attention": "yes"}, "fusion.attention = 'yes'; expected true"),
    _bad("ens-fusion-visual-dim", "ensemble", {"fusion.visual_dim": 999}, "fusion.visual_dim = 999; expected 1280"),
    _bad(
        "ens-visual-not-object", "ensemble", {"visual": [1]}, "multimodal_ensemble metadata 'visual' is not an object"
    ),
    # ---- a tensors container that describes no model: load_checkpoint reads it, load_model refuses it in one line
    api(
        "ckpt-describes-no-model",
        lambda t: _load_model(t.checkpoint("w.pt", meta={"threshold": 0.3})),
        "w.pt: visual_branch metadata has no timm_name",
        raises=CheckpointError,
    ),
    # ---- raw pickles: a fixed one-line reason, no torch warning on stderr (the CLI rows check stderr)
    api("ckpt-raw-pickle", lambda t: load_checkpoint(_raw_pickle(t)), "raw.pkl: not a tensors-only dfmm checkpoint"),
    cli(
        "ckpt-cli-raw-pickle",
        lambda t: ["classify", "text", "hi", "--model", _raw_pickle(t)],
        "raw.pkl: not a tensors-only dfmm checkpoint (it pickles Python objects or code, which dfmm never unpickles)",
    ),
    cli(
        "ckpt-cli-reduce-pickle",
        lambda t: ["classify", "image", t.file("a.jpg", _jpeg()), "--model", _reduce_pickle(t)],
        "reduce.pt: not a tensors-only dfmm checkpoint (it pickles",
    ),
    cli(
        "ckpt-cli-truncated",
        lambda t: ["classify", "text", "hi", "--model", t.file("cut.pt", open(t.model("text"), "rb").read()[:5000])],
        "cut.pt: not a tensors-only dfmm checkpoint (truncated, corrupt or not written by torch.save)",
    ),
    # ---- through the CLI: one line, exit status 2
    cli("cli-image-size-30000", classify_image_cli("visual", {"image_size": 30000}), "image_size = 30000; expected"),
    cli("cli-vit-huge", classify_image_cli("visual", {"timm_name": "vit_huge_patch14_224"}), "timm_name = 'vit_huge"),
    cli("cli-empty-mean", classify_image_cli("visual", {"backbone.mean": []}), "backbone.mean = []"),
    cli("cli-max-length-negative", classify_text_cli("text", {"max_length": -5}), "max_length = -5; expected"),
    cli("cli-bad-tokenizer", classify_text_cli("text", {"tokenizer_json": "{}"}), "tokenizer_json is not a tokenizer"),
    cli("cli-special-tokens-list", classify_text_cli("text", {"special_tokens": []}), "special_tokens = []; expected"),
    cli(
        "cli-hf-layers-10000",
        classify_text_cli("text", {"hf_config.num_hidden_layers": 10000}),
        "hf_config.num_hidden_layers = 10000",
    ),
    cli("cli-ensemble-text-hidden", classify_text_cli("ensemble", {"text.hidden": "wide"}), "text.hidden = 'wide'"),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint(case, tmp_path, request, monkeypatch, capsys):
    run_case(case, tmp_path, request, monkeypatch, capsys)


def test_every_case_has_one_expectation():
    ids = [p.values[0].id for p in CASES]
    assert len(ids) == len(set(ids))
    assert all((p.values[0].error is None) != (p.values[0].check is None) for p in CASES)


# ------------------------------------------------------------------------------------------- nothing is built
@pytest.mark.parametrize(
    "model, edits",
    [
        ("visual", {"image_size": 30000}),
        ("visual", {"timm_name": "vit_huge_patch14_224"}),
        ("visual", {"timm_name": "efficientnet_b0"}),  # passes the registry: refused on meta-device shapes
        ("text", {"hf_config.num_hidden_layers": 12}),
        ("text", {"hf_config.num_hidden_layers": 10000}),
        ("text", {"max_length": 100000}),
        ("ensemble", {"text.hf_config.num_hidden_layers": 12}),  # refused before the visual branch is built
    ],
    ids=["image-size", "vit-huge", "b0-on-lite0-state", "text-12-layers", "text-10000-layers", "max-length", "ens"],
)
def test_refused_metadata_builds_no_model(model, edits, tmp_path, request, monkeypatch):
    """No timm or transformers model is built off the meta device for a checkpoint that is refused."""
    import timm
    import transformers

    from dfmm.serving.inference import load_model

    path = edited(model, edits)(Ctx(tmp_path, request, monkeypatch))
    built: list[str] = []

    def spy(real: Callable, name: str) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if torch.empty(0).device.type != "meta":  # shapes-only builds allocate nothing
                built.append(name)
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(timm, "create_model", spy(timm.create_model, "timm"))
    monkeypatch.setattr(transformers.AutoModel, "from_config", spy(transformers.AutoModel.from_config, "transformers"))
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    assert not built, (built, str(e.value))
    load_model(request.getfixturevalue("tiny_models")[model])  # the spies see a real build
    assert built


# ------------------------------------------------------------------------------ old checkpoints still load
# keys today's checkpoints hold that older ones may lack, and that change nothing here (eval mode: no dropout; no face
# crop asked; a short text: max_length 64 or the default 512 alike; hidden 256 is the default)
OPTIONAL = {
    "visual": ("dropout", "recipe", "study", "config", "config_digest", "face_crop"),
    "text": ("dropout", "recipe", "study", "config", "config_digest", "encoder", "max_length", "hidden"),
}


def _probabilities(path: str) -> tuple[float, float]:
    from dfmm.serving.inference import classify_image, classify_text, load_model

    model, _ = load_model(path)
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    p_image = classify_image(model, image, face_crop="never")["probability_fake"] if model.visual else np.nan
    p_text = classify_text(model, "Moreover, the essay delves into it.")["probability_fake"] if model.text else np.nan
    return p_image, p_text


@pytest.mark.parametrize("model", ["visual", "text", "ensemble"])
def test_checkpoints_without_the_optional_keys_classify_as_before(model, tmp_path, request, monkeypatch):
    """Today's checkpoints load and classify as they did; a copy without the optional keys (older checkpoints lack
    tta, face_crop...) takes the declared defaults: with ``tta`` absent meaning false, as an explicit false does."""
    t = Ctx(tmp_path, request, monkeypatch)
    original = t.model(model)
    meta = load_checkpoint(original)[2]
    parts = {"visual": "visual.", "text": "text."} if model == "ensemble" else {model: ""}
    drop = {prefix + k: DROP for part, prefix in parts.items() for k in OPTIONAL[part] if k in _at(meta, prefix)}
    assert drop
    assert _probabilities(edited(model, drop)(t)) == _probabilities(original)
    if "visual" in parts:  # tta: absent is false
        vis = parts["visual"]
        assert _probabilities(edited(model, {f"{vis}tta": DROP})(t)) == _probabilities(
            edited(model, {f"{vis}tta": False})(t)
        )


def _at(meta: dict[str, Any], prefix: str) -> dict[str, Any]:
    return meta[prefix.rstrip(".")] if prefix else meta


def test_typed_metadata_of_the_tiny_models(tiny_models):
    """The typed objects other modules read: the defaults declared once, the values the checkpoints hold."""
    _, _, vm = load_checkpoint(tiny_models["visual"])
    v = VisualMeta.from_meta(vm)
    assert (v.image_size, v.timm_name, len(v.mean), v.tta) == (64, "tf_efficientnet_lite0", 3, vm["tta"])
    assert v.rule.threshold == vm["threshold"] and v.face_crop.face_width == vm["face_crop"]["face_width"]
    bare = {k: vm[k] for k in VisualMeta.REQUIRED}
    d = VisualMeta.from_meta(bare)
    assert (d.tta, d.dropout, d.threshold, d.temperature, d.face_crop.measured_on) == (False, 0.0, 0.5, 1.0, 0)
    _, _, tm = load_checkpoint(tiny_models["text"])
    t = TextMeta.from_meta(tm)
    assert (t.max_length, t.hidden, t.special_tokens["pad_token"]) == (64, 256, "[PAD]")
    assert TextMeta.from_meta({k: tm[k] for k in TextMeta.REQUIRED}).max_length == 512
    _, _, em = load_checkpoint(tiny_models["ensemble"])
    e = EnsembleMeta.from_meta(em)
    assert (e.fusion.visual_dim, e.fusion.text_dim) == (1280, 384) and e.visual.image_size == 64
    with pytest.raises(CheckpointError, match=r"^x\.pt: visual_branch metadata image_size = 0; expected"):
        VisualMeta.from_meta({**vm, "image_size": 0}, "x.pt")
