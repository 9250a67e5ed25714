"""The text branch: transformer encoder -> attention-masked mean pooling -> MLP head -> one logit.

Mean pooling over real tokens (padding masked out) is what sentence-transformers use for all-MiniLM-L6-v2 and
what the data card specifies for RoBERTa-base; the MLP head follows DeTeCtive-style detectors built on
encoder embeddings.
"""

from __future__ import annotations

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class TextBranch(nn.Module):
    def __init__(self, encoder: nn.Module, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None:  # BERT/RoBERTa's [CLS] pooler: mean pooling never uses it, and DDP (accelerate
            pooler.requires_grad_(False)  # launch) refuses trainable parameters that get no gradient
        self.feature_dim = int(encoder.config.hidden_size)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.feature_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        if inputs_embeds is not None:
            out = self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        else:
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One logit per text (N,): > 0 means AI-generated."""
        return self.logits(self.features(input_ids, attention_mask, inputs_embeds))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The MLP head on pooled features: one logit per row."""
        return self.head(features).squeeze(1)

    def scored(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pooled features) of a batch: what serving and the fusion read (cf. ``VisualBranch.scored``)."""
        features = self.features(input_ids, attention_mask)
        return self.logits(features), features

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()
