"""Path patching: the effect of one head's output reaching chosen receivers *directly*.

The IOI paper's three steps, per sender head: (1) run the clean and corrupted prompts; (2) run
the clean prompts with the sender's output taken from the corrupted run and every other head
frozen at its clean output, so the change reaches later layers only through the residual stream
(and the MLPs, recomputed unless ``include_mlps=False``); record the receivers' inputs;
(3) rerun the clean prompts with just those receiver inputs patched in, and measure.

Done literally that is two full forward passes per sender. Here step 2 needs no attention at
all (every head but the sender is frozen) and only the receiver rows (MLPs act per position), and
step 3 restarts at the first receiver layer from the positions that changed, with all senders
stacked into one batch.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from circuitscope.patching.base_run import BaseRun, fast_path_problem
from circuitscope.patching.engine import DEFAULT_BUDGET_MB
from circuitscope.patching.entries import _head_attention
from circuitscope.patching.plan import variant_bytes
from circuitscope.patching.readout import readout_of
from circuitscope.patching.result import PatchResult, sweep_labels
from circuitscope.patching.runner import Entry, _call_metric, _read, run_chunk
from circuitscope.patching.sweep import base_and_source

__all__ = ["path_patch"]

Receivers = Union[str, Sequence[tuple[int, int]]]


def _receiver_rows(task, positions, width: int, batch: int) -> torch.Tensor:
    """Receiver positions per prompt: ``[batch, n_rows]`` absolute indices."""
    if positions is None:
        return torch.arange(width, device=task.device).expand(batch, -1)
    if isinstance(positions, str):
        if positions not in task.positions:
            raise KeyError(f"unknown position label {positions!r}; the task has {sorted(task.positions)}")
        positions = task.positions[positions]
    pos = torch.as_tensor(positions, device=task.device, dtype=torch.long)
    if pos.ndim == 0:
        pos = pos.expand(batch)
    if tuple(pos.shape) != (batch,):
        raise ValueError(f"positions must be a label, an int or one position per prompt [{batch}], got {tuple(pos.shape)}")
    full = task.clean_tokens.shape[1]
    pos = torch.where(pos < 0, pos + full, pos)  # -1 = the last position of the batch, as in TransformerLens
    real = task.answer_pos.to(pos.device)  # each prompt's last real token
    outside = ((pos < 0) | (pos > real)).nonzero().flatten().tolist()
    if outside:
        i = outside[0]
        raise ValueError(
            f"receiver position {int(pos[i])} of prompt {i} is outside its {int(real[i]) + 1} real tokens "
            f"(the batch is right-padded to {full}); use positions='end' for each prompt's last token"
        )
    return pos[:, None]


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [batch, pos, ...] at idx [batch, n] -> [batch, n, ...]."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]


def _check(model, receivers, receiver_input):
    if isinstance(receivers, str):
        if receivers != "resid" or receiver_input != "resid":
            raise ValueError("receivers is 'resid' (the final residual stream) or a list of (layer, head)")
        return []
    if receiver_input not in ("q", "k", "v"):
        raise ValueError(f"receiver_input for receiver heads must be 'q', 'k' or 'v', got {receiver_input!r}")
    heads = [(int(layer), int(head)) for layer, head in receivers]
    for layer, head in heads:
        if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
            raise ValueError(f"receiver head ({layer}, {head}) is outside the model's "
                             f"{model.cfg.n_layers} layers x {model.cfg.n_heads} heads")
    if not heads:
        raise ValueError("give at least one receiver head, or receivers='resid'")
    return heads


def path_patch(
    model,
    task,
    receivers: Receivers = "resid",
    receiver_input: str = "resid",
    positions=None,
    include_mlps: bool = True,
    metric: Optional[Callable] = None,
    memory_budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = True,
    per_prompt: bool = False,
    ci: bool = True,
) -> PatchResult:
    """The metric for every sender head ``[layer, head]`` (senders that cannot reach the
    receivers keep the unpatched value: 0 under the default IOI convention, clean 0 / corrupted -1).

    ``receivers`` is ``"resid"`` (the direct path to the logits) or ``[(layer, head), ...]`` whose
    ``receiver_input`` (``"q"``, ``"k"`` or ``"v"``) is patched at ``positions`` (None = every
    position, a ``task.positions`` label such as ``"end"``, or one position per prompt).
    ``per_prompt=True`` keeps every sender's value prompt by prompt (``.per_prompt``
    ``[prompt, layer, head]``) and, with ``ci``, a bootstrap 95% interval for each sender.
    """
    heads = _check(model, receivers, receiver_input)
    if heads == [] and positions is not None:
        raise ValueError("positions choose where receiver heads are patched; the final residual "
                         "stream is read where the metric reads")
    clean, corrupted = base_and_source(task, "denoise")[::-1]
    metric = task.patching_metric(model, convention="ioi") if metric is None else metric
    problem = fast_path_problem(model, clean)
    if per_prompt and (problem is not None or readout_of(metric) is None or readout_of(metric).per_prompt is None):
        raise ValueError(
            "per-prompt path patching needs a metric that scores prompts one by one (a Task's "
            f"patching_metric) on the fast path{'; here: ' + problem if problem else ''}"
        )
    if problem is not None:
        from circuitscope.patching.path_hooked import hooked_path_patch

        base_vals = None
        values, base_value = hooked_path_patch(model, clean, corrupted, heads, receiver_input,
                                               _receiver_rows(task, positions, clean.shape[1], len(task)),
                                               include_mlps, metric, progress)
    else:
        values, base_value, base_vals = _fast_path_patch(model, task, clean, corrupted, heads, receiver_input,
                                                         positions, include_mlps, metric, memory_budget_mb, progress,
                                                         per_prompt)
    prompts = None
    if per_prompt:
        prompts = values.movedim(-1, 0)  # [prompt, layer, head]
        values = prompts.mean(0)
    meta = {"receivers": "resid" if not heads else [list(h) for h in heads], "receiver_input": receiver_input,
            "positions": positions if isinstance(positions, (str, type(None))) else "per prompt",
            "include_mlps": include_mlps, "metric": repr(metric), "base_value": base_value, "method": "path"}
    for name in ("clean_baseline", "corrupted_baseline", "convention"):
        if hasattr(metric, name):
            meta[name] = getattr(metric, name)
    axes = ("layer", "head")
    title = f"path patching into {'the logits' if not heads else receiver_input + ' of ' + ', '.join(f'L{a}H{b}' for a, b in heads)}"
    result = PatchResult(values, axes, sweep_labels(model, clean, axes), title, meta, per_prompt=prompts)
    if per_prompt and ci:
        from circuitscope.analysis.bootstrap import with_ci

        result = with_ci(result)
    result.base_per_prompt = base_vals if per_prompt else None  # [prompt] the unpatched clean run
    return result


def _frozen_finish(block, cfg, r, ao, mlp_clean):
    """The block's second half with the MLP output frozen at its clean value."""
    if cfg.attn_only:
        return r + ao
    if cfg.parallel_attn_mlp:
        return r + ao + mlp_clean
    return (r + ao) + mlp_clean


