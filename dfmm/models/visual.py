"""The visual branch: EfficientNet -> pooled features -> L2 normalisation -> dropout -> linear head.

L2-normalised features with a linear head follow the CLIP-feature detector of Ojha et al. (UniversalFakeDetect,
CVPR 2023) and AWARE-NET's EfficientNet branch. A unit-norm feature times a linear layer can only produce logits
in [-|w|, |w|], so a learnable logit scale (temperature, initialised at 10 like a cosine classifier) lets the
head reach confident probabilities without inflating the weights; it is part of the checkpoint.

``mid_level`` (off at -1) also average-pools one earlier feature level of the backbone (timm ``feature_info``
index: 2 is stride 8, 3 is stride 16) and joins it to the last one, each part unit-norm, the whole unit-norm:
low-level texture statistics next to the semantic features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class VisualBranch(nn.Module):
    def __init__(
        self, backbone: nn.Module, dropout: float = 0.2, init_scale: float = 10.0, mid_level: int = -1
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.mid_level = mid_level
        mid_dim = backbone.feature_info[mid_level]["num_chs"] if mid_level >= 0 else 0
        self.feature_dim = int(backbone.num_features) + mid_dim
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm pooled features (N, D)."""
        if self.mid_level < 0:
            return F.normalize(self.backbone(images), dim=1)
        last, (mid,) = self.backbone.forward_intermediates(images, indices=[self.mid_level])
        last = F.normalize(self.backbone.forward_head(last, pre_logits=True), dim=1)
        mid = F.normalize(mid.mean((2, 3)), dim=1)
        return torch.cat([last, mid], dim=1) / math.sqrt(2.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """One logit per image (N,): > 0 means fake."""
        return self.logits(self.dropout(self.features(images)))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The head on (unit-norm) features: one logit per row, scaled by the learnt logit scale."""
        return self.head(features).squeeze(1) * self.log_scale.exp()

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.head.parameters(), self.log_scale]

    def gradcam_layer(self) -> nn.Module:
        """The last convolutional block (timm ``conv_head`` + ``bn2``): its output has the most semantic maps."""
        return self.backbone.bn2 if hasattr(self.backbone, "bn2") else self.backbone.blocks[-1]
