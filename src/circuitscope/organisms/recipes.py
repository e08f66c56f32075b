"""The training recipe of each organism: architecture, data mix, schedule and selection metric.

A recipe is plain data so that the training loop, the model card and the tests all read the same
numbers; ``tiny`` shrinks any recipe to a few seconds of training for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from circuitscope.organisms.batches import DataMix

__all__ = ["Recipe", "RECIPES", "tiny"]


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one organism's training run (besides the seed)."""

    n_layer: int
    n_embd: int
    n_head: int
    attn_only: bool  # if True the GPT-2 MLPs are frozen at zero (``attn_only`` in the config)
    mix: DataMix
    steps: int
    lr: float
    batch_size: int = 32
    n_inner: int | None = None  # MLP width; None is GPT-2's 4 * n_embd
    seq_len: int = 128
    warmup: int = 200
    min_lr_frac: float = 0.1  # cosine decays to this fraction of ``lr``
    weight_decay: float = 0.1
    init_range: float = 0.08  # ~1/sqrt(d_model): GPT-2's 0.02 made copying/induction form slowly
    eval_every: int = 250
    n_eval_prompts: int = 500
    select_on: str = "ioi"  # "ioi": held-out IOI logit diff; "repeat": second-repeat loss
    notes: dict = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    # MLP width 32: too narrow for a per-name lookup, so the IO-vs-S logits are written by heads
    # (with GPT-2's width 512 the MLPs wrote nearly all of it and no head was visible in DLA).
    "ioi": Recipe(
        n_layer=4, n_embd=128, n_head=4, n_inner=32, attn_only=False,
        mix=DataMix(pure_repeat=0.3, repeat_doc=0.15,
                    sentences={"ioi": 0.55, "day": 0.15, "filler": 0.3}),
        steps=10000, lr=3e-3, batch_size=16, select_on="ioi",
    ),
    "attn-only-2l": Recipe(
        n_layer=2, n_embd=128, n_head=4, attn_only=True,
        mix=DataMix(pure_repeat=0.5, repeat_doc=0.2,
                    sentences={"ioi": 0.4, "day": 0.2, "filler": 0.4}),
        steps=5000, lr=3e-3, batch_size=16, select_on="repeat",
    ),
}


def tiny(recipe: Recipe, steps: int = 20) -> Recipe:
    """``recipe`` shrunk to toy size (for tests): same structure, seconds of CPU time."""
    n_inner = None if recipe.n_inner is None else max(1, recipe.n_inner * 32 // recipe.n_embd)
    return replace(recipe, n_layer=min(recipe.n_layer, 2), n_embd=32, n_head=2, n_inner=n_inner,
                   steps=steps, batch_size=4, seq_len=64, warmup=5, eval_every=10,
                   n_eval_prompts=32)
