"""Multi-head causal self-attention, one hook point per intermediate.

Each head h reads the residual stream through its own ``W_Q[h], W_K[h], W_V[h]``
(``[d_model, d_head]``), attends causally, and writes back through ``W_O[h]``
(``[d_head, d_model]``); the layer's output is the sum over heads plus ``b_O``.

When no hook reads the attention scores or pattern, the scores are never materialised and the
fused ``scaled_dot_product_attention`` kernel runs instead: identical maths, less memory.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from circuitscope.hooks import HookPoint
from circuitscope.model.config import TransformerConfig
from circuitscope.model.kv_cache import LayerKV
from circuitscope.model.rotary import Rotary


def project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [batch, pos, d_model] (shared) or [batch, pos, head, d_model] (per head) -> [batch, pos, head, d_head]."""
    if x.dim() == 3:
        return torch.einsum("bpd,hde->bphe", x, W) + b
    return torch.einsum("bphd,hde->bphe", x, W) + b


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(H, d, e, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(H, d, e, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(H, d, e, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(H, e, d, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(H, e, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(H, e, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(H, e, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d, dtype=cfg.dtype))
        self.rotary = Rotary(cfg) if cfg.positional_embedding_type == "rotary" else None

        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        if self.rotary is not None:
            self.hook_rot_q = HookPoint()  # [batch, pos, head, d_head]
            self.hook_rot_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_result = HookPoint(opt_in=True)  # [batch, pos, head, d_model]

    def forward(
        self,
        q_input: torch.Tensor,
        k_input: torch.Tensor,
        v_input: torch.Tensor,
        positions: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        past: Optional[LayerKV] = None,
        query_positions: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Inputs are the normalised residual, ``[batch, pos, d_model]`` or ``[batch, pos, head, d_model]``.

        ``positions`` [batch, pos] are the keys' absolute positions (for rotary); ``mask``
        [batch, 1, q, k] is True where a query may attend (None: plain causal); ``past`` holds keys
        and values of earlier positions, prepended to this call's. ``query_positions``
        [batch, q] (with ``q_input`` holding only those rows) computes queries for a subset of
        positions while keys and values cover them all.
        """
        q = self.hook_q(project(q_input, self.W_Q, self.b_Q))  # [batch, pos, head, d_head]
        k = self.hook_k(project(k_input, self.W_K, self.b_K))  # [batch, pos, head, d_head]
        v = self.hook_v(project(v_input, self.W_V, self.b_V))  # [batch, pos, head, d_head]
        if self.rotary is not None:
            cos, sin = self.rotary.cos_sin(positions)
            if query_positions is not None:
                q = self.hook_rot_q(self.rotary(q, *self.rotary.cos_sin(query_positions)))
            else:
                q = self.hook_rot_q(self.rotary(q, cos, sin))
            k = self.hook_rot_k(self.rotary(k, cos, sin))
        if past is not None:
            k, v = past.extend(k, v)  # [batch, past + pos, head, d_head]
        if mask is None and k.shape[1] != q.shape[1]:
            # Queries are the last positions of the key range: causal with an offset.
            nq, nk = q.shape[1], k.shape[1]
            mask = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)

        if self.hook_attn_scores.active or self.hook_pattern.active:
            z = self._explicit_attention(q, k, v, mask)
        else:
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                attn_mask=mask,
                is_causal=mask is None,
                scale=1.0 / self.cfg.attn_scale,
            ).transpose(1, 2)
        z = self.hook_z(z)  # [batch, pos, head, d_head]

        if self.hook_result.active or self.cfg.use_attn_result:
            result = self.hook_result(torch.einsum("bphe,hed->bphd", z, self.W_O))  # [batch, pos, head, d_model]
            return result.sum(dim=2) + self.b_O
        b, p, H, e = z.shape
        return z.reshape(b, p, H * e) @ self.W_O.reshape(H * e, -1) + self.b_O  # [batch, pos, d_model]

    def _explicit_attention(self, q, k, v, mask) -> torch.Tensor:
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / self.cfg.attn_scale  # [batch, head, q, k]
        if mask is None:
            mask = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool, device=q.device).tril()
        scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
        pattern = self.hook_pattern(scores.float().softmax(dim=-1).to(q.dtype))  # [batch, head, q, k]
        return torch.einsum("bhqk,bkhe->bqhe", pattern, v)
