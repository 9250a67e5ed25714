"""Building the branch models: from a config (pretrained backbone weights) or from a checkpoint's metadata.

A branch checkpoint is self-contained: the visual one names its timm architecture, the text one carries its
transformers config and its tokenizer (``tokenizer.json``) as plain text, so ``load_model`` needs neither
the Hub nor the packages that supplied the pretrained weights.
"""

from __future__ import annotations

from typing import Any

import torch

from dfmm.choices import TEXT_MODEL_TYPES
from dfmm.config import Config, Recipe
from dfmm.errors import ConfigError
from dfmm.models import FusionEnsemble, TextBranch, VisualBranch
from dfmm.models.metadata import NgramMeta, TextMeta, VisualArch
from dfmm.models.ngrams import NgramTextModel
from dfmm.models.weights import BackboneInfo, create_text_encoder, create_visual_backbone


def build_visual(cfg: Config) -> tuple[VisualBranch, BackboneInfo]:
    """The pretrained visual branch (the card's average pool, no classifier of the backbone's own)."""
    backbone, info = create_visual_backbone(cfg.visual.backbone, cfg.visual.timm_name)
    backbone.reset_classifier(0, global_pool="avg")
    return VisualBranch(backbone, cfg.visual.dropout), info


def visual_meta(cfg: Config, info: BackboneInfo, recipe: str) -> dict[str, Any]:
    r = cfg.visual.recipes.get(recipe, Recipe())
    return {
        "backbone": info.to_dict(),
        "timm_name": info.architecture,
        "dropout": cfg.visual.dropout,
        "image_size": cfg.visual.image_size,
        "recipe": recipe,
        "tta": r.tta,
        "config_digest": cfg.digest(),
        "study": cfg.study.name,
        "config": cfg.to_dict(),
    }


def visual_from_meta(meta: dict[str, Any] | VisualArch, state: dict[str, torch.Tensor]) -> VisualBranch:
    """The visual branch a checkpoint describes (``VisualArch``: its timm architecture and dropout). The state is
    compared with the architecture built on the meta device first: a checkpoint that does not fit is refused before
    any weight is allocated. Checkpoints from before the retired pooling options were removed name them
    (``global_pool``, ``mid_level``): at their defaults they describe this model; otherwise it is refused."""
    import timm

    arch = VisualArch.from_meta(meta)
    arch.check_state(state)
    backbone = timm.create_model(arch.timm_name, pretrained=False, num_classes=0, global_pool="avg")
    model = VisualBranch(backbone, arch.dropout)
    model.load_state_dict(state, strict=True)
    return model.eval()


def fusion_from_meta(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> FusionEnsemble:
    """The fusion head an ensemble's ``fusion`` metadata describes, with its weights (strict), in eval mode."""
    fusion = FusionEnsemble(meta["visual_dim"], meta["text_dim"], meta["attention"])
    fusion.load_state_dict(state, strict=True)
    return fusion.eval()


def ngrams_from_meta(meta: dict[str, Any] | NgramMeta, state: dict[str, torch.Tensor]) -> NgramTextModel:
    """The n-gram text model a ``text_ngrams`` checkpoint describes (its tensors checked against the metadata)."""
    spec = NgramMeta.from_meta(meta)
    spec.check_state(state)
    return NgramTextModel.from_state(spec.default_idf, state)


def build_text(cfg: Config) -> tuple[TextBranch, Any, BackboneInfo]:
    encoder, tokenizer, info = create_text_encoder(cfg.text.encoder)
    model_type = getattr(encoder.config, "model_type", None)
    if model_type not in TEXT_MODEL_TYPES:  # before training: a checkpoint of it would be refused at load
        raise ConfigError(
            f"text.encoder '{cfg.text.encoder}' is a {model_type!r} encoder; a dfmm checkpoint holds one of "
            f"{', '.join(TEXT_MODEL_TYPES)}"
        )
    return TextBranch(encoder, cfg.text.hidden, cfg.text.dropout), tokenizer, info


def text_meta(cfg: Config, model: TextBranch, tokenizer: Any, info: BackboneInfo, recipe: str) -> dict[str, Any]:
    return {
        "encoder": info.to_dict(),
        "hf_config": model.encoder.config.to_dict(),
        "tokenizer_json": tokenizer.backend_tokenizer.to_str(),
        "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)},
        "max_length": cfg.text.max_length,
        "hidden": cfg.text.hidden,
        "dropout": cfg.text.dropout,
        "recipe": recipe,
        "config_digest": cfg.digest(),
        "study": cfg.study.name,
        "config": cfg.to_dict(),
    }


def text_from_meta(meta: dict[str, Any] | TextMeta, state: dict[str, torch.Tensor]) -> tuple[TextBranch, Any]:
    """The text branch and its tokenizer a checkpoint describes (``TextMeta``), the state checked against the
    encoder its ``hf_config`` names (on the meta device) before the encoder is built."""
    from transformers import AutoModel

    tm = TextMeta.from_meta(meta)
    tm.check_state(state)
    model = TextBranch(AutoModel.from_config(tm.config()), tm.hidden, tm.dropout)
    model.load_state_dict(state, strict=False)  # position_ids buffers differ between transformers versions
    return model.eval(), tokenizer_from_meta(tm)


def tokenizer_from_meta(meta: dict[str, Any] | TextMeta) -> Any:
    """The text branch's tokenizer, from the plain-text ``tokenizer.json`` its metadata carries."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tm = meta if isinstance(meta, TextMeta) else TextMeta.from_meta(meta)
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tm.tokenizer_json), model_max_length=tm.max_length, **tm.special_tokens
    )


def frozen_branch(
    branch: str, backbone: str, timm_name: str = ""
) -> tuple[VisualBranch | TextBranch, BackboneInfo, Any]:
    """(branch, backbone info, tokenizer or None): a branch on the backbone's pretrained weights before any
    fine-tuning, in eval mode, whose ``scored`` features are the frozen generic features that ``dfmm.models.ood``
    measures distances on (the head is unused). ``backbone`` is a visual or text backbone spec (``package:...``,
    ``hub:...``, a folder). A text branch's tokenizer is the fine-tuned branch's (same vocabulary): one tokenisation
    serves both."""
    with torch.random.fork_rng():  # building draws random initial weights: the caller's random state is left as is
        torch.manual_seed(0)  # and the unused head is the same every time (the score cache keys the weights)
        if branch == "visual":
            net, info = create_visual_backbone(backbone, timm_name)
            net.reset_classifier(0, global_pool="avg")
            return VisualBranch(net).eval(), info, None
        net, tokenizer, info = create_text_encoder(backbone)
        return TextBranch(net).eval(), info, tokenizer
