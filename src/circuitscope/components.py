"""``circuitscope.components``: the building blocks, under the names TransformerLens uses.

``from transformer_lens.components import Embed, Unembed, LayerNorm, MLP`` becomes
``from circuitscope.components import ...``. Each name is the class circuitscope's own model is
built from (re-exported, not a copy), so ``isinstance(model.blocks[0].mlp, MLP)`` holds. Shapes
of the weights follow TransformerLens (``W_E [d_vocab, d_model]``, ``W_Q [head, d_model,
d_head]``, ``W_in [d_model, d_mlp]``, ...). There is one ``MLP`` class for plain and gated MLPs
(``cfg.gated_mlp``), so TransformerLens' ``GatedMLP`` is not a separate name here.
"""

from __future__ import annotations

from circuitscope.model.attention import Attention
from circuitscope.model.block import TransformerBlock
from circuitscope.model.embed import Embed, PosEmbed, Unembed
from circuitscope.model.mlp import MLP
from circuitscope.model.norms import LayerNorm, LayerNormPre, RMSNorm, RMSNormPre

__all__ = [
    "Attention",
    "Embed",
    "LayerNorm",
    "LayerNormPre",
    "MLP",
    "PosEmbed",
    "RMSNorm",
    "RMSNormPre",
    "TransformerBlock",
    "Unembed",
]
