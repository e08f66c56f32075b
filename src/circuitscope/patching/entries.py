"""Turn a chunk's variants into the patched tensors that join the staged run.

Block-level patches (residual stream, attention or MLP output) replace rows of the residual
stream or of the attention output directly. A head-level patch changes one head's output ``z``
only, so the layer's attention output changes by ``(z_new - z_base) @ W_O[head]``: the patched
head is recomputed (queries, keys, values or pattern replaced as asked) and nothing else in that
attention layer is. Every head of a layer is recomputed in one batched call; each variant keeps
its own head's difference.
"""

from __future__ import annotations

import torch

from circuitscope.patching.base_run import BaseRun
from circuitscope.patching.plan import SWEEPS, Chunk, hook_name
from circuitscope.patching.runner import Entry

__all__ = ["build_entries", "extra_hooks"]


def extra_hooks(what: str, n_layers: int) -> list[str]:
    """Base-run activations the entries of a ``what`` sweep read, besides the standard ones."""
    # q/k/v of every layer serve the single-row shortcut (shortcuts.py)
    names = [f"blocks.{layer}.attn.hook_{n}" for layer in range(n_layers) for n in "qkv"]
    if SWEEPS[what][1] == "block":
        return names + [hook_name(what, layer) for layer in range(n_layers)]
    per_layer = ["z", "pattern"] if what == "pattern" else ["z"]
    return names + [f"blocks.{layer}.attn.hook_{n}" for layer in range(n_layers) for n in per_layer]


def _replace_rows(x: torch.Tensor, src: torch.Tensor, start: int, pos) -> torch.Tensor:
    """Rows ``start..`` of ``x [batch, pos, ...]`` with row ``pos`` (or every row) from ``src``."""
    out = x[:, start:].clone()
    if pos is None:
        out.copy_(src[:, start : x.shape[1]])
    else:
        out[:, pos - start] = src[:, pos]
    return out


def build_entries(what: str, base: BaseRun, source: dict, chunk: Chunk) -> list[Entry]:
    if SWEEPS[what][1] == "head":
        return _head_entries(what, base, source, chunk)
    p, out = chunk.start, []
    for v in chunk.variants:
        L, src = v.layer, source[hook_name(what, v.layer)]
        if what in ("resid_pre", "resid_post"):
            stage_layer = L if what == "resid_pre" else L + 1
            resid = base.resid_pre[L] if what == "resid_pre" else base.resid_post[L]
            out.append(Entry(stage_layer, "pre", _replace_rows(resid, src, p, v.pos)[None], None, [v.key],
                             row_only=v.pos is not None))
        elif what == "mlp_out":
            # resid_post = (resid_pre + attn_out) + mlp_out, the block's own order of additions
            patched_post = (base.resid_pre[L] + base.attn_out[L]) + src
            out.append(Entry(L + 1, "pre", _replace_rows(base.resid_post[L], patched_post, p, v.pos)[None], None,
                             [v.key], row_only=v.pos is not None))
        else:
            if what == "resid_mid":
                src = src - base.resid_pre[L]  # resid_mid = resid_pre + attn_out
            ao = _replace_rows(base.attn_out[L], src, p, v.pos)
            out.append(Entry(L, "mid", base.resid_pre[L][None, :, p:], ao[None], [v.key], row_only=v.pos is not None))
    return out


def _head_attention(attn, q, k, v, q_rows: torch.Tensor) -> torch.Tensor:
    """One attention layer's heads from raw (unrotated) q [batch, nq, head, d_head] at absolute
    positions ``q_rows [nq]`` and k, v [batch, keys, head, d_head] -> z [batch, nq, head, d_head]."""
    n_keys = k.shape[1]
    key_rows = torch.arange(n_keys, device=k.device)
    if attn.rotary is not None:
        q = attn.rotary(q, *attn.rotary.cos_sin(q_rows[None]))
        k = attn.rotary(k, *attn.rotary.cos_sin(key_rows[None]))
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / attn.cfg.attn_scale  # [batch, head, nq, keys]
    scores = scores.masked_fill(~(key_rows[None, :] <= q_rows[:, None]), float("-inf"))
    pattern = scores.float().softmax(dim=-1).to(q.dtype)
    return torch.einsum("bhqk,bkhe->bqhe", pattern, v)


