"""Keys and values of already-processed positions, so a forward pass can start mid-sequence.

Generation appends each new token's keys/values; the patching engine (later) reuses a frozen
prefix shared by many patched variants, which is why a cache can be ``frozen`` (read, never
extended in place) and broadcast over a batch of variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class LayerKV:
    k: Optional[torch.Tensor] = None  # [batch, past_pos, head, d_head]
    v: Optional[torch.Tensor] = None  # [batch, past_pos, head, d_head]
    frozen: bool = False

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepend the stored prefix to this call's keys/values (and remember them unless frozen)."""
        if self.k is not None:
            pk, pv = self.k, self.v
            if pk.shape[0] != k.shape[0]:  # a shared prefix broadcast over patched variants
                pk, pv = pk.expand(k.shape[0], *pk.shape[1:]), pv.expand(k.shape[0], *pv.shape[1:])
            k, v = torch.cat([pk, k], dim=1), torch.cat([pv, v], dim=1)
        if not self.frozen:
            self.k, self.v = k, v
        return k, v


@dataclass
class KVCache:
    """Per-layer keys/values plus the attention mask of the positions they cover."""

    layers: list[LayerKV]
    mask: Optional[torch.Tensor] = None  # [batch, past_pos] 1 = real token
    frozen: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, n_layers: int, frozen: bool = False) -> "KVCache":
        return cls([LayerKV(frozen=frozen) for _ in range(n_layers)], frozen=frozen)

    @property
    def length(self) -> int:
        k = self.layers[0].k
        return 0 if k is None else k.shape[1]

    def extend_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Mask over past + new positions; stored unless the cache is frozen."""
        if self.mask is not None:
            past = self.mask
            if past.shape[0] != mask.shape[0]:
                past = past.expand(mask.shape[0], -1)
            mask = torch.cat([past, mask], dim=1)
        elif self.length:
            mask = torch.cat([mask.new_ones(mask.shape[0], self.length), mask], dim=1)
        if not self.frozen:
            self.mask = mask
        return mask
