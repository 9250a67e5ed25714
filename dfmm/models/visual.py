"""The visual branch: EfficientNet -> average-pooled features -> L2 normalisation -> dropout -> linear head.

L2-normalised features with a linear head follow the CLIP-feature detector of Ojha et al. (UniversalFakeDetect,
CVPR 2023) and AWARE-NET's EfficientNet branch. A unit-norm feature times a linear layer can only produce logits
in [-|w|, |w|], so a learnable logit scale (temperature, initialised at 10 like a cosine classifier) lets the
head reach confident probabilities without inflating the weights; it is part of the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class VisualBranch(nn.Module):
    def __init__(self, backbone: nn.Module, dropout: float = 0.2, init_scale: float = 10.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(backbone.num_features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm pooled features (N, D)."""
        return F.normalize(self.backbone(images), dim=1)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> Any:
        """One logit per image (N,): > 0 means fake; with ``return_features`` also the unit-norm features (the
        training loop's metric-learning term reads them)."""
        features = self.features(images)
        logits = self.logits(self.dropout(features))
        return (logits, features) if return_features else logits

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The head on (unit-norm) features: one logit per row, scaled by the learnt logit scale."""
        return self.head(features).squeeze(1) * self.log_scale.exp()

    def scored(self, images: torch.Tensor, tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of a batch, as the branch is served: with ``tta`` the logits average those of the
        mirrored images (a second forward pass of the same batch size); the features are the unmirrored ones."""
        features = self.features(images)
        logits = self.logits(features)
        if tta:
            mirrored = torch.flip(images, dims=[3])
            logits = 0.5 * (logits + self.logits(self.features(mirrored)))
        return logits, features

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.head.parameters(), self.log_scale]

    def gradcam_layer(self) -> nn.Module:
        """The last convolutional block (timm ``conv_head`` + ``bn2``): its output has the most semantic maps."""
        return self.backbone.bn2 if hasattr(self.backbone, "bn2") else self.backbone.blocks[-1]
