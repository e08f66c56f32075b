"""Direct logit attribution and the logit lens, read at each prompt's answer position.

Direct logit attribution splits the final residual stream into the pieces that wrote it (embeddings,
each head, each MLP), freezes the final layer norm's scale, and projects each piece on the
logit-difference direction ``W_U[:, correct] - W_U[:, incorrect]``: how much each component pushes
the right answer over the wrong one *directly*, not through later layers. The logit lens does the
same for the running sum of the residual stream after each layer.
"""

from __future__ import annotations

import torch

from circuitscope.cache import ActivationCache


def _project(model, cache: ActivationCache, stack: torch.Tensor, task) -> torch.Tensor:
    """stack [component, batch, d_model] -> mean logit-diff contribution per component [component]."""
    directions = model.tokens_to_residual_directions(task.answer_tokens.to(model.W_U.device))  # [batch, 2, d_model]
    diff = directions[:, 0] - directions[:, 1]  # [batch, d_model]
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=task.answer_pos)  # [component, batch, d_model]
    return (scaled * diff).sum(-1).mean(-1)


def head_attribution(model, cache: ActivationCache, task) -> torch.Tensor:
    """Mean direct logit difference written by every head: ``[layer, head]``."""
    stack = cache.stack_head_results(layer=-1, pos_slice=task.answer_pos)  # [layer*head, batch, d_model]
    return _project(model, cache, stack, task).reshape(model.cfg.n_layers, model.cfg.n_heads)


def layer_attribution(model, cache: ActivationCache, task) -> tuple[torch.Tensor, list[str]]:
    """Mean direct logit difference of each embedding / attention / MLP output: ``[component]``."""
    stack, labels = cache.decompose_resid(layer=-1, pos_slice=task.answer_pos, return_labels=True)
    return _project(model, cache, stack, task), labels


def logit_lens(model, cache: ActivationCache, task) -> tuple[torch.Tensor, list[str]]:
    """Logit difference read from the residual stream after each layer: ``[n_layers + 1]``."""
    stack, labels = cache.accumulated_resid(layer=-1, pos_slice=task.answer_pos, return_labels=True)
    return _project(model, cache, stack, task), labels
