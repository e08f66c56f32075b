"""Execute a sweep plan: base run, chunks under a memory budget, progress, checkpoints.

``run_sweep`` is the single entry point behind every activation-patching sweep, the
TransformerLens-compatible functions and :func:`circuitscope.patching.sweep` included. It returns
plain values; labelling is the caller's business.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from tqdm.auto import tqdm

from circuitscope.patching.base_run import BaseRun, fast_path_problem
from circuitscope.patching.checkpoint import SweepCheckpoint
from circuitscope.patching.entries import build_entries, extra_hooks
from circuitscope.patching.plan import check_patchable, hook_name, make_chunks, plan_sweep
from circuitscope.patching.readout import readout_of
from circuitscope.patching.runner import Entry, FlopCounter, run_chunk
from circuitscope.patching.shortcuts import settle

logger = logging.getLogger(__name__)

__all__ = ["run_sweep", "SweepStats", "DEFAULT_BUDGET_MB"]

DEFAULT_BUDGET_MB = 1024


@dataclass
class SweepStats:
    """What a sweep did: variants run and skipped (no-ops), chunks, matmul FLOPs, seconds."""

    variants: int = 0
    skipped: int = 0
    chunks: int = 0
    resumed_chunks: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    fast_path: bool = True
    fallback_reason: Optional[str] = None
    base_per_prompt: Optional[torch.Tensor] = None  # [prompt] the unpatched run's metric (per_prompt sweeps)


def _source_dict(source, names: list[str], shape: tuple[int, int], width: int) -> dict:
    out = {}
    for name in names:
        try:
            act = source[name]
        except KeyError as e:
            raise KeyError(
                f"the source cache has no activation {name!r}, which this sweep patches in; "
                f"run run_with_cache without a names_filter, or include {name!r}"
            ) from e
        pos_dim = 2 if name.endswith("hook_pattern") else 1
        if act.shape[0] != shape[0] or act.shape[pos_dim] != shape[1]:
            raise ValueError(
                f"clean and corrupted runs must have equal shapes: the tokens are {list(shape)} "
                f"[batch, pos] but the cached {name} is {list(act.shape)}; build both runs from "
                "prompts padded to the same width (a Task does this)"
            )
        act = act[:, :, :width, :width] if pos_dim == 2 else act[:, :width]
        out[name] = act
    return out


def _check_tokens(tokens: torch.Tensor) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"patching needs the base tokens as a [batch, pos] tensor, got {shape}")
    return tokens


def run_sweep(
    model,
    base_tokens: torch.Tensor,
    source,
    what: str,
    by: str,
    metric: Callable,
    memory_budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = True,
    checkpoint: Union[str, None] = None,
    per_prompt: bool = False,
) -> tuple[torch.Tensor, tuple[str, ...], float, SweepStats]:
    """Patch ``source`` activations into the run on ``base_tokens``, one variant per entry.

    ``source`` maps hook names to activations of a run on other tokens of the same shape (an
    ``ActivationCache``). Returns ``(values, axes, base_value, stats)``; with ``per_prompt`` the
    values are ``[prompt, *shape]`` (the metric prompt by prompt; needs a task metric).
    """
    t0 = time.perf_counter()
    tokens = _check_tokens(base_tokens).to(model.embed.W_E.device)
    check_patchable(model, what)
    cfg = model.cfg
    readout = readout_of(metric)
    width = tokens.shape[1]
    problem = fast_path_problem(model, tokens)
    if readout is not None and problem is None:
        if readout.rows.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"the metric reads {readout.rows.shape[0]} prompts but the tokens hold {tokens.shape[0]}"
            )
        width = min(width, readout.last_row + 1)
    names = [hook_name(what, layer) for layer in range(cfg.n_layers)]
    src = _source_dict(source, names, tuple(tokens.shape), width)
    stats = SweepStats()
    if per_prompt and (readout is None or readout.per_prompt is None or problem is not None):
        raise ValueError(
            "per-prompt patching values need a metric that scores prompts one by one (a Task's "
            f"patching_metric) on the fast path{'; here: ' + problem if problem else ''}"
        )
    if problem is not None:
        from circuitscope.patching.fallback import hooked_sweep

        logger.info("patching one forward pass per variant: %s", problem)
        values, axes, base_value = hooked_sweep(model, tokens, src, what, by, metric, progress)
        stats.fast_path, stats.fallback_reason, stats.seconds = False, problem, time.perf_counter() - t0
        return values, axes, base_value, stats

    with torch.no_grad():
        base = BaseRun.run(model, tokens, width, extra_hooks(what, cfg.n_layers))
        shape, axes, variants, noop = plan_sweep(what, by, cfg, src, base.extra, width)
        whole = Entry(cfg.n_layers, "pre", base.final[None], None, ["base"])
        base_vals = run_chunk(base, [whole], 0, readout, metric, per_prompt=per_prompt)[1][0]
        base_value = float(base_vals.mean())
        if per_prompt:
            stats.base_per_prompt = base_vals
        fill = base_vals if per_prompt else base_value
        values = torch.empty(*shape, *base_vals.shape)
        values[...] = fill
        budget = _chunk_budget(memory_budget_mb, base, src)
        chunks = make_chunks(variants, cfg, tokens.shape[0], width, budget)
        kind = f"{what}/per_prompt" if per_prompt else what
        store = SweepCheckpoint.open(checkpoint, model, tokens, src, kind, by, metric) if checkpoint else None
        counter = FlopCounter()
        stats.variants, stats.skipped, stats.chunks = len(variants), len(noop), len(chunks)
        bar = tqdm(chunks, desc=f"patching {what} by {by}", unit="chunk", disable=not progress, leave=False)
        for chunk in bar:
            done = store.get(chunk.id) if store is not None else None
            if done is None:
                entries = settle(base, build_entries(what, base, src, chunk), chunk.start, counter)
                keys, vals = run_chunk(base, entries, chunk.start, readout, metric, counter, per_prompt=per_prompt)
                done = dict(zip(keys, vals.tolist()))
                if store is not None:
                    store.put(chunk.id, done)
            else:
                stats.resumed_chunks += 1
            for key, value in done.items():
                values[tuple(key)] = torch.as_tensor(value)
    stats.flops, stats.seconds = counter.flops, time.perf_counter() - t0
    values = _full_width(values, axes, tokens.shape[1], fill)
    return (values.movedim(-1, 0) if per_prompt else values), axes, base_value, stats


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _chunk_budget(memory_budget_mb: float, base: BaseRun, src: dict) -> int:
    """What the chunks may use: the budget minus the base run and the source activations, which
    stay in memory for the whole sweep."""
    budget = int(memory_budget_mb * 2**20)
    fixed = _tensor_bytes(base.resid_pre + base.attn_out + base.resid_post + base.keys + base.values)
    fixed += _tensor_bytes(base.extra.values()) + _tensor_bytes(src.values())
    if fixed >= budget:
        logger.warning(
            "the base run and source activations alone take %.0f MB, more than the %.0f MB budget; "
            "running one variant at a time", fixed / 2**20, memory_budget_mb,
        )
        return 0
    # headroom for what the estimate misses (allocator slack, transient copies)
    return int(0.8 * (budget - fixed))


def _full_width(values: torch.Tensor, axes, n_pos: int, fill) -> torch.Tensor:
    """Positions after the last one the metric reads were never run: patching them leaves the
    metric at its base value, which is what they get. (Trailing per-prompt axis allowed.)"""
    shape = [n_pos if a in ("pos", "dest_pos", "src_pos") else n for a, n in zip(axes, values.shape)]
    shape += list(values.shape[len(axes):])
    if list(values.shape) == shape:
        return values
    out = torch.empty(shape)
    out[...] = fill
    out[tuple(slice(0, n) for n in values.shape)] = values
    return out
