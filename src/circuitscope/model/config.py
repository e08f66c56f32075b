"""The one configuration dataclass every model family maps onto.

Architecture differences live here as data (which norm, which positional scheme, gated or plain
MLP, parallel or sequential attention/MLP) so that the generic components never branch on a
family name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Optional

import torch

NormType = Optional[Literal["LN", "LNPre", "RMS", "RMSPre"]]


@dataclass
class TransformerConfig:
    """Shape and behaviour of a decoder-only transformer.

    ``n_key_value_heads`` records the checkpoint's grouped-query layout; our weights are always
    expanded to one key/value head per query head, so every hook has a ``head`` axis of size
    ``n_heads`` (patching ``hook_k`` for query head h touches only the keys head h reads).
    """

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_vocab: int
    n_ctx: int
    d_mlp: Optional[int] = None  # None for attention-only models
    n_key_value_heads: Optional[int] = None
    act_fn: str = "gelu_new"
    normalization_type: NormType = "LN"
    eps: float = 1e-5
    positional_embedding_type: Literal["standard", "rotary"] = "standard"
    rotary_dim: Optional[int] = None
    rotary_base: float = 10000.0
    parallel_attn_mlp: bool = False
    gated_mlp: bool = False
    attn_only: bool = False  # no MLPs (also implied by d_mlp None or 0)
    attn_scale: Optional[float] = None  # scores are divided by this; default sqrt(d_head)
    window_size: Optional[int] = None  # sliding-window attention (Mistral); None = full causal
    # Per-layer windows (Qwen2's max_window_layers / layer_types): entry L is layer L's window or
    # None for full causal attention. When set it replaces window_size; read it via window_for.
    layer_windows: Optional[tuple[Optional[int], ...]] = None
    original_architecture: str = ""
    model_name: str = "custom"
    default_prepend_bos: bool = True
    # Opt-in hook points: computed (and cached by a catch-all run_with_cache) only when enabled
    # here or when a hook is attached to them explicitly.
    use_attn_result: bool = False
    use_split_qkv_input: bool = False
    use_hook_mlp_in: bool = False
    use_attn_in: bool = False
    device: str = "cpu"
    dtype: torch.dtype = field(default=torch.float32)

    def __post_init__(self) -> None:
        if not self.d_mlp:
            self.attn_only = True
        if self.attn_only:
            self.d_mlp = None
        if self.n_key_value_heads is None:
            self.n_key_value_heads = self.n_heads
        if self.attn_scale is None:
            self.attn_scale = math.sqrt(self.d_head)
        if self.positional_embedding_type == "rotary" and self.rotary_dim is None:
            self.rotary_dim = self.d_head
        if self.layer_windows is not None:
            self.layer_windows = tuple(self.layer_windows)
            if len(self.layer_windows) != self.n_layers:
                raise ValueError(
                    f"layer_windows has {len(self.layer_windows)} entries for {self.n_layers} layers"
                )
        if self.n_heads % self.n_key_value_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_key_value_heads "
                f"({self.n_key_value_heads})"
            )

    def window_for(self, layer: int) -> Optional[int]:
        """Layer ``layer``'s sliding attention window (None = attends to every earlier token)."""
        if self.layer_windows is not None:
            return self.layer_windows[layer]
        return self.window_size

    @property
    def d_vocab_out(self) -> int:
        return self.d_vocab

    def replace(self, **changes) -> "TransformerConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dtype"] = str(self.dtype).replace("torch.", "")
        return d
