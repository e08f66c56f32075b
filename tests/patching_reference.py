"""Naive reference implementations for ``circuitscope.patching``: one forward per patch.

Everything here is written to be obviously right rather than fast, so that the patching engine
(which reuses cached prefixes, batches variants, computes only the answer rows, ...) can be
checked against it entry by entry:

* activation patching with TransformerLens 2.x's semantics (``generic_activation_patch`` in
  ``transformer_lens/patching.py``): for every index tuple, whose first entry is the layer, run
  ``model.run_with_hooks(base_tokens)`` with one hook that copies the source activation (from
  ``source_cache``) into the base run at that index, and record ``metric(logits)``. Denoising is
  ``(corrupted tokens, clean cache)``; noising is ``(clean tokens, corrupted cache)``. Index order
  and output shapes are TL's, including its pattern sweeps, which put ``head`` before the
  positions: ``pattern_by_pos`` is ``[layer, head, dest_pos]`` and ``pattern_dest_src`` is
  ``[layer, head, dest_pos, src_pos]``.
* path patching as in the IOI paper / ARENA notebooks (three steps, one sender head at a time).
* zero / mean / resample ablation of heads (``hook_z``) and MLPs (``hook_mlp_out``).

The metric may return a scalar or a small tensor (e.g. two metrics stacked); the result then
has the metric's shape as trailing dimensions. Results are float64 on the CPU.
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence

import torch

__all__ = [
    "act_name", "generic_patch", "layer_pos_sweep",
    "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
    "head_all_pos", "head_by_pos", "pattern_all_pos", "pattern_by_pos", "pattern_dest_src",
    "block_every", "head_all_pos_every", "head_by_pos_every",
    "cache_acts", "path_patch", "ablation_hooks", "run_ablated",
]

_NAMES = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "z": "blocks.{}.attn.hook_z",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
}


def act_name(what: str, layer: int) -> str:
    return _NAMES[what].format(layer)


def _value(metric: Callable, logits: torch.Tensor) -> torch.Tensor:
    out = metric(logits)
    return torch.as_tensor(out).detach().to(device="cpu", dtype=torch.float64)


# --------------------------------------------------------------------------- patch setters
# Each gets (base activation, index, source activation) and returns the patched activation.
# ``index`` starts with the layer. Vector activations are [batch, pos, (head,) ...]; patterns are
# [batch, head, dest_pos, src_pos].

def set_layer_pos(act, index, src):
    _, pos = index
    act = act.clone()
    act[:, pos] = src[:, pos]
    return act


def set_layer_head(act, index, src):
    _, head = index
    act = act.clone()
    act[:, :, head] = src[:, :, head]
    return act


def set_layer_pos_head(act, index, src):
    _, pos, head = index
    act = act.clone()
    act[:, pos, head] = src[:, pos, head]
    return act


def set_pattern_head(act, index, src):
    _, head = index
    act = act.clone()
    act[:, head] = src[:, head]
    return act


def set_pattern_head_dest(act, index, src):
    _, head, dest = index
    act = act.clone()
    act[:, head, dest] = src[:, head, dest]
    return act


def set_pattern_head_dest_src(act, index, src):
    _, head, dest, source_pos = index
    act = act.clone()
    act[:, head, dest, source_pos] = src[:, head, dest, source_pos]
    return act


# --------------------------------------------------------------------------- activation patching

def generic_patch(model, base_tokens, source_cache, metric, what, setter, ranges, indices=None):
    """The metric after each single patch. ``ranges`` is the size of each index axis (layer
    first); ``indices`` (optional) restricts the run to some index tuples, leaving NaN elsewhere."""
    if indices is None:
        indices = list(itertools.product(*[range(n) for n in ranges]))
    results = {}
    for index in indices:
        index = tuple(int(i) for i in index)
        name = act_name(what, index[0])
        source = source_cache[name]

        def hook(act, hook, index=index, source=source):
            return setter(act, index, source)

        with torch.no_grad():
            logits = model.run_with_hooks(base_tokens, fwd_hooks=[(name, hook)])
        results[index] = _value(metric, logits)
    trailing = next(iter(results.values())).shape
    out = torch.full((*ranges, *trailing), float("nan"), dtype=torch.float64)
    for index, value in results.items():
        out[index] = value
    return out


def _n_pos(tokens):
    return tokens.shape[-1]


def layer_pos_sweep(what, model, base_tokens, source_cache, metric, indices=None):
    """[layer, pos] for a residual-stream-shaped activation."""
    ranges = (model.cfg.n_layers, _n_pos(base_tokens))
    return generic_patch(model, base_tokens, source_cache, metric, what, set_layer_pos, ranges, indices)


def resid_pre(model, base_tokens, source_cache, metric, indices=None):
    return layer_pos_sweep("resid_pre", model, base_tokens, source_cache, metric, indices)


def resid_mid(model, base_tokens, source_cache, metric, indices=None):
    return layer_pos_sweep("resid_mid", model, base_tokens, source_cache, metric, indices)


def resid_post(model, base_tokens, source_cache, metric, indices=None):
    return layer_pos_sweep("resid_post", model, base_tokens, source_cache, metric, indices)


def attn_out(model, base_tokens, source_cache, metric, indices=None):
    return layer_pos_sweep("attn_out", model, base_tokens, source_cache, metric, indices)


def mlp_out(model, base_tokens, source_cache, metric, indices=None):
    return layer_pos_sweep("mlp_out", model, base_tokens, source_cache, metric, indices)


def head_all_pos(what, model, base_tokens, source_cache, metric, indices=None):
    """[layer, head]: one head's ``what`` (z/q/k/v) at every position."""
    ranges = (model.cfg.n_layers, model.cfg.n_heads)
    return generic_patch(model, base_tokens, source_cache, metric, what, set_layer_head, ranges, indices)