def _fast_path_patch(model, task, clean, corrupted, heads, receiver_input, positions, include_mlps, metric,
                     budget_mb, progress, per_prompt=False):
    cfg = model.cfg
    n_layers, H, B = cfg.n_layers, cfg.n_heads, clean.shape[0]
    readout = readout_of(metric)
    width = clean.shape[1]
    if readout is not None:
        width = readout.last_row + 1
        if heads and positions is not None:
            width = max(width, int(_receiver_rows(task, positions, width, B).max()) + 1)
    clean, corrupted = clean[:, :width], corrupted[:, :width]
    recv_layers = sorted({layer for layer, _ in heads})
    stop = n_layers if not heads else recv_layers[-1]
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    extra = z_names + [f"blocks.{layer}.hook_mlp_out" for layer in range(n_layers) if not cfg.attn_only]
    extra += [f"blocks.{layer}.attn.hook_{x}" for layer in recv_layers for x in "qkv"]
    with torch.no_grad():
        base = BaseRun.run(model, clean, width, sorted(set(extra)))
        _, new = model.run_with_cache(corrupted, names_filter=z_names, return_type=None)
        whole = Entry(n_layers, "pre", base.final[None], None, ["base"])
        base_vals = run_chunk(base, [whole], 0, readout, metric, per_prompt=per_prompt)[1][0]  # [] or [batch]
        base_value = float(base_vals.mean())
        values = torch.empty(n_layers, H, *base_vals.shape)  # [layer, head(, batch)]
        values[...] = base_vals

        if heads:
            idx = _receiver_rows(task, positions, width, B)
        elif readout is not None:
            idx = readout.rows.to(clean.device)
        else:
            idx = torch.arange(width, device=clean.device).expand(B, -1)

        # ---- step 2: senders' effect on the receiver rows, through the residual stream only
        senders, carry, recorded = [], None, {}
        for layer in range(stop + 1 if heads else stop):
            if layer in recv_layers and carry is not None:
                recorded[layer] = (len(senders), carry)
            if layer == stop:
                break
            block = model.blocks[layer]
            dz = _gather(new[z_names[layer]] - base.extra[z_names[layer]], idx)  # [batch, n_rows, head, d_head]
            joining = [h for h in range(H) if bool(dz[:, :, h].any())]
            ao = _gather(base.attn_out[layer], idx)  # [batch, n_rows, d_model]
            if joining:
                delta = torch.einsum("bnhe,hed->hbnd", dz[:, :, joining], block.attn.W_O[joining])
                fresh = _gather(base.resid_pre[layer], idx)[None].expand(len(joining), -1, -1, -1)
                carry = fresh if carry is None else torch.cat([carry, fresh])
                senders += [(layer, h) for h in joining]
            if carry is None:
                continue
            ao_all = ao[None].expand(carry.shape[0], -1, -1, -1).clone()
            if joining:
                ao_all[-len(joining):] += delta
            flat_r, flat_ao = carry.flatten(0, 1), ao_all.flatten(0, 1)
            if include_mlps:
                out = block.finish(flat_r, flat_ao)
            else:
                mlp = None if cfg.attn_only else _gather(base.extra[f"blocks.{layer}.hook_mlp_out"], idx).repeat(carry.shape[0], 1, 1)
                out = _frozen_finish(block, cfg, flat_r, flat_ao, mlp)
            carry = out.view(carry.shape)
        if not senders:
            return values, base_value, base_vals

        if not heads:  # the receiver is the final residual stream: read the metric directly
            if readout is not None:
                vals = _read(base, carry, 0, readout, None, per_prompt)
            else:
                vals = _call_metric(base, carry, 0, metric)
            for (layer, h), v in zip(senders, vals):
                values[layer, h] = v
            return values, base_value, base_vals

        # ---- step 3: rerun from the first receiver layer with the receivers' inputs patched
        recv_vals = _receiver_values(model, base, heads, receiver_input, recorded, senders, idx)
        n = len(senders)
        budget = int(budget_mb * 2**20)
        size = max(1, budget // max(1, variant_bytes(cfg, B, width, 0)))
        for lo in tqdm(range(0, n, size), desc="path patching", disable=not progress, leave=False):
            hi = min(n, lo + size)
            chunk_vals = {L: v[lo:hi] for L, v in recv_vals.items()}
            start = int(idx.min())
            first = recv_layers[0]
            resid = base.resid_pre[first][None, :, start:].expand(hi - lo, -1, -1, -1)
            entry = Entry(first, "pre", resid, None, senders[lo:hi])
            adjust = _receiver_adjuster(model, base, heads, receiver_input, chunk_vals, idx, start, hi - lo)
            keys, vals = run_chunk(base, [entry], start, readout, metric, adjust=adjust, per_prompt=per_prompt)
            for (layer, h), v in zip(keys, vals):
                values[layer, h] = v
    return values, base_value, base_vals


def _receiver_values(model, base, heads, receiver_input, recorded, senders, idx):
    """Step 2's q/k/v of each receiver head at the receiver rows, per sender:
    layer -> [n_senders, batch, n_rows, n_receivers_here, d_head] (raw, before rotary)."""
    out = {}
    for layer in sorted({l for l, _ in heads}):
        hs = [h for l, h in heads if l == layer]
        clean = _gather(base.extra[f"blocks.{layer}.attn.hook_{receiver_input}"], idx)[:, :, hs]
        vals = clean[None].expand(len(senders), -1, -1, -1, -1).clone()
        if layer in recorded:
            n_reached, r = recorded[layer]  # senders joined before this layer, their residual rows
            attn = model.blocks[layer].attn
            W = getattr(attn, f"W_{receiver_input.upper()}")[hs]
            b = getattr(attn, f"b_{receiver_input.upper()}")[hs]
            x = model.blocks[layer].ln1(r)  # [n_reached, batch, n_rows, d_model]
            vals[:n_reached] = torch.einsum("nbrd,hde->nbrhe", x, W) + b
        out[layer] = vals
    return out


def _receiver_adjuster(model, base, heads, receiver_input, vals, idx, start, n):
    """An ``adjust`` callback for the runner: recompute the receiver heads of a layer with their
    patched input and add the change of their output to the layer's attention output."""
    B = idx.shape[0]
    rows_abs = idx.repeat(n, 1)  # [n * batch, n_rows]
    N = n * B
    ar = torch.arange(N, device=idx.device)[:, None]

    def adjust(layer, resid_in, ao, keep):
        if layer not in vals:
            return ao
        attn = model.blocks[layer].attn
        hs = [h for l, h in heads if l == layer]
        x = model.blocks[layer].ln1(resid_in)  # [N, rows, d_model]
        q, k, v = (torch.einsum("nrd,hde->nrhe", x, getattr(attn, f"W_{c}")[hs]) + getattr(attn, f"b_{c}")[hs]
                   for c in "QKV")
        if start:
            k = torch.cat([base.extra[f"blocks.{layer}.attn.hook_k"][:, :start, hs].repeat(n, 1, 1, 1), k], 1)
            v = torch.cat([base.extra[f"blocks.{layer}.attn.hook_v"][:, :start, hs].repeat(n, 1, 1, 1), v], 1)
        new = {"q": q.clone(), "k": k.clone(), "v": v.clone()}
        target = new[receiver_input]
        offset = start if receiver_input == "q" else 0
        target[ar, rows_abs - offset] = vals[layer].reshape(N, idx.shape[1], len(hs), -1)
        q_rows = torch.arange(start, start + q.shape[1], device=q.device)
        z_old = _head_attention(attn, q, k, v, q_rows)  # [N, rows, n_receivers, d_head]
        z_new = _head_attention(attn, new["q"], new["k"], new["v"], q_rows)
        dz = z_new - z_old
        if keep is not None:
            dz = dz[ar, keep]
        return ao + torch.einsum("nrhe,hed->nrd", dz, attn.W_O[hs])

    return adjust