def _patched_z(what: str, attn, acts: dict, src: torch.Tensor, p: int, by_pos: bool, width: int):
    """z of every head with the ``what`` activation replaced (row p, or rows >= p), at query
    rows ``q_rows``: returns (q_rows [nq], z_new [batch, nq, head, d_head])."""
    if what == "z":
        rows = torch.arange(p, p + 1 if by_pos else width, device=src.device)
        return rows, src[:, rows]
    if what == "pattern":
        rows = torch.arange(p, p + 1 if by_pos else width, device=src.device)
        return rows, torch.einsum("bhqk,bkhe->bqhe", src[:, :, rows], acts["v"])
    q, k, v = acts["q"], acts["k"], acts["v"]
    sl = slice(p, p + 1) if by_pos else slice(p, width)
    if what == "q":
        rows = torch.arange(sl.start, sl.stop, device=src.device)
        return rows, _head_attention(attn, src[:, sl], k, v, rows)
    patched = (k if what == "k" else v).clone()
    patched[:, sl] = src[:, sl]
    k, v = (patched, v) if what == "k" else (k, patched)
    rows = torch.arange(p, width, device=src.device)  # a new key or value reaches every later query
    return rows, _head_attention(attn, q[:, p:], k, v, rows)


def _head_entries(what: str, base: BaseRun, source: dict, chunk: Chunk) -> list[Entry]:
    p, width = chunk.start, base.width
    by_layer: dict[int, list] = {}
    for v in chunk.variants:
        by_layer.setdefault(v.layer, []).append(v)
    out = []
    for L, variants in by_layer.items():
        attn = base.model.blocks[L].attn
        acts = {n: base.extra[f"blocks.{L}.attn.hook_{n}"] for n in ("q", "k", "v", "z", "pattern")
                if f"blocks.{L}.attn.hook_{n}" in base.extra}
        src = source[hook_name(what, L)]
        ao = base.attn_out[L][None, :, p:].repeat(len(variants), 1, 1, 1)  # [n, batch, rows, d_model]
        heads = torch.tensor([v.head for v in variants], device=ao.device)
        if variants[0].src is not None:  # one pattern entry (dest p, src s) per variant
            srcs = torch.tensor([v.src for v in variants], device=ao.device)
            pat = acts["pattern"][:, heads, p].movedim(1, 0).clone()  # [n, batch, keys]
            idx = torch.arange(len(variants), device=ao.device)
            pat[idx, :, srcs] = src[:, heads, p, srcs].T
            z_new = torch.einsum("nbk,bkne->nbe", pat, acts["v"][:, :, heads])[:, :, None]  # [n, batch, 1, d_head]
            rows = torch.tensor([p], device=ao.device)
        else:
            rows, z_all = _patched_z(what, attn, acts, src, p, variants[0].pos is not None, width)
            z_new = z_all[:, :, heads].movedim(2, 0)  # [n, batch, nq, d_head]
        z_old = acts["z"][:, rows][:, :, heads].movedim(2, 0)  # [n, batch, nq, d_head]
        delta = torch.einsum("nbqe,ned->nbqd", z_new - z_old, attn.W_O[heads])  # [n, batch, nq, d_model]
        ao[:, :, rows - p] += delta
        resid = base.resid_pre[L][None, :, p:].expand(len(variants), -1, -1, -1)
        # a query, output or pattern-row patch at one position changes only that row of the layer
        row_only = variants[0].pos is not None and what in ("z", "q", "pattern")
        out.append(Entry(L, "mid", resid, ao, [v.key for v in variants], row_only=row_only))
    return out
