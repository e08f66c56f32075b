"""Direct logit attribution and the logit lens, read at each prompt's answer position.

Direct logit attribution (DLA) splits the final residual stream into the pieces that wrote it
(embeddings, each head, each MLP), freezes the final layer norm's scale, and projects each piece
on the logit-difference direction ``W_U[:, correct] - W_U[:, incorrect]``: how much each
component pushes the right answer over the wrong one *directly*, not through later layers.
Because the frozen norm is linear, the pieces of ``by="component"`` (plus the constant the
unembedding adds, ``unembed_bias``) sum exactly to the logit difference of every prompt.
The logit lens projects the running sum of the residual stream after each layer the same way.

Each function takes ``(model, source, task)`` where ``source`` is the user's cache (with the
task it was run on) or a Task (the model is then run in batches, see ``runs.py``), and returns a
:class:`~circuitscope.results.Result` with the mean over prompts, ``.per_prompt`` and a
bootstrap ``.ci`` (``ci=False`` skips it; ``ci=Bootstrap(...)`` configures it).
"""

from __future__ import annotations

from typing import Optional

import torch

from circuitscope.analysis._typing import Float, Tensor
from circuitscope.analysis.bootstrap import CI, summarize
from circuitscope.analysis.runs import DEFAULT_MEMORY_MB, Source, resolve_source, run_batches
from circuitscope.cache import ActivationCache
from circuitscope.results import Result
from circuitscope.tasks.metrics import task_logit_diff
from circuitscope.tasks.task import Task

__all__ = [
    "answer_direction", "dla_per_prompt", "head_attribution", "layer_attribution",
    "component_attribution", "logit_lens", "logit_difference",
]

_TITLES = {
    "head": "Direct logit attribution per head",
    "layer": "Direct logit attribution per layer",
    "component": "Direct logit attribution per component",
    "lens": "Logit lens: logit difference read from the residual stream",
}


def answer_direction(model, task: Task) -> tuple[Float[Tensor, "prompt d_model"], Float[Tensor, "prompt"]]:
    """The direction each normalised residual component is read along, and the constant offset.

    ``logit[correct] - logit[incorrect] = (normalised resid) . direction + offset`` for every prompt:
    the direction is the difference of unembedding columns (times the final norm's weight, when
    the model keeps one); the offset is what the unembedding bias (and the norm's bias) add.
    """
    answers = task.answer_tokens.to(model.W_U.device)  # [prompt, 2]
    direction = model.W_U.T[answers[:, 0]] - model.W_U.T[answers[:, 1]]  # [prompt, d_model]
    offset = model.b_U[answers[:, 0]] - model.b_U[answers[:, 1]]  # [prompt]
    ln = model.ln_final
    if getattr(ln, "b", None) is not None:
        offset = offset + direction @ ln.b
    if getattr(ln, "w", None) is not None:
        direction = direction * ln.w
    return direction.detach().float(), offset.detach().float()


def _stack(cache: ActivationCache, kind: str, pos, incl_mid: bool) -> tuple[torch.Tensor, list[str]]:
    """Residual pieces at the answer positions: ``[component, prompt, d_model]`` and their labels."""
    if kind == "head":
        return cache.stack_head_results(layer=-1, pos_slice=pos, return_labels=True)
    if kind == "layer":
        return cache.decompose_resid(layer=-1, pos_slice=pos, return_labels=True)
    if kind == "component":
        return cache.get_full_resid_decomposition(layer=-1, pos_slice=pos, return_labels=True)
    if kind == "lens":
        return cache.accumulated_resid(layer=-1, incl_mid=incl_mid, pos_slice=pos, return_labels=True)
    raise ValueError(f"unknown attribution kind {kind!r}")


def dla_per_prompt(
    model, cache: ActivationCache, task: Task, kind: str = "head", incl_mid: bool = False
) -> tuple[Float[Tensor, "prompt component"], list[str]]:
    """Each component's direct logit difference on each prompt, with the component labels.

    ``kind``: ``"head"`` (``L0H0, ...``), ``"layer"`` (embeddings, each attention / MLP output,
    ``unembed_bias``), ``"component"`` (every head, every MLP, embeddings, summed ``b_O``,
    ``unembed_bias``) or ``"lens"`` (the accumulated residual stream, offset included).
    """
    pos = task.answer_pos
    stack, labels = _stack(cache, kind, pos, incl_mid)  # [component, prompt, d_model]
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=pos).float()  # [component, prompt, d_model]
    direction, offset = answer_direction(model, task)
    direction, offset = direction.to(scaled.device), offset.to(scaled.device)
    per_prompt = torch.einsum("cpd,pd->pc", scaled, direction)  # [prompt, component]
    if kind in ("layer", "component"):
        per_prompt = torch.cat([per_prompt, offset[:, None]], dim=1)
        labels = [*labels, "unembed_bias"]
    elif kind == "lens":
        per_prompt = per_prompt + offset[:, None]
    return per_prompt, list(labels)


