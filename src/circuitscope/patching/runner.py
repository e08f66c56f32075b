"""Run a chunk of patched variants together, each from the layer where it first differs.

Every variant in a chunk differs from the base run only at positions ``>= start``, so only those
rows are recomputed; the keys and values of earlier positions come from the base run (a frozen
prefix). Variants are stacked along the batch axis and *join* the stack at the layer where their
patch lives: before the attention (``"pre"``: a patched residual stream) or after it (``"mid"``:
a patched attention output). Layer ``l`` therefore runs on every variant patched at or before
``l`` and on nothing else. In the last layer only the rows the metric reads are computed, and the
unembedding is restricted to the tokens it reads.

The result is exact: the same operations as a full forward pass of each patched variant, minus
work whose result is known to equal the base run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from circuitscope.patching.base_run import BaseRun
from circuitscope.patching.readout import Readout

__all__ = ["Entry", "run_chunk", "FlopCounter"]


@dataclass
class Entry:
    """``n`` patched variants joining at ``layer`` (``n_layers`` = just before the final norm).

    ``resid`` [n, batch, rows, d_model] is the residual stream entering the block (rows
    ``start..width-1``); for ``stage="mid"`` ``attn_out`` [n, batch, rows, d_model] is the
    patched attention output added to it. ``keys`` are the output indices of the variants.
    ``row_only`` says that only the first row (position ``start``) differs from the base run.
    """

    layer: int
    stage: str  # "pre" | "mid"
    resid: torch.Tensor  # [n, batch, rows, d_model]
    attn_out: Optional[torch.Tensor]  # [n, batch, rows, d_model] or None
    keys: list
    row_only: bool = False


@dataclass
class FlopCounter:
    """Matrix-multiply floating-point operations actually performed (2 per multiply-add)."""

    flops: float = 0.0
    per_layer: dict = field(default_factory=dict)

    def block(self, cfg, rows_q: int, rows_kv: int, n_keys_per_query: int, mlp_rows: int) -> None:
        d, e, H = cfg.d_model, cfg.d_head, cfg.n_heads
        f = 2 * rows_q * d * H * e  # queries
        f += 2 * 2 * rows_kv * d * H * e  # keys, values
        f += 2 * 2 * rows_q * n_keys_per_query * H * e  # scores and pattern @ v
        f += 2 * rows_q * H * e * d  # W_O
        if not cfg.attn_only:
            f += 2 * mlp_rows * d * cfg.d_mlp * (3 if cfg.gated_mlp else 2)
        self.flops += f


# Rows per slice of the MLP: its hidden activations then stay small enough (~24 MB at d_mlp 3072)
# for the allocator to reuse memory, instead of mapping (and zeroing) fresh pages for every layer.
SLICE_ROWS = 2048


def _finish_in_slices(block, rp: torch.Tensor, ao: torch.Tensor) -> torch.Tensor:
    """``block.finish`` over [N, rows, d_model] inputs, a slice of variants at a time."""
    step = max(1, SLICE_ROWS // rp.shape[1])
    if rp.shape[0] <= step:
        return block.finish(rp, ao)
    out = torch.empty_like(rp)
    for i in range(0, rp.shape[0], step):
        out[i : i + step] = block.finish(rp[i : i + step], ao[i : i + step])
    return out


def _gather_rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x [N, rows, d], keep [N, R] -> [N, R, d]."""
    return x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))


