"""What an ablated node becomes: its per-position mean over the corrupted prompts (of every
template, or of the prompt's own template), or another corrupted prompt's activation (resample).
Computed once per (model, task, method).

Means leave padding out: position ``p``'s mean is over the corrupted prompts that really reach
``p`` (a position none reaches falls back to the plain mean there). A resampled prompt copies a
corrupted prompt long enough to reach its own last position, so no padding is copied in.
"""

from __future__ import annotations

from typing import Optional

import torch

from circuitscope.analysis._typing import Int, Tensor

__all__ = ["reference_activations", "resample_sources"]


def reference_activations(model, task, method: str, hook_names, width: int, rows_per_pass: int,
                          device: torch.device, generator: torch.Generator
                          ) -> tuple[dict[str, Tensor], Optional[Int[Tensor, "prompt"]], int]:
    """``(replacement, source, rows)``: hook name -> ``[pos, *component]`` (mean),
    ``[group, pos, *component]`` (template_mean) or ``[ref, pos, *component]`` (resample); for resample the corrupted prompt each clean prompt
    copies (``[prompt]``, else None); and how many prompt rows were run (``"zero"`` runs none)."""
    if method == "zero":
        return {}, None, 0
    ref_tokens = task.corrupted_tokens[:, :width].to(device)  # [ref, pos]
    real = torch.arange(width, device=device)[None, :] <= task.corrupted_answer_pos.to(device)[:, None]  # [ref, pos]
    groups = task.groups.to(device) if method == "template_mean" else torch.zeros(len(task), dtype=torch.long, device=device)
    n_groups = int(groups.max()) + 1
    sums: dict[str, torch.Tensor] = {}
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in hook_names}
    for start in range(0, ref_tokens.shape[0], rows_per_pass):
        with torch.no_grad():
            _, cache = model.run_with_cache(ref_tokens[start:start + rows_per_pass], names_filter=list(hook_names))
        w = real[start:start + rows_per_pass]  # [chunk, pos]
        g = groups[start:start + rows_per_pass]  # [chunk]
        for n in hook_names:
            act = cache[n]  # [chunk, pos, *component]
            if method == "resample":
                acts[n].append(act)
                continue
            wa = w.to(act.dtype)[(...,) + (None,) * (act.ndim - 2)]  # [chunk, pos, 1...]
            both = torch.stack([act * wa, act], dim=1)  # [chunk, 2, pos, *component]: real only, all
            part = both.new_zeros((n_groups, *both.shape[1:])).index_add_(0, g, both)  # [group, 2, pos, *component]
            sums[n] = part if n not in sums else sums[n] + part
    rows = ref_tokens.shape[0]
    if method == "resample":
        source = resample_sources(task.answer_pos, task.corrupted_answer_pos, generator).to(device)
        return {n: torch.cat(a) for n, a in acts.items()}, source, rows  # [ref, pos, *component]
    count = torch.zeros(n_groups, width, device=device).index_add_(0, groups, real.float())  # [group, pos] real prompts
    size = torch.bincount(groups, minlength=n_groups).float()  # [group] prompts
    replacement = {}
    for n in hook_names:
        s_real, s_all = sums[n][:, 0], sums[n][:, 1]  # [group, pos, *component]
        c = count.to(s_real)[(...,) + (None,) * (s_real.ndim - 2)]  # [group, pos, 1...]
        k = size.to(s_real).clamp(min=1)[(...,) + (None,) * (s_real.ndim - 1)]  # [group, 1...]
        # A position no corrupted prompt (of the group) reaches falls back to the plain mean there.
        mean = torch.where(c > 0, s_real / c.clamp(min=1), s_all / k)  # [group, pos, *component]
        replacement[n] = mean if method == "template_mean" else mean[0]
    return replacement, None, rows


def resample_sources(need: Int[Tensor, "prompt"], have: Int[Tensor, "prompt"], generator: torch.Generator) -> Int[Tensor, "prompt"]:
    """For each clean prompt ``b``, a corrupted prompt ``j != b`` drawn uniformly among those that
    reach ``b``'s last position (``have[j] >= need[b]``, so no padding is copied in). Prompt ``b``'s
    own corrupted prompt is used only when no other one is long enough; when none is, any other."""
    need, have = need.cpu().long(), have.cpu().long()
    B = need.shape[0]
    order = torch.argsort(have, descending=True, stable=True)  # [prompt] longest corrupted prompt first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(B)  # [prompt] where each prompt sits in that order
    reach = B - torch.searchsorted(have.sort().values, need, side="left")  # [prompt] corrupted prompts reaching b's end
    b = torch.arange(B)
    own = have >= need  # [prompt] b's own corrupted prompt is among them
    others = reach - own.long()  # [prompt] other prompts that reach
    r = (torch.rand(B, generator=generator) * others.clamp(min=1)).floor().long()  # [prompt] in [0, others)
    src = order[(r + (own & (r >= rank)).long()).clamp(max=B - 1)]  # skip b's own slot in the order
    any_other = (torch.rand(B, generator=generator) * max(B - 1, 1)).floor().long()
    any_other = torch.where(any_other >= b, any_other + 1, any_other).clamp(max=B - 1) if B > 1 else b
    fallback = torch.where(own, b, any_other)  # nobody else reaches b's end
    return torch.where(others > 0, src, fallback)
