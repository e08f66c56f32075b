"""Attribution patching: every activation-patching sweep from a handful of passes, approximately.

Patching an activation from ``base`` to ``source`` changes the metric by about
``(source_act - base_act) . d metric / d act`` (a first-order Taylor expansion at the base run),
so one forward and one backward pass on the base prompts, plus a cached run on the source
prompts, estimate *every* patch of a sweep at once (``method="linear"``).

When the metric is far from linear in the activation (saturated softmaxes, layer norms), the
integrated-gradients variant (``method="ig"``) replaces the gradient at the base run by its
average along a path from the base run to the source run. As in EAP-IG, the path interpolates the
*inputs*: the token (and position) embeddings are ``base + alpha (source - base)`` for ``steps``
midpoints ``alpha = (k + 1/2) / steps``; each step is one forward and one backward pass. For a
patch of the whole embedding (``resid_pre`` of layer 0, ``by="all"``) this is exact as ``steps``
grows (the completeness of integrated gradients). Elsewhere it is a different approximation, not
always a better one: the path moves every activation at once, so for activations whose own
clean-corrupted difference is small next to what the path changes (queries, keys, attention
patterns) the linear estimate can track the exact sweep more closely. Check with :func:`correlation`.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.patching.result import PatchResult, sweep_labels
from circuitscope.results import Result

__all__ = ["attribution_sweep", "correlation", "ATTRIBUTION_WHATS"]

_RESID = {"resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
          "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}
_HEAD = {"z": "attn.hook_z", "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v", "pattern": "attn.hook_pattern"}
ATTRIBUTION_WHATS = tuple(_RESID) + tuple(_HEAD)


def _hook_names(model, what: str) -> list[str]:
    if what not in ATTRIBUTION_WHATS:
        raise ValueError(f"unknown activation {what!r}; choose one of {list(ATTRIBUTION_WHATS)}")
    suffix = _RESID.get(what) or _HEAD[what]
    names = [f"blocks.{layer}.{suffix}" for layer in range(model.cfg.n_layers)]
    if names[0] not in model.hook_dict:
        raise ValueError(f"this model has no {names[0]} (attention-only or parallel attention/MLP?)")
    return names


def _axes(what: str, by: str) -> tuple[str, ...]:
    if by not in ("pos", "all"):
        raise ValueError(f"by must be 'pos' or 'all', got {by!r}")
    if what in _RESID:
        return ("layer", "pos") if by == "pos" else ("layer",)
    if what == "pattern":
        return ("layer", "head", "dest_pos") if by == "pos" else ("layer", "head")
    return ("layer", "pos", "head") if by == "pos" else ("layer", "head")


def _reduce(what: str, by: str, x: Float[Tensor, "batch ..."]) -> Float[Tensor, "..."]:
    """Sum the per-element effects of one layer into the entries of its sweep.

    x: resid-like [batch, pos, d_model]; z/q/k/v [batch, pos, head, d_head]; pattern [batch,
    head, dest, src]. Returns [pos] / [] (resid), [pos, head] / [head] (z/q/k/v), [head, dest] /
    [head] (pattern): the summed entries are exactly what one patch of the sweep replaces.
    """
    if what in _RESID:
        return x.sum((0, 2)) if by == "pos" else x.sum()
    if what == "pattern":
        return x.sum((0, 3)) if by == "pos" else x.sum((0, 2, 3))
    return x.sum((0, 3)) if by == "pos" else x.sum((0, 1, 3))


def _capture(names: list[str], store: dict[str, torch.Tensor]) -> list[tuple[str, Callable]]:
    """Forward hooks that keep each activation (inside the autograd graph) so we can take its grad."""
    def hook(act: torch.Tensor, hook) -> torch.Tensor:
        if not act.requires_grad:  # nothing upstream needs grad: make this activation a leaf
            act = act.detach().requires_grad_(True)
        store[hook.name] = act
        return act

    return [(n, hook) for n in names]


def _evaluate(model, tokens, metric, rows=None) -> tuple[Float[Tensor, "batch ... d_vocab"], Float[Tensor, ""]]:
    """``(logits, metric value)`` of one forward pass. Given ``rows`` ``[batch]`` (a metric known to
    accept logits at one position per prompt) or a metric declaring such a readout (a task's logit
    difference), only those rows are unembedded: the unembedding is a third of a small model's work."""
    if rows is not None:
        logits = model(tokens, logit_positions=rows)  # [batch, d_vocab]
        return logits, metric(logits)
    readout = getattr(metric, "readout", None)
    rows = getattr(readout, "rows", None)
    if isinstance(rows, torch.Tensor) and rows.ndim == 2 and rows.shape[1] == 1 and readout.tokens is not None:
        # only the answer tokens' columns of the unembedding: it is the largest matrix and the
        # metric reads two of its columns
        resid = model(tokens, stop_at_layer=model.cfg.n_layers)  # [batch, pos, d_model]
        at = resid[torch.arange(resid.shape[0], device=resid.device), rows[:, 0].to(resid.device)]
        tok = readout.tokens[:, 0].to(resid.device)  # [batch, k]
        sel = torch.einsum("bd,bkd->bk", model.ln_final(at), model.unembed.W_U.T[tok]) + model.unembed.b_U[tok]
        return sel, readout.reduce(sel[None, :, None])[0]
    if isinstance(rows, torch.Tensor) and rows.ndim == 2 and rows.shape[1] == 1:
        logits = model(tokens, logit_positions=rows[:, 0])  # [batch, d_vocab]
        return logits, readout.reduce(logits[None, :, None])[0]
    logits = model(tokens)  # [batch, pos, d_vocab]
    return logits, metric(logits)