def head_by_pos(what, model, base_tokens, source_cache, metric, indices=None):
    """[layer, pos, head]: one head's ``what`` (z/q/k/v) at one position."""
    ranges = (model.cfg.n_layers, _n_pos(base_tokens), model.cfg.n_heads)
    return generic_patch(model, base_tokens, source_cache, metric, what, set_layer_pos_head, ranges, indices)


def pattern_all_pos(model, base_tokens, source_cache, metric, indices=None):
    """[layer, head]: one head's whole attention pattern."""
    ranges = (model.cfg.n_layers, model.cfg.n_heads)
    return generic_patch(model, base_tokens, source_cache, metric, "pattern", set_pattern_head, ranges, indices)


def pattern_by_pos(model, base_tokens, source_cache, metric, indices=None):
    """[layer, head, dest_pos] (TransformerLens's order): one head's pattern row at one query."""
    n = _n_pos(base_tokens)
    ranges = (model.cfg.n_layers, model.cfg.n_heads, n)
    return generic_patch(model, base_tokens, source_cache, metric, "pattern", set_pattern_head_dest, ranges, indices)


def pattern_dest_src(model, base_tokens, source_cache, metric, indices=None):
    """[layer, head, dest_pos, src_pos] (TransformerLens's order): one entry of one pattern."""
    n = _n_pos(base_tokens)
    ranges = (model.cfg.n_layers, model.cfg.n_heads, n, n)
    return generic_patch(model, base_tokens, source_cache, metric, "pattern", set_pattern_head_dest_src, ranges, indices)


def block_every(model, base_tokens, source_cache, metric):
    """[3, layer, pos]: resid_pre, attn_out, mlp_out (TL's get_act_patch_block_every)."""
    return torch.stack([
        resid_pre(model, base_tokens, source_cache, metric),
        attn_out(model, base_tokens, source_cache, metric),
        mlp_out(model, base_tokens, source_cache, metric),
    ])


def head_all_pos_every(model, base_tokens, source_cache, metric):
    """[5, layer, head]: z, q, k, v, pattern."""
    parts = [head_all_pos(w, model, base_tokens, source_cache, metric) for w in ("z", "q", "k", "v")]
    parts.append(pattern_all_pos(model, base_tokens, source_cache, metric))
    return torch.stack(parts)


def head_by_pos_every(model, base_tokens, source_cache, metric):
    """[5, layer, pos, head]: z, q, k, v, and the pattern by query position moved to [layer, pos, head]."""
    parts = [head_by_pos(w, model, base_tokens, source_cache, metric) for w in ("z", "q", "k", "v")]
    parts.append(pattern_by_pos(model, base_tokens, source_cache, metric).transpose(1, 2))
    return torch.stack(parts)


# --------------------------------------------------------------------------- path patching

def cache_acts(model, tokens, names, fwd_hooks=()):
    """Run ``tokens`` (with optional extra hooks) and return {name: activation} for ``names``."""
    store = {}

    def save(act, hook):
        store[hook.name] = act.detach().clone()

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks) + [(n, save) for n in names])
    return store


def _layer_of(hook_name: str) -> int:
    return int(hook_name.split(".")[1])


