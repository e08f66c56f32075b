"""Token embedding, learned positional embedding and unembedding."""

from __future__ import annotations

import torch
from torch import nn

from circuitscope.model.config import TransformerConfig


class Embed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens [batch, pos] -> [batch, pos, d_model]
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        # positions [batch, pos] (absolute, padding-aware) -> [batch, pos, d_model]
        return self.W_pos[positions]


class Unembed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab, dtype=cfg.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [..., d_model] -> [..., d_vocab]
        return torch.addmm(self.b_U, x.reshape(-1, x.shape[-1]), self.W_U).view(*x.shape[:-1], -1)
