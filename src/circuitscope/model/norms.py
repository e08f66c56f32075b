"""Layer norms with hook points on the scale and on the normalised output.

The scale (``hook_scale``, ``[batch, pos, 1]``) is what direct logit attribution divides each
residual component by: LayerNorm is linear once its scale is frozen.
``LNPre`` / ``RMSPre`` are the weight-free versions left behind when the norm's weights have been
folded into the next linear layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from circuitscope.hooks import HookPoint
from circuitscope.model.config import TransformerConfig


class _Norm(nn.Module):
    center = True  # LayerNorm subtracts the mean; RMSNorm does not
    affine = True  # has a learned weight (and, for LayerNorm, a bias)

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.eps = cfg.eps
        if self.affine:
            self.w = nn.Parameter(torch.ones(cfg.d_model, dtype=cfg.dtype))
            if self.center:
                self.b = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.hook_scale = HookPoint()  # [batch, pos, 1]  (or [batch, pos, head, 1])
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]  (or [batch, pos, head, d_model])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()  # half-precision norms lose too much; HF upcasts here as well
        if not (self.hook_scale.active or self.hook_normalized.active):
            return self._fused(x).to(dtype)  # one kernel when nobody reads the scale
        if self.center:
            x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        x = x / scale
        if self.affine:
            x = x * self.w.float()
            if self.center:
                x = x + self.b.float()
        return self.hook_normalized(x.to(dtype))


    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w.float() if self.affine else None
        if self.center:
            b = self.b.float() if self.affine else None
            return F.layer_norm(x, x.shape[-1:], w, b, self.eps)
        return F.rms_norm(x, x.shape[-1:], w, self.eps)


class LayerNorm(_Norm):
    center, affine = True, True


class LayerNormPre(_Norm):
    center, affine = True, False


class RMSNorm(_Norm):
    center, affine = False, True


class RMSNormPre(_Norm):
    center, affine = False, False


NORMS = {"LN": LayerNorm, "LNPre": LayerNormPre, "RMS": RMSNorm, "RMSPre": RMSNormPre}


def make_norm(cfg: TransformerConfig) -> nn.Module:
    if cfg.normalization_type is None:
        return nn.Identity()
    return NORMS[cfg.normalization_type](cfg)
