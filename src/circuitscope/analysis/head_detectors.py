"""Score every head of a model with the detectors of ``detectors.py``: ``[layer, head]`` maps.

The classic probe is a batch of *repeated random tokens* (``[BOS] A A``, A a random sequence):
on the second copy an induction head attends to the token after the current token's first
occurrence, a duplicate-token head to that occurrence itself, and a previous-token head to the
position before it anywhere. :func:`detect_heads` builds that batch from a ``torch.Generator``
you pass (so the draw is reproducible and global RNG state is never touched), or scores heads
on your own prompts (a token batch, a Task, or a cache you already have).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from circuitscope.analysis._typing import Bool, Float, Int, Tensor
from circuitscope.analysis.bootstrap import CI, summarize
from circuitscope.analysis.detectors import DETECTORS, detector_targets, detector_weights
from circuitscope.analysis.runs import DEFAULT_MEMORY_MB, prompts_per_batch
from circuitscope.cache import ActivationCache
from circuitscope.results import Result
from circuitscope.tasks.task import Task

__all__ = ["repeated_random_tokens", "detect_heads", "detector_scores_per_prompt"]

_TITLES = {
    "previous_token": "Previous-token score per head",
    "duplicate_token": "Duplicate-token score per head",
    "induction": "Induction score per head",
}


def repeated_random_tokens(
    model, n_prompts: int, seq_len: int, generator: torch.Generator, prepend_bos: bool = True
) -> Int[Tensor, "prompt pos"]:
    """``[BOS] A A`` for ``n_prompts`` random sequences A of ``seq_len`` non-special tokens, drawn
    uniformly with ``generator``: ``[n_prompts, prepend_bos + 2 * seq_len]``."""
    if not isinstance(generator, torch.Generator):
        raise TypeError("pass a seeded torch.Generator, e.g. torch.Generator().manual_seed(0)")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        from circuitscope.tasks.induction import default_token_pool

        pool = default_token_pool(tokenizer)
    else:
        pool = torch.arange(model.cfg.d_vocab)
    seq = pool[torch.randint(len(pool), (n_prompts, seq_len), generator=generator)]  # [prompt, seq_len]
    parts = [seq, seq]
    if prepend_bos:
        bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
        parts.insert(0, torch.full((n_prompts, 1), 0 if bos is None else int(bos), dtype=torch.long))
    return torch.cat(parts, dim=1)


def detector_scores_per_prompt(
    patterns: Float[Tensor, "batch layer head query key"],
    tokens: Optional[Int[Tensor, "batch pos"]],
    valid: Optional[Bool[Tensor, "batch pos"]] = None,
    kinds: Sequence[str] = DETECTORS,
) -> Float[Tensor, "batch kind layer head"]:
    """Every detector's score for every head on every prompt (NaN where a prompt has nothing to score)."""
    weights = torch.stack(
        [detector_weights(detector_targets(k, tokens, patterns.shape[-1], valid)) for k in kinds], dim=1
    ).to(patterns)  # [batch, kind, q, k]
    batch, n_layers, n_heads, n_q, n_k = patterns.shape
    flat = patterns.reshape(batch, n_layers * n_heads, n_q * n_k)  # [batch, layer*head, q*k]
    scores = torch.bmm(weights.reshape(batch, len(kinds), n_q * n_k), flat.transpose(1, 2))  # [batch, kind, l*h]
    return scores.reshape(batch, len(kinds), n_layers, n_heads)


def _patterns(cache: ActivationCache, n_layers: int) -> torch.Tensor:
    patterns = [cache[f"blocks.{l}.attn.hook_pattern"] for l in range(n_layers)]  # each [batch, head, q, k]
    return torch.stack(patterns, dim=1)  # [batch, layer, head, q, k]


