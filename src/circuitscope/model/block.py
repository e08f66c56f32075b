"""One transformer block: attention then MLP, each reading a normalised copy of the residual
stream and adding its output back (or both reading ``resid_pre`` in parallel, as in Pythia)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from circuitscope.hooks import HookPoint
from circuitscope.model.attention import Attention
from circuitscope.model.config import TransformerConfig
from circuitscope.model.kv_cache import LayerKV
from circuitscope.model.mlp import MLP
from circuitscope.model.norms import make_norm


class TransformerBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg)
        if not cfg.attn_only:
            self.ln2 = make_norm(cfg)
            self.mlp = MLP(cfg)

        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_in = HookPoint(opt_in=True)  # [batch, pos, d_model]
        self.hook_q_input = HookPoint(opt_in=True)  # [batch, pos, head, d_model]
        self.hook_k_input = HookPoint(opt_in=True)  # [batch, pos, head, d_model]
        self.hook_v_input = HookPoint(opt_in=True)  # [batch, pos, head, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        if not cfg.attn_only:
            if not cfg.parallel_attn_mlp:
                self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.hook_mlp_in = HookPoint(opt_in=True)  # [batch, pos, d_model]
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def _split_inputs(self) -> bool:
        return (
            self.cfg.use_split_qkv_input
            or self.hook_q_input.active
            or self.hook_k_input.active
            or self.hook_v_input.active
        )

    def attention_inputs(self, resid_pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised q/k/v inputs; per head ([batch, pos, head, d_model]) when split inputs are on,
        which lets path patching give each receiving head its own query/key/value input.

        ``hook_attn_in`` [batch, pos, d_model] comes first and feeds all three, so a hook on it
        acts whether or not the inputs are split (as in TransformerLens, where the split inputs
        are copies of attn_in). Each active split hook gets its own copy to edit in place.
        """
        attn_in = self.hook_attn_in(resid_pre)  # [batch, pos, d_model]
        if self._split_inputs():
            per_head = attn_in[:, :, None, :].expand(-1, -1, self.cfg.n_heads, -1)  # [batch, pos, head, d_model]
            q_in, k_in, v_in = (
                self.ln1(hp(per_head.clone() if hp.active else per_head))
                for hp in (self.hook_q_input, self.hook_k_input, self.hook_v_input)
            )
            return q_in, k_in, v_in
        x = self.ln1(attn_in)
        return x, x, x

    def forward(
        self,
        resid_pre: torch.Tensor,
        positions: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        past: Optional[LayerKV] = None,
        keep: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """resid_pre [batch, pos, d_model] -> resid_post [batch, pos, d_model].

        ``keep`` [batch, n_keep] (indices into this call's positions) computes the block's output
        only at those positions: keys and values still come from every position, but queries, the
        MLP and the residual update run on the kept rows only (the output is [batch, n_keep,
        d_model]). A run that needs logits at the answer position alone uses this in its last
        layers.
        """
        resid_pre, attn_out = self.attend(self.hook_resid_pre(resid_pre), positions, mask, past, keep)
        return self.finish(resid_pre, attn_out)

    def attend(
        self,
        resid_pre: torch.Tensor,
        positions: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        past: Optional[LayerKV] = None,
        keep: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """First half of the block: ``(resid_pre, attn_out)``, both [batch, pos (or n_keep), d_model].

        ``resid_pre`` is returned restricted to the ``keep`` rows. The patching engine calls the
        two halves separately so that a patch inside the attention layer can enter at ``finish``.
        """
        q_in, k_in, v_in = self.attention_inputs(resid_pre)
        query_positions = None
        if keep is not None:
            rows = keep.to(resid_pre.device)
            q_in = q_in[torch.arange(q_in.shape[0], device=rows.device)[:, None], rows]
            resid_pre = resid_pre.gather(1, rows[..., None].expand(-1, -1, resid_pre.shape[-1]))
            query_positions = positions.gather(1, rows)
            if mask is None:  # causal: query row i sees keys up to its own position
                n_keys = k_in.shape[1] + (past.k.shape[1] if past is not None and past.k is not None else 0)
                offset = n_keys - k_in.shape[1]
                mask = (torch.arange(n_keys, device=rows.device)[None, None, :] <= (rows + offset)[..., None])[:, None]
            else:
                mask = mask.expand(rows.shape[0], -1, -1, -1).gather(2, rows[:, None, :, None].expand(-1, 1, -1, mask.shape[-1]))
        attn_out = self.attn(q_in, k_in, v_in, positions, mask, past, query_positions)
        return resid_pre, self.hook_attn_out(attn_out)  # [batch, pos, d_model]

    def finish(self, resid_pre: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """Second half: add the attention output (and the MLP's) to the residual stream.
        [batch, pos, d_model] x 2 -> resid_post [batch, pos, d_model]."""
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        if self.cfg.parallel_attn_mlp:
            mlp_out = self.hook_mlp_out(self.mlp(self.ln2(self.hook_mlp_in(resid_pre))))
            return self.hook_resid_post(resid_pre + attn_out + mlp_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)  # [batch, pos, d_model]
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(self.hook_mlp_in(resid_mid))))  # [batch, pos, d_model]
        return self.hook_resid_post(resid_mid + mlp_out)  # [batch, pos, d_model]
