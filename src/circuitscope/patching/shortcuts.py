"""Exact shortcuts for patches that change a single position in their layer.

Patching one position of the residual stream at layer L changes that position's query, key and
value only; every other position's projections equal the base run's. So layer L's attention is
computed here from the one new row and the base run's cached queries, keys and values, instead of
re-projecting every row. Likewise a head-output patch at one position changes the MLP input of
that position only, so the block is finished for that row alone. The variants then join the
staged run with everything later computed as usual.
"""

from __future__ import annotations

from typing import Optional

import torch

from circuitscope.patching.base_run import BaseRun
from circuitscope.patching.entries import _head_attention
from circuitscope.patching.runner import Entry, FlopCounter

__all__ = ["settle"]


def _finish_row(base: BaseRun, e: Entry, start: int) -> Entry:
    """A mid-block entry whose only changed row is ``start``: finish the block for that row and
    continue as a single-row entry of the next layer."""
    block = base.model.blocks[e.layer]
    n, B = e.resid.shape[:2]
    post = block.finish(e.resid[:, :, 0].reshape(n * B, 1, -1), e.attn_out[:, :, 0].reshape(n * B, 1, -1))
    resid = base.entering(e.layer + 1)[None, :, start:].repeat(n, 1, 1, 1)  # [n, batch, rows, d_model]
    resid[:, :, 0] = post.view(n, B, -1)
    return Entry(e.layer + 1, "pre", resid, None, e.keys, row_only=True)


def _attend_row(base: BaseRun, e: Entry, start: int) -> Entry:
    """A pre-block entry whose only changed row is ``start``: compute the layer's attention from
    that row's new query/key/value and the base run's others."""
    L = e.layer
    block, attn = base.model.blocks[L], base.model.blocks[L].attn
    n, B, rows, d = e.resid.shape
    x = block.ln1(e.resid[:, :, 0])  # [n, batch, d_model]
    new = {c: torch.einsum("nbd,hde->nbhe", x, getattr(attn, f"W_{c.upper()}")) + getattr(attn, f"b_{c.upper()}")
           for c in "qkv"}  # [n, batch, head, d_head]
    acts = {}
    for c, lo in (("q", start), ("k", 0), ("v", 0)):
        cached = base.extra[f"blocks.{L}.attn.hook_{c}"][None, :, lo:]  # [1, batch, pos, head, d_head]
        t = cached.repeat(n, 1, 1, 1, 1)
        t[:, :, start - lo] = new[c]
        acts[c] = t.flatten(0, 1)
    q_rows = torch.arange(start, start + rows, device=x.device)
    z = _head_attention(attn, acts["q"], acts["k"], acts["v"], q_rows)  # [n*batch, rows, head, d_head]
    ao = z.reshape(n * B, rows, -1) @ attn.W_O.reshape(-1, d) + attn.b_O
    return Entry(L, "mid", e.resid, ao.view(n, B, rows, d), e.keys)


def settle(base: BaseRun, entries: list[Entry], start: int, counter: Optional[FlopCounter] = None) -> list[Entry]:
    """Apply the single-row shortcuts to every entry that qualifies."""
    cfg = base.model.cfg
    out = []
    for e in entries:
        if e.row_only and e.stage == "mid" and e.layer < cfg.n_layers:
            e = _finish_row(base, e, start)
            if counter is not None:
                counter.block(cfg, 0, 0, 0, e.resid.shape[0] * e.resid.shape[1])
        if e.row_only and e.stage == "pre" and e.layer < cfg.n_layers:
            e = _attend_row(base, e, start)
            if counter is not None:
                n, B, rows = e.resid.shape[:3]
                d, he = cfg.d_model, cfg.n_heads * cfg.d_head
                counter.flops += n * B * (3 * 2 * d * he + rows * (2 * d * he + 4 * (start + rows) * he))
        out.append(e)
    return out
