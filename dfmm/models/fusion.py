"""The fusion ensemble: learnable weighted averaging of branch logits, optional cross-modal attention.

Weighted averaging with weights on the simplex (a softmax over two learnable numbers) is the data card's
ensemble, as in AWARE-NET's learnable-weight fusion. The optional cross-modal attention lets each branch's
projected feature attend to the other's and adds a learned correction to the averaged logit; it starts at
zero (its output layer is zero-initialised) so it can only improve on the average it is trained from.
A missing modality falls back to the branch that is present.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossModalAttention(nn.Module):
    def __init__(self, visual_dim: int, text_dim: int, width: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.proj_v = nn.Linear(visual_dim, width)
        self.proj_t = nn.Linear(text_dim, width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.out = nn.Linear(2 * width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, fv: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([self.proj_v(fv), self.proj_t(ft)], dim=1)  # (N, 2, width)
        mixed, _ = self.attn(tokens, tokens, tokens)
        return self.out(mixed.flatten(1)).squeeze(1)


class FusionEnsemble(nn.Module):
    """Fuses per-branch logits (and features, with attention). Branch models live beside it, not inside."""

    def __init__(self, visual_dim: int, text_dim: int, attention: bool = False) -> None:
        super().__init__()
        self.weight_logits = nn.Parameter(torch.zeros(2))
        self.bias = nn.Parameter(torch.zeros(1))
        self.attention = CrossModalAttention(visual_dim, text_dim) if attention else None

    def weights(self) -> torch.Tensor:
        """(w_visual, w_text), on the simplex."""
        return torch.softmax(self.weight_logits, dim=0)

    def forward(
        self,
        visual_logit: torch.Tensor | None,
        text_logit: torch.Tensor | None,
        visual_feat: torch.Tensor | None = None,
        text_feat: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if visual_logit is None and text_logit is None:
            raise ValueError("fusion needs at least one modality")
        if visual_logit is None:
            return text_logit
        if text_logit is None:
            return visual_logit
        w = self.weights()
        fused = w[0] * visual_logit + w[1] * text_logit + self.bias
        if self.attention is not None and visual_feat is not None and text_feat is not None:
            fused = fused + self.attention(visual_feat, text_feat)
        return fused