def run_chunk(
    base: BaseRun,
    entries: list[Entry],
    start: int,
    readout: Optional[Readout],
    metric: Optional[Callable] = None,
    counter: Optional[FlopCounter] = None,
    adjust: Optional[Callable] = None,
    per_prompt: bool = False,
) -> tuple[list, torch.Tensor]:
    """Run the variants of ``entries`` (all differing from the base only at positions >= start).

    ``adjust(layer, resid_in, attn_out, keep)`` may rewrite a layer's attention output of the
    stacked variants (path patching uses it to give receiver heads their patched inputs).
    Returns ``(keys, values [n_variants])`` in matching order (``[n_variants, batch]`` with
    ``per_prompt``, which needs a readout that scores prompts one by one).
    """
    model, cfg = base.model, base.model.cfg
    n_layers, B, width = cfg.n_layers, base.batch, base.width
    rows = width - start
    device = base.tokens.device
    positions = torch.arange(start, width, device=device)[None]  # [1, rows]
    keep = None
    if readout is not None:
        keep = (readout.rows.to(device) - start).clamp(min=0)  # [batch, R]

    order: list = []
    carry: Optional[torch.Tensor] = None  # [n_active * batch, rows, d_model]
    first = min(e.layer for e in entries)
    for layer in range(first, n_layers):
        block = model.blocks[layer]
        last = layer == n_layers - 1
        joining = [e for e in entries if e.layer == layer and e.stage == "pre"]
        if joining:
            parts = ([carry] if carry is not None else []) + [e.resid.flatten(0, 1) for e in joining]
            carry = torch.cat(parts) if len(parts) > 1 else parts[0]
            for e in joining:
                order.extend(e.keys)
        rp_parts, ao_parts = [], []
        layer_keep = keep if last else None
        if carry is not None:
            n_active = carry.shape[0] // B
            kk = None if layer_keep is None else layer_keep.repeat(n_active, 1)
            rp, ao = block.attend(
                carry, positions.expand(carry.shape[0], -1), None, base.prefix(layer, start, n_active), kk
            )
            if adjust is not None:
                ao = adjust(layer, carry, ao, kk)
            rp_parts.append(rp)
            ao_parts.append(ao)
            if counter is not None:
                rq = carry.shape[0] * (rows if kk is None else kk.shape[1])
                counter.block(cfg, rq, carry.shape[0] * rows, (start + width) // 2 + 1, rq)
        for e in entries:
            if e.layer == layer and e.stage == "mid":
                rp_m, ao_m = e.resid.flatten(0, 1), e.attn_out.flatten(0, 1)
                if layer_keep is not None:
                    kk = layer_keep.repeat(e.resid.shape[0], 1)
                    rp_m, ao_m = _gather_rows(rp_m, kk), _gather_rows(ao_m, kk)
                rp_parts.append(rp_m)
                ao_parts.append(ao_m)
                order.extend(e.keys)
                if counter is not None and not cfg.attn_only:
                    counter.block(cfg, 0, 0, 0, rp_m.shape[0] * rp_m.shape[1])
        if rp_parts:
            rp = torch.cat(rp_parts) if len(rp_parts) > 1 else rp_parts[0]
            ao = torch.cat(ao_parts) if len(ao_parts) > 1 else ao_parts[0]
            carry = _finish_in_slices(block, rp, ao)

    final_parts = [carry] if carry is not None else []
    for e in entries:
        if e.layer == n_layers:
            x = e.resid.flatten(0, 1)
            if keep is not None:
                x = _gather_rows(x, keep.repeat(e.resid.shape[0], 1))
            final_parts.append(x)
            order.extend(e.keys)
    final = torch.cat(final_parts) if len(final_parts) > 1 else final_parts[0]
    n = len(order)
    if readout is not None:
        return order, _read(base, final.view(n, B, *final.shape[1:]), start, readout, counter, per_prompt)
    return order, _call_metric(base, final.view(n, B, rows, -1), start, metric)


def _read(base: BaseRun, final: torch.Tensor, start: int, readout: Readout, counter, per_prompt=False) -> torch.Tensor:
    """final [n, batch, R, d_model] at the read rows -> metric values [n] (or [n, batch])."""
    model = base.model
    rows = readout.rows.to(final.device)  # [batch, R]
    before = rows < start  # rows the patch cannot reach keep the base run's value
    if bool(before.any()):
        base_rows = base.final.gather(1, rows[..., None].expand(-1, -1, final.shape[-1]))  # [batch, R, d]
        final = torch.where(before[None, ..., None], base_rows[None], final)
    normed = model.ln_final(final)  # [n, batch, R, d_model]
    W_U, b_U = model.unembed.W_U, model.unembed.b_U
    if readout.tokens is None:
        logits = model.unembed(normed)  # [n, batch, R, d_vocab]
        if counter is not None:
            counter.flops += 2 * normed[..., 0].numel() * W_U.shape[0] * W_U.shape[1]
    else:
        tok = readout.tokens.to(final.device)  # [batch, R, k]
        cols = W_U.T[tok]  # [batch, R, k, d_model]
        logits = torch.einsum("nbrd,brkd->nbrk", normed, cols) + b_U[tok]  # [n, batch, R, k]
        if counter is not None:
            counter.flops += 2 * normed[..., 0].numel() * tok.shape[-1] * W_U.shape[0]
    return (readout.per_prompt if per_prompt else readout.reduce)(logits).float()


def _call_metric(base: BaseRun, final: torch.Tensor, start: int, metric: Callable) -> torch.Tensor:
    """A metric without a readout sees full logits [batch, pos, d_vocab], one variant at a time."""
    model = base.model
    out = []
    for x in final:  # [batch, rows, d_model]
        full = torch.cat([base.final[:, :start], x], dim=1) if start else x
        logits = model.unembed(model.ln_final(full))  # [batch, pos, d_vocab]
        value = metric(logits)
        out.append(float(value.item() if isinstance(value, torch.Tensor) else value))
    return torch.tensor(out)
