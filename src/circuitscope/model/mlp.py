"""The MLP sublayer: plain (GPT-2, Pythia) or gated (LLaMA's ``act(x W_gate) * (x W_in)``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from circuitscope.hooks import HookPoint
from circuitscope.model.config import TransformerConfig

ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation function {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.act = activation(cfg.act_fn)
        self.gated = cfg.gated_mlp
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        if self.gated:
            self.W_gate = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
            self.b_gate = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
            self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [batch, pos, d_model] -> [batch, pos, d_model]
        if self.gated:
            pre = self.hook_pre(x @ self.W_gate + self.b_gate)
            linear = self.hook_pre_linear(x @ self.W_in + self.b_in)
            post = self.hook_post(self.act(pre) * linear)
        else:
            post = self.hook_post(self.act(self.hook_pre(x @ self.W_in + self.b_in)))
        return post @ self.W_out + self.b_out
