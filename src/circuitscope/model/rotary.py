"""Rotary positional embeddings (the GPT-NeoX / LLaMA "rotate half" layout).

The first ``rotary_dim`` dimensions of each query and key are rotated in pairs ``(i, i + r/2)`` by
an angle proportional to the token's absolute position, so the q.k dot product depends only on
relative position. Dimensions past ``rotary_dim`` (Pythia rotates a quarter) pass through.
"""

from __future__ import annotations

import torch
from torch import nn

from circuitscope.model.config import TransformerConfig


class Rotary(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.rotary_dim = int(cfg.rotary_dim)
        self.base = cfg.rotary_base

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [batch, pos] -> cos, sin [batch, pos, 1, rotary_dim] (broadcast over heads)."""
        # Frequencies are recomputed per call (rotary_dim / 2 numbers): no buffer to keep on a device.
        exponents = torch.arange(0, self.rotary_dim, 2, dtype=torch.float32, device=positions.device) / self.rotary_dim
        inv_freq = 1.0 / (self.base ** exponents)
        angles = positions.float()[..., None] * inv_freq  # [batch, pos, rotary_dim / 2]
        angles = torch.cat([angles, angles], dim=-1)[:, :, None, :]
        return angles.cos(), angles.sin()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x [batch, pos, head, d_head]
        r = self.rotary_dim
        x_rot, x_pass = x[..., :r], x[..., r:]
        half = r // 2
        rotated = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
        out = (x_rot.float() * cos + rotated.float() * sin).to(x.dtype)
        return torch.cat([out, x_pass], dim=-1) if x_pass.shape[-1] else out