def _grads(model, tokens, names, metric, rows=None, embed_hooks=()):
    """One forward + backward on ``tokens``: (logits, metric value, activations, d metric / d activation)."""
    acts: dict[str, torch.Tensor] = {}
    with torch.enable_grad(), model.hooks(fwd_hooks=[*embed_hooks, *_capture(names, acts)]):
        logits, value = _evaluate(model, tokens, metric, rows)
    if value.ndim != 0:
        raise ValueError(f"the metric must return a scalar (average over prompts), got shape {tuple(value.shape)}")
    grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    grads = {n: torch.zeros_like(acts[n]) if g is None else g for n, g in zip(names, grads)}
    return logits.detach(), value.detach(), {n: a.detach() for n, a in acts.items()}, grads


def _ig_grads(model, base_tokens, names, metric, rows, source, embeds, steps):
    """Gradients averaged over ``steps`` runs whose embeddings interpolate base -> source.

    Returns (base logits, metric at the base run, base activations, mean gradient) like :func:`_grads`.
    """
    base: dict[str, torch.Tensor] = {}
    save = lambda act, hook: base.__setitem__(hook.name, act.detach())
    with torch.no_grad(), model.hooks(fwd_hooks=[(n, save) for n in names + embeds]):
        base_logits, base_value = _evaluate(model, base_tokens, metric, rows)
    total = {n: torch.zeros_like(base[n]) for n in names}
    for k in range(steps):
        alpha = (k + 0.5) / steps

        def mix(act: torch.Tensor, hook, alpha=alpha) -> torch.Tensor:
            return base[hook.name] + alpha * (source[hook.name] - base[hook.name])

        grads = _grads(model, base_tokens, names, metric, rows, [(n, mix) for n in embeds])[3]
        for n in names:
            total[n] += grads[n] / steps
    return base_logits, base_value, base, total


