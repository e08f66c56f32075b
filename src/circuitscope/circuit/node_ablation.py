"""Run a model with everything outside a circuit ablated, for many circuits at once.

Which nodes (heads, MLPs, embeddings) may be ablated and how circuits are written: see
:mod:`circuitscope.circuit.nodes`. A head is replaced at its ``hook_z``, an MLP at its
``hook_mlp_out``, the embeddings at ``blocks.0.hook_resid_pre``.

An ablated node's activation is replaced at every position by ``"mean"``: its mean over the
task's corrupted prompts, per position; ``"template_mean"``: the same mean taken only over the
corrupted prompts of the prompt's own template (``task.groups``; the IOI paper's choice);
``"zero"``: 0; ``"resample"``: its activation on another
corrupted prompt at the same position (one source prompt per clean prompt, drawn once from a
seeded ``torch.Generator`` and shared by every node and circuit, so circuits are compared on the
same draws). The replacements are computed in :mod:`circuitscope.circuit.replacements`.

:class:`CircuitAblation` computes those replacements once per (model, task, method) and scores
circuits given as boolean masks over the nodes: every (circuit, prompt) pair is a row, rows are
stacked along the batch axis in forward passes of bounded memory, and each hook is one
``torch.where`` with a precomputed keep-mask. Scores are cached per circuit, so a circuit asked
for twice (say the full model, by faithfulness and by completeness) runs once and gives
bit-identical numbers.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch

from circuitscope.analysis._typing import Bool, Float, Int, Tensor
from circuitscope.analysis.runs import DEFAULT_MEMORY_MB
from circuitscope.circuit.nodes import NODE_MODES, Node, NodeSpace, is_int, node_label
from circuitscope.circuit.replacements import reference_activations
from circuitscope.tasks.metrics import logit_diff, span_log_prob

__all__ = ["METHODS", "NODE_MODES", "Node", "NodeSpace", "CircuitAblation", "check_inputs", "node_label"]

METHODS = ("mean", "template_mean", "zero", "resample")
MAX_ROWS = 4096  # default cap on rows per forward pass (larger batches stop paying off on CPU)


def check_inputs(model, task, method: str, nodes: str, batch_size: Optional[int] = None) -> NodeSpace:
    """Validate what :class:`CircuitAblation` takes (before any forward pass); the node space."""
    if method not in METHODS:
        raise ValueError(f"unknown ablation method {method!r}; use one of {METHODS}")
    if method == "template_mean" and getattr(task, "groups", None) is None:
        raise ValueError("method='template_mean' needs the task's template ids (task.groups, set by ioi_task / "
                         "IOIDataset.to_task); use method='mean' for per-position means over all corrupted prompts")
    space = NodeSpace(model, nodes)
    _check_task(task)
    if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer (rows per forward pass) or None, got {batch_size!r}")
    return space


def _check_task(task) -> None:
    if not hasattr(task, "clean_tokens") or not hasattr(task, "answer_pos"):
        raise TypeError(f"task must be a circuitscope Task, got {type(task).__name__}")
    if len(task) == 0:
        raise ValueError("the task has no prompts; circuit scores are means over prompts, so build it with at least one")


class CircuitAblation:
    """Replacement activations for one (model, task, method, nodes), and a scorer of circuits.

    ``scores(masks)`` takes circuits as ``[circuit, node]`` boolean masks (True = in the circuit,
    kept) and returns the task's metric per prompt on each ablated run, ``[circuit, prompt]``:
    the logit difference at the answer position, or for span tasks (induction) the mean
    log-probability of the span. Nodes outside :class:`NodeSpace` are never ablated.
    ``forward_passes`` / ``rows`` count the work done so far (the reference run included).
    """

    def __init__(self, model, task, method: str = "mean", nodes: str = "heads", seed: int = 0,
                 generator: Optional[torch.Generator] = None, batch_size: Optional[int] = None,
                 max_memory_mb: float = DEFAULT_MEMORY_MB):
        self.space = check_inputs(model, task, method, nodes, batch_size)
        self.model, self.task, self.method = model, task, method
        self.span = task.span
        self.metric_name = "span log-probability" if task.span is not None else "logit difference"
        self.n_prompts = len(task)
        self.device = _model_device(model)
        # Causal attention: positions after the last one the metric reads change nothing.
        last = int(task.answer_pos.max()) + 1
        self.width = max(last, task.span[1]) if task.span is not None else last
        self.tokens: Int[Tensor, "prompt pos"] = task.clean_tokens[:, : self.width].to(self.device)
        self.answer_pos: Int[Tensor, "prompt"] = task.answer_pos.to(self.device)
        self.answer_tokens: Int[Tensor, "prompt 2"] = task.answer_tokens.to(self.device)
        cfg = model.cfg
        full_logits = task.span is not None
        self.rows_per_pass = int(batch_size) if batch_size is not None else min(
            MAX_ROWS, _rows_per_pass(cfg, self.width, full_logits, max_memory_mb))
        self.generator = generator if generator is not None else torch.Generator().manual_seed(int(seed))
        self.forward_passes = 0
        self.rows = 0  # (circuit, prompt) pairs run
        self.block_rows = 0  # rows run through one block; rows x n_layers without the shared prefixes
        self.circuits_run = 0  # circuits run on every prompt
        self.search_circuits_run = 0  # circuits run on the search prompts only
        self.cost: dict[str, dict[str, float]] = {}  # part -> forward passes, rows, new circuits, seconds
        self._cache: dict[bytes, Float[Tensor, "prompt"]] = {}  # circuit mask -> metric per prompt
        self._partial: dict[bytes, dict[bytes, torch.Tensor]] = {}  # prompt subset -> mask -> [subset]
        self._search: Optional[torch.Tensor] = None
        self.hook_names = [f"blocks.{l}.attn.hook_z" for l in range(self.space.n_layers)]
        self.hook_names += [f"blocks.{l}.hook_mlp_out" for l in range(self.space.n_layers)] if self.space.n_mlp_nodes else []
        self.hook_names += ["blocks.0.hook_resid_pre"] if self.space.has_embed else []
        stage = [n[0] if isinstance(n, tuple) else (int(n[3:]) if n.startswith("MLP") else 0) for n in self.space.nodes]
        self._upto = [torch.tensor([i for i, s in enumerate(stage) if s <= l], dtype=torch.long, device=self.device)
                      for l in range(self.space.n_layers)]  # [layer] nodes ablated in blocks 0..layer
        self.source: Optional[Int[Tensor, "prompt"]] = None  # resample: the corrupted prompt each prompt copies
        self.replacement: dict[str, Tensor] = {}  # mean: [pos, *component]; resample: [ref, pos, *component]
        with self.part("reference"):
            if method != "zero":
                self._reference()

    @property
    def faithfulness_kind(self) -> str:
        """``"ratio"`` F(C)/F(M) for answer tasks; ``"normalized"`` for span tasks, whose metric
        (a log-probability, always negative) makes a ratio meaningless."""
        return "normalized" if self.span is not None else "ratio"

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Add the forward passes, rows, newly run circuits and seconds spent inside to ``cost[name]``."""
        before = (self.forward_passes, self.rows, self.circuits_run, time.perf_counter(), self.block_rows,
                  self.search_circuits_run)
        try:
            yield
        finally:
            entry = self.cost.setdefault(name, {"forward_passes": 0, "rows": 0, "block_rows": 0, "circuits": 0,
                                                "search_circuits": 0, "seconds": 0.0})
            entry["block_rows"] += self.block_rows - before[4]
            entry["search_circuits"] += self.search_circuits_run - before[5]
            entry["forward_passes"] += self.forward_passes - before[0]
            entry["rows"] += self.rows - before[1]
            entry["circuits"] += self.circuits_run - before[2]
            entry["seconds"] += time.perf_counter() - before[3]

    def check_normalizable(self, model_value: Float[Tensor, "prompt"], empty_value: Float[Tensor, "prompt"]) -> None:
        """Normalized faithfulness divides by F(M) - F(∅); refuse when that is (nearly) 0."""
        fm, fe = float(model_value.mean()), float(empty_value.mean())
        if not abs(fm - fe) > 1e-9 * max(1.0, abs(fm), abs(fe)):
            raise ValueError(
                f"normalized faithfulness divides by F(M) - F(empty) = {fm:.6g} - {fe:.6g}, which is 0: ablating "
                f"every node ({self.space.describe()}) with method={self.method!r} leaves the "
                f"{self.metric_name} unchanged. Check that the task's corrupted prompts differ from the clean "
                "ones, or try another method or nodes='heads+mlps'."
            )

    # ------------------------------------------------------------------ replacements
    def _reference(self) -> None:
        """One pass over the corrupted prompts: per-position means, or the activations to resample."""
        self.replacement, self.source, rows = reference_activations(
            self.model, self.task, self.method, self.hook_names, self.width, self.rows_per_pass, self.device,
            self.generator)
        self.forward_passes += -(-rows // self.rows_per_pass)
        self.rows += rows
        self.block_rows += rows * self.space.n_layers

    # ------------------------------------------------------------------ scoring
    def key(self, mask: Bool[Tensor, "node"]) -> bytes:
        return mask.to(torch.bool).cpu().numpy().tobytes()

    def search_prompts(self, n: Optional[int]) -> Optional[Int[Tensor, "subset"]]:
        """The prompts a search (greedy K, the best K per node) ranks its candidates on: ``n`` of
        them, drawn once from the generator; None (all prompts) when ``n`` is None or covers them."""
        if n is None or n >= self.n_prompts:
            return None
        if self._search is None or self._search.shape[0] != n:
            self._search = torch.randperm(self.n_prompts, generator=self.generator)[:n].sort().values
        return self._search

    def scores(self, masks: Bool[Tensor, "circuit node"], progress: bool = False, desc: str = "circuits",
               prompts: Optional[Int[Tensor, "subset"]] = None) -> Float[Tensor, "circuit prompt"]:
        """The metric per prompt with everything outside each circuit ablated: ``[circuit, prompt]``
        (only the given ``prompts``, ``[circuit, subset]``, when a subset is given)."""
        masks = torch.as_tensor(masks, dtype=torch.bool).reshape(-1, len(self.space)).cpu()
        if prompts is None:
            prompts_key, cache = b"", self._cache
        else:
            prompts = torch.as_tensor(prompts, dtype=torch.long).cpu()
            prompts_key = prompts.numpy().tobytes()
            cache = self._partial.setdefault(prompts_key, {})
        keys = [self.key(m) for m in masks]
        todo: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k in self._cache and prompts is not None:
                cache[k] = self._cache[k][prompts]  # the full run covers any subset
            if k not in cache and k not in todo:
                todo[k] = i
        if todo:
            new = masks[list(todo.values())]  # [new, node]
            values = self._run(new, progress, desc, prompts)  # [new, prompt or subset]
            if prompts is None:
                self.circuits_run += len(todo)
            else:
                self.search_circuits_run += len(todo)
            for j, k in enumerate(todo):
                cache[k] = values[j]
        if not keys:
            return torch.zeros(0, self.n_prompts if prompts is None else len(prompts), dtype=torch.float64)
        return torch.stack([cache[k] for k in keys])

    def score(self, mask: Bool[Tensor, "node"]) -> Float[Tensor, "prompt"]:
        return self.scores(mask[None])[0]

    def _run(self, masks: Bool[Tensor, "circuit node"], progress: bool, desc: str,
             prompts: Optional[Int[Tensor, "subset"]] = None) -> Float[Tensor, "circuit prompt"]:
        """Every (circuit, prompt) row, ``rows_per_pass`` rows per forward pass."""
        which = torch.arange(self.n_prompts) if prompts is None else prompts
        which = which.to(self.device)
        S, B = masks.shape[0], which.shape[0]
        total = S * B
        out = torch.empty(total, dtype=torch.float64)
        state: dict[str, torch.Tensor] = {}
        masks = masks.to(self.device)
        hooks = self._hooks(state)
        starts = range(0, total, self.rows_per_pass)
        bar = None
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, unit="row", leave=False)
        try:
            with self.model.hooks(fwd_hooks=hooks, reset_hooks_end=True):
                for start in starts:
                    rows = torch.arange(start, min(start + self.rows_per_pass, total), device=self.device)
                    circuit, prompt = rows // B, which[rows % B]
                    keep = masks[circuit]  # [row, node]
                    out[start:start + len(rows)] = self._forward(keep, prompt, state).double().cpu()
                    if bar is not None:
                        bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        return out.reshape(S, B)

    def _set_state(self, state: dict, keep: Bool[Tensor, "group node"], prompt: Int[Tensor, "group"]) -> None:
        state["keep"], state["prompt"] = keep, prompt
        state["heads"] = keep[:, : self.space.n_head_nodes].reshape(-1, self.space.n_layers, self.space.n_heads)

    def _forward(self, keep: Bool[Tensor, "row node"], prompt: Int[Tensor, "row"], state: dict) -> Float[Tensor, "row"]:
        """One forward pass for ``[row]`` (circuit, prompt) pairs, run block by block: block ``l``
        runs once per distinct (prompt, nodes kept in blocks 0..l), since rows that agree on those
        carry the same residual stream into block ``l + 1`` (circuits that differ only in late
        layers share their early layers' work)."""
        self.forward_passes += 1
        self.rows += len(prompt)
        model, n_layers = self.model, self.space.n_layers
        with torch.no_grad():
            prompts, group = prompt.unique(return_inverse=True)  # group: [row] -> distinct prompt
            resid = model(self.tokens[prompts], stop_at_layer=0)  # [prompt, pos, d_model]
            for layer in range(n_layers):
                key = torch.cat([prompt[:, None], keep[:, self._upto[layer]].long()], dim=1)  # [row, 1 + node]
                _, inverse = key.unique(dim=0, return_inverse=True)  # [row] -> distinct prefix
                first = _first_rows(inverse)  # [prefix] a row of each
                self._set_state(state, keep[first], prompt[first])
                resid = model(resid[group[first]], start_at_layer=layer, stop_at_layer=layer + 1)  # [prefix, pos, d_model]
                self.block_rows += len(first)
                group = inverse
            first = _first_rows(group)
            rows = prompt[first]  # [prefix] each final residual's prompt
            if self.span is None:
                logits = model(resid, start_at_layer=n_layers, logit_positions=self.answer_pos[rows])  # [prefix, vocab]
                values = logit_diff(logits, self.answer_tokens[rows], per_prompt=True)
            else:
                logits = model(resid, start_at_layer=n_layers)  # [prefix, pos, vocab]
                values = span_log_prob(logits, self.tokens[rows], self.span[0], self.span[1], per_prompt=True)
        return values[group]  # [row]

    def _replace(self, name: str, act: torch.Tensor, keep: Bool[Tensor, "row *component"], state) -> torch.Tensor:
        """``act`` where ``keep``, the replacement elsewhere (``keep`` broadcasts over positions)."""
        if self.method == "zero":
            repl = torch.zeros((), dtype=act.dtype, device=act.device)
        elif self.method == "mean":
            repl = self.replacement[name].to(act.dtype)  # [pos, *component]
        elif self.method == "template_mean":
            groups = self.task.groups.to(act.device)[state["prompt"]]  # [row]
            repl = self.replacement[name][groups].to(act.dtype)  # [row, pos, *component]
        else:
            repl = self.replacement[name][self.source[state["prompt"]]].to(act.dtype)  # [row, pos, *component]
        return torch.where(keep, act, repl)

    def _hooks(self, state: dict) -> list[tuple[str, Any]]:
        space = self.space
        hooks = []

        def z_hook(z: Float[Tensor, "row pos head d_head"], hook) -> torch.Tensor:
            layer = int(hook.name.split(".")[1])
            keep = state["heads"][:, layer]  # [row, head]
            if bool(keep.all()):
                return z
            return self._replace(hook.name, z, keep[:, None, :, None], state)

        hooks += [(f"blocks.{l}.attn.hook_z", z_hook) for l in range(space.n_layers)]
        if space.n_mlp_nodes:
            first_mlp = space.n_head_nodes

            def mlp_hook(out: Float[Tensor, "row pos d_model"], hook) -> torch.Tensor:
                layer = int(hook.name.split(".")[1])
                keep = state["keep"][:, first_mlp + layer]  # [row]
                if bool(keep.all()):
                    return out
                return self._replace(hook.name, out, keep[:, None, None], state)

            hooks += [(f"blocks.{l}.hook_mlp_out", mlp_hook) for l in range(space.n_layers)]
        if space.has_embed:
            embed = space.index["embed"]

            def embed_hook(resid: Float[Tensor, "row pos d_model"], hook) -> torch.Tensor:
                keep = state["keep"][:, embed]  # [row]
                if bool(keep.all()):
                    return resid
                return self._replace(hook.name, resid, keep[:, None, None], state)

            hooks.append(("blocks.0.hook_resid_pre", embed_hook))
        return hooks


def _first_rows(inverse: Int[Tensor, "row"]) -> Int[Tensor, "group"]:
    """The first row of each group ``0 .. inverse.max()``."""
    n = int(inverse.max()) + 1
    rows = torch.arange(inverse.shape[0], device=inverse.device)
    return torch.full((n,), inverse.shape[0], dtype=torch.long, device=inverse.device).scatter_reduce(0, inverse, rows, "amin")


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _rows_per_pass(cfg, width: int, full_logits: bool, max_memory_mb: float) -> int:
    """Rows of ``width`` tokens per forward pass whose working set fits ``max_memory_mb``: a few
    residual-width tensors, the MLP's hidden layer, attention scores, a gathered replacement, and
    the logits (one position per row, or all of them for span tasks)."""
    d_mlp = 0 if getattr(cfg, "attn_only", False) else int(getattr(cfg, "d_mlp", 0) or 0)
    per_row = width * (8 * cfg.d_model + 2 * d_mlp + 3 * cfg.n_heads * width + 4 * cfg.n_heads * cfg.d_head)
    per_row += cfg.d_vocab * (width if full_logits else 1) * 2  # logits and their log-softmax
    return max(1, int(max_memory_mb * 2**20 // (4 * per_row)))
