"""The plain way: one hooked forward pass per patched variant.

Used when the fast path cannot be exact (a padding or sliding-window mask, hooks the user left
attached); slower, but it runs the model exactly as ``run_with_hooks`` would.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from circuitscope.patching.plan import SWEEPS, hook_name, plan_sweep

__all__ = ["hooked_sweep", "patch_hook"]


def patch_hook(what: str, variant, src: torch.Tensor):
    """A forward hook writing the variant's slice of ``src`` into the activation."""
    h, p, s = variant.head, variant.pos, variant.src
    head_level = SWEEPS[what][1] == "head"

    def hook(x: torch.Tensor, hook=None) -> torch.Tensor:
        x = x.clone()
        if what == "pattern":  # [batch, head, q, k]
            if s is not None:
                x[:, h, p, s] = src[:, h, p, s]
            elif p is not None:
                x[:, h, p] = src[:, h, p]
            else:
                x[:, h] = src[:, h]
        elif head_level:  # [batch, pos, head, d_head]
            if p is None:
                x[:, :, h] = src[:, :, h]
            else:
                x[:, p, h] = src[:, p, h]
        elif p is None:  # [batch, pos, d_model]
            x[:] = src
        else:
            x[:, p] = src[:, p]
        return x

    return hook


def _value(out) -> float:
    return float(out.item() if isinstance(out, torch.Tensor) else out)


def hooked_sweep(model, tokens: torch.Tensor, src: dict, what: str, by: str, metric, progress: bool = True):
    """Every variant of the sweep as its own hooked forward pass: ``(values, axes, base_value)``."""
    names = [hook_name(what, layer) for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=names)
        base_value = _value(metric(logits))
        shape, axes, variants, _ = plan_sweep(what, by, model.cfg, src, {n: cache[n] for n in names}, tokens.shape[1])
        values = torch.full(shape, base_value)
        for v in tqdm(variants, desc=f"patching {what} by {by}", disable=not progress, leave=False):
            name = hook_name(what, v.layer)
            logits = model.run_with_hooks(tokens, fwd_hooks=[(name, patch_hook(what, v, src[name]))])
            values[v.key] = _value(metric(logits))
    return values, axes, base_value