def _names(model, kind: str, incl_mid: bool) -> list[str]:
    n = model.cfg.n_layers
    wanted = {f"blocks.{n - 1}.hook_resid_post", "ln_final.hook_scale"}
    suffixes = {
        "head": ("attn.hook_z",),
        "layer": ("hook_embed", "hook_pos_embed", "hook_attn_out", "hook_mlp_out"),
        "component": ("hook_embed", "hook_pos_embed", "attn.hook_z", "hook_mlp_out"),
        "lens": ("hook_resid_pre", "hook_resid_mid") if incl_mid else ("hook_resid_pre",),
    }[kind]
    return [k for k in model.hook_dict if k in wanted or k.endswith(suffixes)]


def _attribute(
    model, source, task, kind, ci, incl_mid=False, max_memory_mb=DEFAULT_MEMORY_MB, batch_size=None
) -> Result:
    cache, task = resolve_source(source, task)
    if cache is not None:
        per_prompt, labels = dla_per_prompt(model, cache, task, kind, incl_mid)
    else:
        per_prompt, labels = run_batches(
            model, task, _names(model, kind, incl_mid),
            lambda c, t, _: dla_per_prompt(model, c, t, kind, incl_mid), max_memory_mb, batch_size,
        )
    meta = {"metric": "logit difference (correct - incorrect), direct effect", "task": task.name}
    if kind == "head":
        shape = (per_prompt.shape[0], model.cfg.n_layers, model.cfg.n_heads)
        return summarize(per_prompt.reshape(shape), ("layer", "head"), title=_TITLES[kind], meta=meta, ci=ci)
    axis = "resid" if kind == "lens" else "component"
    return summarize(per_prompt, (axis,), [labels], title=_TITLES[kind], meta=meta, ci=ci)


def head_attribution(
    model, source: Source, task: Optional[Task] = None, *, ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> Result:
    """Direct logit difference written by every head at the answer position: ``[layer, head]``."""
    return _attribute(model, source, task, "head", ci, False, max_memory_mb, batch_size)


def layer_attribution(
    model, source: Source, task: Optional[Task] = None, *, ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> Result:
    """Direct logit difference of the embeddings, each attention and each MLP output: ``[component]``."""
    return _attribute(model, source, task, "layer", ci, False, max_memory_mb, batch_size)


def component_attribution(
    model, source: Source, task: Optional[Task] = None, *, ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> Result:
    """Direct logit difference of every head, every MLP, the embeddings and the biases:
    ``[component]``; the entries sum to the logit difference (prompt by prompt)."""
    return _attribute(model, source, task, "component", ci, False, max_memory_mb, batch_size)


def logit_lens(
    model, source: Source, task: Optional[Task] = None, *, incl_mid: bool = False, ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> Result:
    """Logit difference read from the residual stream before each layer (and, with ``incl_mid``,
    between each block's attention and MLP) and at the end: ``[resid]`` labelled ``0_pre, ...,
    final_post``. The final layer norm's scale is the one of the final stream (as in
    TransformerLens); ``final_post`` equals the model's logit difference."""
    return _attribute(model, source, task, "lens", ci, incl_mid, max_memory_mb, batch_size)


def logit_difference(
    model, source: Source, task: Optional[Task] = None, *, ci: CI = True,
    max_memory_mb: float = DEFAULT_MEMORY_MB, batch_size: Optional[int] = None,
) -> Result:
    """The model's logit difference (correct - incorrect) per prompt and its mean: ``[metric]``.
    From a cache it is read off the final residual stream (so the cache needs ``resid_post`` of
    the last block and the final norm's scale); from a Task the model is run."""
    cache, task = resolve_source(source, task)
    if cache is not None:
        per_prompt = dla_per_prompt(model, cache, task, "lens")[0][:, -1]  # [prompt]
    else:
        per_prompt = run_batches(
            model, task, [], lambda c, t, logits: task_logit_diff(logits, t, per_prompt=True).detach(),
            max_memory_mb, batch_size,
        )
    meta = {"metric": "logit difference (correct - incorrect)", "task": task.name}
    return summarize(per_prompt[:, None], ("metric",), [["logit_diff"]], title="Logit difference", meta=meta, ci=ci)
