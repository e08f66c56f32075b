"""Weights stacked over layers with heads as their own axis, plus factored QK / OV circuits.

``W_Q[layer, head]`` is ``[d_model, d_head]``: the residual-stream directions head (layer, head)
reads its queries from. ``QK[layer, head]`` is the ``[d_model, d_model]`` bilinear form that
scores a query residual against a key residual; ``OV[layer, head]`` maps what a head attends to
onto what it writes. Both are kept factored (never multiplied out) until asked.
"""

from __future__ import annotations

import torch


class WeightViews:
    """Mixin: needs ``self.blocks``, ``self.embed``, ``self.unembed`` (and ``self.pos_embed``)."""

    def _stack(self, module: str, name: str) -> torch.Tensor:
        return torch.stack([getattr(getattr(b, module), name) for b in self.blocks], dim=0)

    @property
    def W_E(self) -> torch.Tensor:  # [d_vocab, d_model]
        return self.embed.W_E

    @property
    def W_pos(self) -> torch.Tensor:  # [n_ctx, d_model]
        if not hasattr(self, "pos_embed"):
            raise AttributeError("this model uses rotary positions; it has no W_pos")
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> torch.Tensor:  # [d_vocab + n_ctx, d_model]
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_U(self) -> torch.Tensor:  # [d_model, d_vocab]
        return self.unembed.W_U

    @property
    def b_U(self) -> torch.Tensor:  # [d_vocab]
        return self.unembed.b_U

    @property
    def W_Q(self) -> torch.Tensor:  # [layer, head, d_model, d_head]
        return self._stack("attn", "W_Q")

    @property
    def W_K(self) -> torch.Tensor:  # [layer, head, d_model, d_head]
        return self._stack("attn", "W_K")

    @property
    def W_V(self) -> torch.Tensor:  # [layer, head, d_model, d_head]
        return self._stack("attn", "W_V")

    @property
    def W_O(self) -> torch.Tensor:  # [layer, head, d_head, d_model]
        return self._stack("attn", "W_O")

    @property
    def b_Q(self) -> torch.Tensor:  # [layer, head, d_head]
        return self._stack("attn", "b_Q")

    @property
    def b_K(self) -> torch.Tensor:  # [layer, head, d_head]
        return self._stack("attn", "b_K")

    @property
    def b_V(self) -> torch.Tensor:  # [layer, head, d_head]
        return self._stack("attn", "b_V")

    @property
    def b_O(self) -> torch.Tensor:  # [layer, d_model]
        return self._stack("attn", "b_O")

    def _require_mlp(self) -> None:
        if self.cfg.attn_only:
            raise AttributeError("this is an attention-only model; it has no MLP weights")

    @property
    def W_in(self) -> torch.Tensor:  # [layer, d_model, d_mlp]
        self._require_mlp()
        return self._stack("mlp", "W_in")

    @property
    def W_gate(self) -> torch.Tensor:  # [layer, d_model, d_mlp]
        self._require_mlp()
        if not self.cfg.gated_mlp:
            raise AttributeError("this model's MLPs are not gated; it has no W_gate")
        return self._stack("mlp", "W_gate")

    @property
    def W_out(self) -> torch.Tensor:  # [layer, d_mlp, d_model]
        self._require_mlp()
        return self._stack("mlp", "W_out")

    @property
    def b_in(self) -> torch.Tensor:  # [layer, d_mlp]
        self._require_mlp()
        return self._stack("mlp", "b_in")

    @property
    def b_out(self) -> torch.Tensor:  # [layer, d_model]
        self._require_mlp()
        return self._stack("mlp", "b_out")

    @property
    def QK(self):
        """FactoredMatrix [layer, head, d_model, d_model]: W_Q @ W_K^T."""
        from circuitscope.model.factored_matrix import FactoredMatrix

        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self):
        """FactoredMatrix [layer, head, d_model, d_model]: W_V @ W_O."""
        from circuitscope.model.factored_matrix import FactoredMatrix

        return FactoredMatrix(self.W_V, self.W_O)

    def all_head_labels(self) -> list[str]:
        return [f"L{layer}H{head}" for layer in range(self.cfg.n_layers) for head in range(self.cfg.n_heads)]
