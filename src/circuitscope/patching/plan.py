"""A sweep as a plan: one variant per output entry, grouped into independent chunks.

Each variant patches one activation (a layer's residual stream at one position, one head's
output at every position, ...) and records where it can first change anything: its ``layer`` and
its ``start`` position. Variants that share a start run together (they share the frozen prefix of
keys and values); a chunk is such a group cut to fit the memory budget. Chunks are independent:
they can run in any order, on any worker, and a finished chunk's values can be checkpointed.

A variant whose source activation equals the base activation is a no-op: its value is the base
run's metric, and it is never run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["Variant", "Chunk", "SWEEPS", "check_patchable", "hook_name", "plan_sweep", "make_chunks"]

# what -> (hook point, "block" or "head" level)
SWEEPS = {
    "resid_pre": ("hook_resid_pre", "block"),
    "resid_mid": ("hook_resid_mid", "block"),
    "resid_post": ("hook_resid_post", "block"),
    "attn_out": ("hook_attn_out", "block"),
    "mlp_out": ("hook_mlp_out", "block"),
    "z": ("attn.hook_z", "head"),
    "q": ("attn.hook_q", "head"),
    "k": ("attn.hook_k", "head"),
    "v": ("attn.hook_v", "head"),
    "pattern": ("attn.hook_pattern", "head"),
}
BYS = ("pos", "all", "dest_src")


def check_patchable(model, what: str) -> None:
    """Raise if ``what`` is not an activation this model has."""
    cfg = model.cfg
    if what not in SWEEPS:
        raise ValueError(f"unknown activation {what!r}; choose one of {sorted(SWEEPS)}")
    if what == "resid_mid" and (cfg.parallel_attn_mlp or cfg.attn_only):
        raise ValueError(f"{cfg.model_name} has no resid_mid (its attention and MLP are not sequential)")
    if what == "mlp_out" and cfg.attn_only:
        raise ValueError(f"{cfg.model_name} is attention-only: there is no mlp_out to patch")


def hook_name(what: str, layer: int) -> str:
    return f"blocks.{layer}.{SWEEPS[what][0]}"


@dataclass(frozen=True)
class Variant:
    key: tuple  # index into the output tensor
    layer: int
    start: int  # first position whose activations can differ from the base run
    pos: Optional[int] = None  # the patched (destination) position; None = every position
    head: Optional[int] = None
    src: Optional[int] = None  # source position of a single pattern entry


@dataclass
class Chunk:
    start: int
    variants: list[Variant]

    @property
    def id(self) -> str:
        """A stable name for checkpoints (same plan -> same ids)."""
        text = ";".join(str(v.key) for v in self.variants)
        return f"s{self.start}-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _axes(what: str, by: str) -> tuple[str, ...]:
    level = SWEEPS[what][1]
    if by == "dest_src":  # TransformerLens's order for the pattern: head before positions
        return ("layer", "head", "dest_pos", "src_pos")
    if level == "block":
        return ("layer", "pos") if by == "pos" else ("layer",)
    if by == "pos":
        return ("layer", "head", "dest_pos") if what == "pattern" else ("layer", "pos", "head")
    return ("layer", "head")


def _first_difference(src: torch.Tensor, base: torch.Tensor) -> Optional[int]:
    """The first position (axis 1) where two activations differ in any prompt, or None."""
    diff = (src != base).reshape(src.shape[0], src.shape[1], -1).any(-1).any(0)  # [pos]
    idx = diff.nonzero()
    return None if len(idx) == 0 else int(idx[0, 0])


def plan_sweep(what: str, by: str, cfg, source: dict, base: dict, width: int):
    """Variants of a sweep: returns ``(shape, axes, variants, noop_keys)``.

    ``source`` / ``base`` map hook names to activations ``[batch, pos, ...]`` (patterns
    ``[batch, head, q, k]``) cut to ``width`` positions.
    """
    if what not in SWEEPS:
        raise ValueError(f"unknown activation {what!r}; choose one of {sorted(SWEEPS)}")
    if by not in BYS or (by == "dest_src" and what != "pattern"):
        raise ValueError(f"by must be 'pos' or 'all' (or 'dest_src' for the pattern), got {by!r}")
    level = SWEEPS[what][1]
    L, H = cfg.n_layers, cfg.n_heads
    axes = _axes(what, by)
    sizes = {"layer": L, "head": H, "pos": width, "dest_pos": width, "src_pos": width}
    shape = tuple(sizes[a] for a in axes)
    variants, noop = [], []
    for layer in range(L):
        name = hook_name(what, layer)
        s, b = source[name], base[name]
        heads = range(H) if level == "head" else [None]
        for h in heads:
            if level == "head":
                s_h, b_h = (s[:, h], b[:, h]) if what == "pattern" else (s[:, :, h], b[:, :, h])
            else:
                s_h, b_h = s, b
            if h is None:
                key_of = lambda *ix: (layer, *ix)  # noqa: E731
            elif what == "pattern":
                key_of = lambda *ix: (layer, h, *ix)  # noqa: E731
            else:
                key_of = lambda *ix: (layer, *ix, h)  # noqa: E731
            if by == "all":
                first = _first_difference(s_h, b_h)
                (noop if first is None else variants).append(
                    key_of() if first is None else Variant(key_of(), layer, first, None, h)
                )
                continue
            for p in range(width):
                if by == "dest_src":
                    for q in range(width):
                        same = torch.equal(s_h[:, p, q], b_h[:, p, q])
                        key = (layer, h, p, q)
                        noop.append(key) if same else variants.append(Variant(key, layer, p, p, h, q))
                    continue
                same = torch.equal(s_h[:, p], b_h[:, p])
                key = key_of(p)
                noop.append(key) if same else variants.append(Variant(key, layer, p, p, h))
    return shape, axes, variants, noop


def variant_bytes(cfg, batch: int, width: int, start: int, itemsize: int = 4) -> int:
    """A generous estimate of the memory one variant adds to a chunk while it runs."""
    rows = width - start
    d_mlp = 0 if cfg.attn_only else cfg.d_mlp * (2 if cfg.gated_mlp else 1)
    per_row = 10 * cfg.d_model + 3 * d_mlp + 2 * cfg.n_heads * width + 4 * cfg.n_heads * cfg.d_head
    prefix = 4 * start * cfg.n_heads * cfg.d_head
    return batch * (rows * per_row + prefix) * itemsize


def make_chunks(variants: list[Variant], cfg, batch: int, width: int, budget_bytes: int) -> list[Chunk]:
    """Group variants by start position, then cut each group to fit ``budget_bytes``."""
    groups: dict[int, list[Variant]] = {}
    for v in variants:
        groups.setdefault(v.start, []).append(v)
    chunks = []
    for start in sorted(groups):
        group = sorted(groups[start], key=lambda v: (v.layer, v.key))
        size = max(1, budget_bytes // max(1, variant_bytes(cfg, batch, width, start)))
        for i in range(0, len(group), size):
            chunks.append(Chunk(start, group[i : i + size]))
    return chunks