def path_patch(
    model,
    clean_tokens,
    corrupted_tokens,
    metric,
    receivers="resid",
    receiver_input="resid",
    positions: Optional[torch.Tensor] = None,
    include_mlps: bool = True,
):
    """The IOI paper's path patching, one sender head at a time: ``[layer, head]``.

    Step 1: cache every head's z (and every MLP's output) on the clean run and every head's z on
    the corrupted run. Step 2: run the clean tokens with the sender's z taken from the corrupted
    run and every other head's z frozen at its clean value; MLPs are recomputed
    (``include_mlps=True``) or frozen at their clean output too. For ``receivers="resid"`` the
    metric is read from this run's logits (the direct path through the final residual stream).
    Otherwise step 2 records the receivers' ``receiver_input`` (q/k/v), and step 3 reruns the
    clean tokens with only those receiver heads' inputs replaced by the recorded ones, at every
    position or at ``positions`` (``[batch]``: one position per prompt), everything else
    recomputed. Every sender goes through the three steps, including those in or after the last
    receiver layer, which cannot reach a q/k/v receiver: they give the clean run's metric (0 under
    the IOI convention).
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    has_mlps = not model.cfg.attn_only
    z_names = [act_name("z", layer) for layer in range(n_layers)]
    mlp_names = [act_name("mlp_out", layer) for layer in range(n_layers)] if has_mlps else []

    # step 1
    clean = cache_acts(model, clean_tokens, z_names + mlp_names)
    corrupted = cache_acts(model, corrupted_tokens, z_names)

    if receivers == "resid":
        if receiver_input not in ("resid", None):
            raise ValueError("receivers='resid' goes with receiver_input='resid'")
        senders = list(itertools.product(range(n_layers), range(n_heads)))
    else:
        if receiver_input not in ("q", "k", "v"):
            raise ValueError(f"receiver_input must be q, k or v for head receivers, got {receiver_input!r}")
        senders = list(itertools.product(range(n_layers), range(n_heads)))
        receiver_names = sorted({act_name(receiver_input, layer) for layer, _ in receivers})

    out = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    for sender_layer, sender_head in senders:
        # step 2: sender from the corrupted run, every other head frozen at its clean value
        def freeze_or_patch_z(z, hook, sender_layer=sender_layer, sender_head=sender_head):
            new = clean[hook.name].clone()
            if _layer_of(hook.name) == sender_layer:
                new[:, :, sender_head] = corrupted[hook.name][:, :, sender_head]
            return new

        def freeze_mlp(mlp_out, hook):
            return clean[hook.name].clone()

        hooks = [(name, freeze_or_patch_z) for name in z_names]
        if not include_mlps:
            hooks += [(name, freeze_mlp) for name in mlp_names]

        if receivers == "resid":
            with torch.no_grad():
                logits = model.run_with_hooks(clean_tokens, fwd_hooks=hooks)
            out[sender_layer, sender_head] = _value(metric, logits)
            continue

        patched_inputs = cache_acts(model, clean_tokens, receiver_names, fwd_hooks=hooks)

        # step 3: the clean run with only the receivers' inputs patched
        def patch_receivers(act, hook):
            layer = _layer_of(hook.name)
            new = act.clone()
            for r_layer, r_head in receivers:
                if r_layer != layer:
                    continue
                if positions is None:
                    new[:, :, r_head] = patched_inputs[hook.name][:, :, r_head]
                else:
                    for b in range(new.shape[0]):
                        p = int(positions[b])
                        new[b, p, r_head] = patched_inputs[hook.name][b, p, r_head]
            return new

        with torch.no_grad():
            logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(n, patch_receivers) for n in receiver_names])
        out[sender_layer, sender_head] = _value(metric, logits)
    return out


# --------------------------------------------------------------------------- ablation

def _position_rows(positions, batch, n_pos):
    """[(b, p), ...]: every position (None), the listed positions of every prompt (a list), or
    one position per prompt (a [batch] tensor)."""
    if positions is None:
        return [(b, p) for b in range(batch) for p in range(n_pos)]
    if isinstance(positions, torch.Tensor) and positions.ndim == 1 and positions.shape[0] == batch:
        return [(b, int(positions[b])) for b in range(batch)]
    return [(b, int(p)) for b in range(batch) for p in positions]


def ablation_hooks(
    model,
    tokens,
    heads: Sequence[tuple[int, int]] = (),
    mlps: Sequence[int] = (),
    method: str = "zero",
    reference: Optional[torch.Tensor] = None,
    positions=None,
    per_position: bool = False,
    resample_index: Optional[Sequence[int]] = None,
):
    """Hand-written hooks ablating heads (their ``hook_z``) and MLPs (their ``hook_mlp_out``).

    zero: the activation becomes 0. mean: the mean of the activation over the reference batch
    (over its prompts and positions, or over its prompts only with ``per_position``; a
    per-position mean needs a reference as wide as ``tokens``). resample: prompt b gets reference
    prompt ``resample_index[b]``'s activation (the same position).
    """
    batch, n_pos = tokens.shape
    rows = _position_rows(positions, batch, n_pos)
    names = sorted({act_name("z", layer) for layer, _ in heads} | {act_name("mlp_out", layer) for layer in mlps})
    ref = cache_acts(model, reference, names) if method in ("mean", "resample") else {}

    def replacement(name, b, p, head):
        """The value written at prompt b, position p (and head, for z)."""
        if method == "zero":
            return 0.0
        act = ref[name]  # [ref_batch, pos, (head,) ...]
        if head is not None:
            act = act[:, :, head]
        if method == "mean":
            return act[:, p].mean(0) if per_position else act.mean((0, 1))
        if method == "resample":
            return act[resample_index[b], p]
        raise ValueError(method)

    def hook(act, hook):
        layer = _layer_of(hook.name)
        new = act.clone()
        if hook.name.endswith("hook_z"):
            for h in [h for layer_, h in heads if layer_ == layer]:
                for b, p in rows:
                    new[b, p, h] = replacement(hook.name, b, p, h)
        else:
            for b, p in rows:
                new[b, p] = replacement(hook.name, b, p, None)
        return new

    return [(name, hook) for name in names]


def run_ablated(model, tokens, **kwargs):
    """Logits of ``tokens`` with :func:`ablation_hooks` attached."""
    hooks = ablation_hooks(model, tokens, **kwargs)
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=hooks)
