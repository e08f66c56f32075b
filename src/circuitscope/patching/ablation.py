"""Ablation: knock out heads and MLPs by overwriting their outputs, then run any forward pass.

A head is ablated at its ``hook_z`` ``[batch, pos, head, d_head]`` (what it writes is ``z @ W_O``),
an MLP at its ``hook_mlp_out`` ``[batch, pos, d_model]``. The replacement is

* ``"zero"``: 0, the bluntest knock-out (it moves activations off-distribution);
* ``"mean"``: the average over a *reference* batch (e.g. ``task.corrupted_tokens``), over all its
  prompts and positions, or per position (``per_position=True``), or per template (``groups``);
* ``"resample"``: the activation of another prompt of the reference batch at the same position
  (prompt ``b`` takes reference prompt ``j != b``, drawn once per batch size from ``generator``).

``with ablated(model, heads=[(3, 1)], method="mean", reference=toks): model(x)`` attaches the hooks
for the block only; :func:`ablate` is the one-call version; :func:`backup_heads` is seed 000's
"who picks up the slack" analysis.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

from circuitscope.analysis._typing import Bool, Float, Int, Tensor
from circuitscope.results import Result

__all__ = ["METHODS", "Ablation", "ablated", "ablate", "backup_heads"]

METHODS = ("zero", "mean", "resample")
Positions = Union[None, int, Sequence[int], Int[Tensor, "batch"]]


def _position_mask(positions: Positions, batch: int, n_pos: int, device) -> Bool[Tensor, "batch pos"]:
    """Bool ``[batch, pos]``: True where the ablation applies (None = every position)."""
    mask = torch.zeros(batch, n_pos, dtype=torch.bool, device=device)
    if positions is None:
        return mask.fill_(True)
    if isinstance(positions, torch.Tensor) and positions.ndim == 0:
        positions = int(positions)
    if isinstance(positions, torch.Tensor) and positions.ndim == 1 and positions.dtype != torch.bool:
        if positions.shape[0] != batch:
            raise ValueError(
                f"a positions tensor means one position per prompt, so it needs {batch} entries, got "
                f"{positions.shape[0]}; pass a list for the same positions in every prompt"
            )
        idx = positions.to(device=device, dtype=torch.long)
        if int(idx.max()) >= n_pos or int(idx.min()) < -n_pos:
            raise ValueError(f"positions {idx.tolist()} reach outside the {n_pos} positions of the batch")
        mask[torch.arange(batch, device=device), idx] = True
        return mask
    idx = [positions] if isinstance(positions, int) else [int(p) for p in positions]
    if any(not -n_pos <= p < n_pos for p in idx):
        raise ValueError(f"positions {idx} reach outside the {n_pos} positions of the batch")
    mask[:, idx] = True
    return mask


class Ablation:
    """The validated plan and reference statistics of one ablation (what :func:`ablated` yields).

    ``stats[hook_name]`` is ``[group, pos or 1, *component]`` (means) or ``[ref_batch, pos,
    *component]`` (resample), where ``component`` is ``(head, d_head)`` or ``(d_model,)``.
    """

    def __init__(self, model, heads: Sequence[tuple[int, int]] = (), mlps: Sequence[int] = (),
                 method: str = "mean", reference: Optional[Int[Tensor, "ref_batch pos"]] = None,
                 positions: Positions = None, per_position: bool = False,
                 groups: Optional[Int[Tensor, "ref_batch"]] = None,
                 target_groups: Optional[Int[Tensor, "batch"]] = None,
                 reference_mask: Optional[Float[Tensor, "ref_batch pos"]] = None,
                 generator: Union[int, torch.Generator] = 0):
        cfg = model.cfg
        if method not in METHODS:
            raise ValueError(f"unknown ablation method {method!r}; use one of {METHODS}")
        self.model, self.method, self.positions, self.per_position = model, method, positions, per_position
        self.heads: dict[int, list[int]] = {}
        for item in heads:
            layer, head = (int(x) for x in item)
            if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
                raise ValueError(f"head {(layer, head)} is out of range: the model has layers "
                                 f"0..{cfg.n_layers - 1} and heads 0..{cfg.n_heads - 1}")
            self.heads.setdefault(layer, []).append(head)
        self.mlps = sorted({int(m) for m in mlps})
        if self.mlps and getattr(cfg, "attn_only", False):
            raise ValueError("this model is attention-only: it has no MLPs to ablate")
        for m in self.mlps:
            if not 0 <= m < cfg.n_layers:
                raise ValueError(f"MLP {m} is out of range: the model has layers 0..{cfg.n_layers - 1}")
        if not self.heads and not self.mlps:
            raise ValueError("nothing to ablate: give heads=[(layer, head), ...] and/or mlps=[layer, ...]")
        self.names = [f"blocks.{l}.attn.hook_z" for l in sorted(self.heads)]
        self.names += [f"blocks.{l}.hook_mlp_out" for l in self.mlps]
        self.groups = None if groups is None else torch.as_tensor(groups, dtype=torch.long)
        self.target_groups = None if target_groups is None else torch.as_tensor(target_groups, dtype=torch.long)
        self.gen = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(int(generator))
        self._indices: dict[int, torch.Tensor] = {}
        self.stats: dict[str, torch.Tensor] = {}
        if method != "zero":
            self._compute_stats(reference, reference_mask)

    def _compute_stats(self, reference, reference_mask) -> None:
        if reference is None:
            raise ValueError(f"method={self.method!r} needs reference tokens [batch, pos], e.g. task.corrupted_tokens")
        reference = torch.as_tensor(reference)
        if reference.ndim != 2:
            raise ValueError(f"reference must be tokens [batch, pos], got shape {tuple(reference.shape)}")
        R, P = reference.shape
        if self.method == "resample" and R < 2:
            raise ValueError("resample ablation needs a reference batch of at least 2 prompts (each prompt "
                             "takes another prompt's activation)")
        if self.groups is not None and tuple(self.groups.shape) != (R,):
            raise ValueError(f"groups must give one template id per reference prompt: [{R}], got {tuple(self.groups.shape)}")
        self.ref_shape = (R, P)
        with torch.no_grad():
            _, cache = self.model.run_with_cache(reference, names_filter=self.names)
        if self.method == "resample":
            self.stats = {n: cache[n] for n in self.names}  # [ref_batch, pos, *component]
            return
        w = torch.ones(R, P) if reference_mask is None else torch.as_tensor(reference_mask).float()
        if tuple(w.shape) != (R, P):
            raise ValueError(f"reference_mask must be [batch, pos] = [{R}, {P}], got {tuple(w.shape)}")
        g = torch.zeros(R, dtype=torch.long) if self.groups is None else self.groups
        n_groups = int(g.max()) + 1
        wg = torch.zeros(n_groups, P).index_add_(0, g, w)  # [group, pos] total weight
        if not self.per_position:
            wg = wg.sum(1, keepdim=True)  # [group, 1]
        used = g.unique() if self.target_groups is None else self.target_groups.unique()
        if int(used.max()) >= n_groups or bool((wg[used].sum(1) == 0).any()):
            raise ValueError("a template group used by the ablated prompts has no reference prompts (or zero weight)")
        for n in self.names:
            act = cache[n]  # [ref_batch, pos, *component]
            wa = w.to(act)[(...,) + (None,) * (act.ndim - 2)]
            sums = act.new_zeros((n_groups, *act.shape[1:])).index_add_(0, g.to(act.device), act * wa)
            if not self.per_position:
                sums = sums.sum(1, keepdim=True)  # [group, 1, *component]
            denom = wg.to(act)[(...,) + (None,) * (act.ndim - 2)].clamp(min=1e-12)
            self.stats[n] = sums / denom  # [group, pos or 1, *component]

    def resample_indices(self, batch: int) -> Int[Tensor, "batch"]:
        """For a batch of ``batch`` prompts, the reference prompt each one copies: ``[batch]``
        (never itself, for ``b`` < reference size). Drawn once per batch size, then reused."""
        if batch not in self._indices:
            R = self.ref_shape[0]
            j = torch.randint(0, R, (batch,), generator=self.gen)
            own = torch.randint(0, R - 1, (batch,), generator=self.gen)
            b = torch.arange(batch)
            self._indices[batch] = torch.where(b < R, own + (own >= b).long(), j)
        return self._indices[batch]

    def _replacement(self, name: str, act: Float[Tensor, "batch pos *component"]) -> Float[Tensor, "*shape"]:
        """What the ablated entries become, broadcastable to ``act`` ``[batch, pos, *component]``."""
        B, P = act.shape[:2]
        if self.method == "zero":
            return torch.zeros((), dtype=act.dtype, device=act.device)
        if (self.method == "resample" or self.per_position) and P != self.ref_shape[1]:
            raise ValueError(f"{self.method} ablation {'per position ' if self.method == 'mean' else ''}needs the "
                             f"run's width to match the reference's: got {P} positions, reference has {self.ref_shape[1]}")
        stats = self.stats[name].to(act)
        if self.method == "resample":
            return stats[self.resample_indices(B).to(act.device)]  # [batch, pos, *component]
        if self.groups is None:
            return stats[0]  # [pos or 1, *component]
        tg = self.target_groups if self.target_groups is not None else self.groups
        if tg.shape[0] != B:
            raise ValueError(f"the ablated batch has {B} prompts but target_groups has {tg.shape[0]} entries")
        return stats[tg.to(act.device)]  # [batch, pos or 1, *component]

    def hook(self, name: str) -> Callable:
        heads = None
        if name.endswith("hook_z"):
            heads = self.heads[int(name.split(".")[1])]

        def fn(act: torch.Tensor, hook=None) -> torch.Tensor:
            mask = _position_mask(self.positions, act.shape[0], act.shape[1], act.device)  # [batch, pos]
            if heads is not None:
                head_mask = torch.zeros(act.shape[2], dtype=torch.bool, device=act.device)
                head_mask[heads] = True
                mask = mask[:, :, None] & head_mask  # [batch, pos, head]
            mask = mask[..., None]  # [batch, pos, (head,) 1]
            return torch.where(mask, self._replacement(name, act), act)

        return fn

    def hooks(self) -> list[tuple[str, Callable]]:
        return [(n, self.hook(n)) for n in self.names]


@contextmanager
def ablated(model, heads: Sequence[tuple[int, int]] = (), mlps: Sequence[int] = (), method: str = "mean",
            reference: Optional[Int[Tensor, "ref_batch pos"]] = None, positions: Positions = None,
            **kwargs) -> Iterator[Ablation]:
    """Inside the block every forward pass of ``model`` runs with the heads / MLPs ablated.

    ``positions``: None (all), an int, a list of ints, or a ``[batch]`` tensor (position ``idx[b]``
    of prompt ``b``). Keyword options of :class:`Ablation`: ``per_position``, ``groups`` (template
    id per reference prompt), ``target_groups`` (per ablated prompt; default ``groups``),
    ``reference_mask`` ``[batch, pos]`` weights for the means, ``generator`` (seed or Generator).
    The reference run happens once, here; the hooks go away on exit even if the block raised.
    """
    plan = Ablation(model, heads, mlps, method, reference, positions, **kwargs)
    with model.hooks(fwd_hooks=plan.hooks(), reset_hooks_end=True):  # removes this block's hooks only
        yield plan


def ablate(model, tokens: Int[Tensor, "batch pos"], heads: Sequence[tuple[int, int]] = (),
           mlps: Sequence[int] = (), method: str = "mean", reference: Optional[Int[Tensor, "ref_batch pos"]] = None,
           metric: Optional[Callable] = None, positions: Positions = None,
           **kwargs) -> Union[Float[Tensor, "batch pos d_vocab"], Tensor]:
    """``model(tokens)`` with the ablation applied: logits ``[batch, pos, vocab]``, or ``metric(logits)``."""
    with ablated(model, heads, mlps, method, reference, positions, **kwargs):
        logits = model(tokens)
    return logits if metric is None else metric(logits)


def backup_heads(model, task, knocked_out: Sequence[tuple[int, int]], method: str = "mean",
                 reference: Optional[Int[Tensor, "ref_batch pos"]] = None,
                 positions: Union[None, str, Sequence[int]] = None,
                 **kwargs) -> Result:
    """Direct logit attribution of every head on the clean prompts before and after knocking out
    ``knocked_out`` (seed 000: heads whose DLA rises afterwards are *backup* heads).

    One :class:`Result` ``[which, layer, head]`` with ``which`` = ``before, after, difference``
    (after - before; means over prompts, ``.per_prompt`` per prompt, bootstrap ``.ci``). The
    knocked-out heads' own "after" entries are the DLA of their replacement value. ``reference``
    defaults to ``task.corrupted_tokens``; ``positions`` may be a ``task.positions`` label such as
    ``"end"``. Same as :func:`circuitscope.analysis.backup_heads` (which this calls; options such
    as ``ci=False``, ``batch_size`` and the :class:`Ablation` options pass through).
    """
    from circuitscope.analysis.backup import backup_heads as analysis_backup_heads

    return analysis_backup_heads(model, task, knocked_out, method=method, reference=reference,
                                 positions=positions, **kwargs)
