"""The study's named choices, declared once: the config's checks, the CLI's ``choices`` and the API read these.

A ``Literal`` type documents the choice where it is used; the tuple beside it is what code checks against.
"""

from __future__ import annotations

from typing import Literal, get_args

Aggregation = Literal["mean", "max", "median", "vote", "confidence"]  # per-frame P(fake) -> one clip score
FaceCrop = Literal["auto", "always", "never"]  # photos: crop to the largest face when it helps / always / never

Branch = Literal["visual", "text"]  # the two trained branches (dfmm train BRANCH, the trainer's specs)
Runtime = Literal["torch", "openvino", "onnxruntime"]  # what runs the branches: PyTorch, or an export folder's graphs

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
BRANCH_NAMES: tuple[str, ...] = get_args(Branch)
RUNTIMES: tuple[str, ...] = get_args(Runtime)
FACE_CROPS: tuple[str, ...] = get_args(FaceCrop)

# What a checkpoint may describe, checked when params load (dfmm.config) and again when a checkpoint loads
# (dfmm.models.metadata), so that training never writes a model that serving refuses: the project's backbones
# (package:efficientnet-lite0 builds tf_efficientnet_lite0, hub:efficientnet_b0 efficientnet_b0, optionally with a
# timm weight tag "name.tag"; all-MiniLM-L6-v2 is a bert, roberta-base a roberta) and the input sizes they serve.
VISUAL_ARCHITECTURES: tuple[str, ...] = ("tf_efficientnet_lite0", "efficientnet_b0")
TEXT_MODEL_TYPES: tuple[str, ...] = ("bert", "roberta")
IMAGE_SIZES = (32, 1024)  # visual.image_size, pixels (inclusive)
MAX_LENGTHS = (8, 4096)  # text.max_length, tokens (inclusive)


def visual_architecture(timm_name: str) -> str:
    """The architecture of a timm model name: ``efficientnet_b0.ra_in1k`` -> ``efficientnet_b0``."""
    return timm_name.split(".", 1)[0]
