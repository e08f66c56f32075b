"""Path patching the literal way: two hooked forward passes per sender head.

Used when the fast path cannot be exact (a padding or sliding-window mask, or hooks the user has
attached); it follows the IOI paper's three steps to the letter.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from circuitscope.patching.fallback import _value

__all__ = ["hooked_path_patch"]


def hooked_path_patch(model, clean, corrupted, heads, receiver_input, idx, include_mlps, metric, progress=True):
    """``(values [layer, head], base_value)``; ``idx [batch, n]`` are the receiver positions."""
    cfg = model.cfg
    z = lambda name: name.endswith("attn.hook_z")  # noqa: E731
    mlp = lambda name: name.endswith("hook_mlp_out")  # noqa: E731
    with torch.no_grad():
        logits, clean_cache = model.run_with_cache(clean, names_filter=lambda n: z(n) or mlp(n))
        _, new_cache = model.run_with_cache(corrupted, names_filter=z)
        base_value = _value(metric(logits))
        values = torch.full((cfg.n_layers, cfg.n_heads), base_value)
        recv_layers = sorted({layer for layer, _ in heads})
        stop = recv_layers[-1] if heads else cfg.n_layers
        rows = torch.arange(clean.shape[0])[:, None]
        final = f"blocks.{cfg.n_layers - 1}.hook_resid_post"
        recv_names = [f"blocks.{layer}.attn.hook_{receiver_input}" for layer in recv_layers]
        for layer, head in tqdm([(l, h) for l in range(stop) for h in range(cfg.n_heads)],
                                desc="path patching", disable=not progress, leave=False):

            def freeze(x, hook, layer=layer, head=head):
                out = clean_cache[hook.name].clone()
                if hook.layer() == layer:
                    out[:, :, head] = new_cache[hook.name][:, :, head]
                return out

            hooks = [(n, freeze) for n in clean_cache.keys() if z(n)]
            if not include_mlps:
                hooks += [(n, lambda x, hook: clean_cache[hook.name]) for n in clean_cache.keys() if mlp(n)]
            wanted = recv_names if heads else [final]
            with model.hooks(fwd_hooks=hooks):
                _, step2 = model.run_with_cache(clean, names_filter=wanted, return_type=None)
            if not heads:
                values[layer, head] = _value(metric(model.unembed(model.ln_final(step2[final]))))
                continue

            def patch(x, hook):
                x = x.clone()
                hs = [h for l, h in heads if l == hook.layer()]
                for h in hs:
                    x[rows, idx, h] = step2[hook.name][rows, idx, h]
                return x

            logits = model.run_with_hooks(clean, fwd_hooks=[(n, patch) for n in recv_names])
            values[layer, head] = _value(metric(logits))
    return values, base_value