def attribution_sweep(model, task, what: str, by: str = "pos", method: str = "linear", steps: int = 8,
                      direction: str = "denoise", metric: Optional[Callable] = None) -> PatchResult:
    """Estimate ``sweep(model, task, what, by, direction)`` with gradients (see the module docstring).

    ``.values`` has the exact sweep's shape and index order (TransformerLens's): ``[layer, pos]``
    (``[layer]`` for ``by="all"``) for resid_pre/resid_mid/resid_post/attn_out/mlp_out,
    ``[layer, pos, head]`` / ``[layer, head]`` for z/q/k/v, ``[layer, head, dest_pos]`` /
    ``[layer, head]`` for pattern. Each entry is ``metric(base) + estimated change``. ``denoise``
    patches clean activations into the corrupted run; ``noise`` the reverse. ``metric`` defaults
    to ``task.patching_metric(model)``, calibrated on the two runs made here (it is affine in the
    task's logit difference, so the gradient of the raw one is rescaled). Passes: linear = 1
    cached source forward + 1 forward and backward; ig = 2 cached forwards + ``steps`` forwards
    and backwards.
    """
    if method not in ("linear", "ig"):
        raise ValueError(f"method must be 'linear' or 'ig', got {method!r}")
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    if method == "ig" and int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not task.equal_lengths:
        raise ValueError("attribution patching needs clean and corrupted prompts of equal lengths "
                         "(position p must mean the same token slot in both runs)")
    names, axes = _hook_names(model, what), _axes(what, by)
    base_tokens, source_tokens = ((task.corrupted_tokens, task.clean_tokens) if direction == "denoise"
                                  else (task.clean_tokens, task.corrupted_tokens))
    embeds = [n for n in ("hook_embed", "hook_pos_embed") if n in model.hook_dict and method == "ig"]
    default, rows, raw = metric is None, None, metric
    if default:  # differentiate the raw task metric; the logit difference reads one row per prompt
        from circuitscope.tasks.metrics import NormalizedMetric, task_logit_diff, task_span_log_prob

        rows = None if task.span is not None else task.answer_pos
        raw = (lambda l: task_span_log_prob(l, task)) if rows is None else (lambda l: task_logit_diff(l, task))
    with torch.no_grad():
        source_logits, source = model.run_with_cache(
            source_tokens, names_filter=names + embeds, return_type="logits" if default else None,
            **({"logit_positions": rows} if rows is not None else {}))
    if method == "linear":
        base_logits, base_value, base, grads = _grads(model, base_tokens, names, raw, rows)
    else:
        base_logits, base_value, base, grads = _ig_grads(model, base_tokens, names, raw, rows, source, embeds, int(steps))
    if default:
        clean, corrupted = (source_logits, base_logits) if direction == "denoise" else (base_logits, source_logits)
        metric = NormalizedMetric.from_task(task, clean, corrupted)
        scale = metric.clean_baseline - metric.corrupted_baseline
        base_value = metric(base_logits)
        grads = {n: g / scale for n, g in grads.items()}
    per_layer = [_reduce(what, by, (source[n] - base[n]) * grads[n]) for n in names]
    values = base_value + torch.stack(per_layer)  # [layer, ...]
    meta = {"what": what, "by": by, "direction": direction, "method": method, "metric": repr(metric),
            "base_value": float(base_value)}
    if method == "ig":
        meta["steps"] = int(steps)
    for name in ("clean_baseline", "corrupted_baseline", "convention"):
        if hasattr(metric, name):
            meta[name] = getattr(metric, name)
    title = f"attribution patching ({method}): {'denoising' if direction == 'denoise' else 'noising'} {what}"
    return PatchResult(values.detach(), axes, sweep_labels(model, task.clean_tokens, axes), title, meta)


def correlation(approx, exact) -> dict[str, float]:
    """How well an attribution sweep matches the exact one: Pearson r, Spearman rank r, the
    largest absolute error and the number of entries (values flattened; shapes must agree)."""
    a, e = (torch.as_tensor(x.values if isinstance(x, Result) else x).detach().flatten().double()
            for x in (approx, exact))
    if a.shape != e.shape:
        raise ValueError(f"the two sweeps differ in size: {tuple(a.shape)} vs {tuple(e.shape)}")

    def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = x - x.mean(), y - y.mean()
        denom = (x.norm() * y.norm()).item()
        return float("nan") if denom == 0 else (x @ y).item() / denom

    def ranks(x: torch.Tensor) -> torch.Tensor:
        return x.argsort().argsort().double()

    return {"pearson": pearson(a, e), "spearman": pearson(ranks(a), ranks(e)),
            "max_abs_error": (a - e).abs().max().item(), "n": a.numel()}