def _run(model, tokens, valid, kinds, max_memory_mb, batch_size) -> torch.Tensor:
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    size = batch_size or prompts_per_batch(model, names, tokens.shape[1], max_memory_mb)
    out = []
    for start in range(0, tokens.shape[0], size):
        toks = tokens[start : start + size]
        ok = None if valid is None else valid[start : start + size]
        width = tokens.shape[1] if ok is None else int(ok.sum(1).max())
        toks, ok = toks[:, :width], None if ok is None else ok[:, :width]  # cut to the longest prompt
        with torch.no_grad():
            _, cache = model.run_with_cache(toks, names_filter=names, return_type=None)
        out.append(detector_scores_per_prompt(_patterns(cache, model.cfg.n_layers), toks, ok, kinds))
    return torch.cat(out, dim=0)


def detect_heads(
    model,
    source: Union[None, Tensor, Task, ActivationCache] = None,
    *,
    kinds: Sequence[str] = DETECTORS,
    tokens: Optional[Int[Tensor, "prompt pos"]] = None,
    task: Optional[Task] = None,
    generator: Optional[torch.Generator] = None,
    n_prompts: int = 100,
    seq_len: int = 20,
    ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB,
    batch_size: Optional[int] = None,
) -> dict[str, Result]:
    """Previous-token, duplicate-token and induction scores of every head: ``{kind: [layer, head]}``.

    Without a generator the random tokens come from ``torch.Generator().manual_seed(0)``.

    ``source``: None (``n_prompts`` repeated random sequences of ``seq_len`` tokens drawn with
    ``generator``, a seeded ``torch.Generator``), a token batch ``[prompt, pos]``, a Task (its clean
    prompts; padding is ignored), or a cache of attention patterns plus ``tokens=`` (or ``task=``)
    it was run on. Each Result has ``.per_prompt`` ``[prompt, layer, head]`` and a bootstrap ``.ci``.
    """
    kinds = tuple(kinds)
    for k in kinds:
        if k not in DETECTORS:
            raise ValueError(f"unknown detector {k!r}; choose from {DETECTORS}")
    data = "given prompts"
    if isinstance(source, Task) or (task is not None and not isinstance(source, ActivationCache)):
        task = source if isinstance(source, Task) else task
    valid = None
    if task is not None:
        tokens = task.clean_tokens
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None] <= task.answer_pos[:, None]  # [prompt, pos]
    elif isinstance(source, torch.Tensor):
        tokens = source
    elif source is None and tokens is None:
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        tokens = repeated_random_tokens(model, n_prompts, seq_len, generator)
        data = f"repeated random tokens: {n_prompts} x [BOS] A A, len(A) = {seq_len}"
    elif source is not None and not isinstance(source, ActivationCache):
        raise TypeError(f"source must be None, tokens, a Task or an ActivationCache, got {type(source).__name__}")

    if isinstance(source, ActivationCache):
        if tokens is None and set(kinds) != {"previous_token"}:
            raise ValueError("scoring a cache needs the tokens it was run on: pass tokens=... or task=...")
        patterns = _patterns(source, model.cfg.n_layers)  # [prompt, layer, head, q, k]
        width = patterns.shape[-1]
        tokens = None if tokens is None else tokens[:, :width]
        valid = None if valid is None else valid[:, :width]
        per_prompt = detector_scores_per_prompt(patterns, tokens, valid, kinds)
    else:
        per_prompt = _run(model, tokens, valid, kinds, max_memory_mb, batch_size)  # [prompt, kind, layer, head]
    both = summarize(per_prompt, ("kind", "layer", "head"), ci=ci)  # one bootstrap draw shared by every kind
    out = {}
    for i, k in enumerate(kinds):
        interval = None if both.ci is None else (both.ci[0][i], both.ci[1][i])
        meta = {**both.meta, "detector": k, "data": data}
        out[k] = Result(
            both.values[i], ("layer", "head"), None, _TITLES[k], meta, ci=interval, per_prompt=per_prompt[:, i]
        )
    return out
