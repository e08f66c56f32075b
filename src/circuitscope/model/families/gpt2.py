"""GPT-2 (``GPT2LMHeadModel``): learned positions, LayerNorm, GELU MLP, fused ``c_attn``.

HF's GPT-2 uses ``Conv1D`` layers, which store weights as ``[in, out]`` (``y = x @ W``).
``attn_only: true`` in the config (our attention-only organisms; HF itself has no such mode)
marks MLPs whose weights are all zero: they output only their bias, a constant that we fold into
the attention output bias and drop the MLP. ``n_inner == 0`` is read the same way.
"""

from __future__ import annotations

import torch

from circuitscope.model.config import TransformerConfig
from circuitscope.model.families._common import strip_prefix, take, tied_unembed


def config_from_hf(hf) -> TransformerConfig:
    if getattr(hf, "scale_attn_by_inverse_layer_idx", False) or getattr(hf, "reorder_and_upcast_attn", False):
        raise ValueError("GPT-2 variants with scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported")
    d_head = hf.n_embd // hf.n_head
    d_mlp = 4 * hf.n_embd if hf.n_inner is None else hf.n_inner
    if getattr(hf, "attn_only", False):
        d_mlp = 0
    return TransformerConfig(
        n_layers=hf.n_layer, d_model=hf.n_embd, n_heads=hf.n_head, d_head=d_head, d_vocab=hf.vocab_size,
        n_ctx=hf.n_positions, d_mlp=d_mlp or None, act_fn=hf.activation_function, normalization_type="LN",
        eps=hf.layer_norm_epsilon, attn_scale=(d_head ** 0.5) if getattr(hf, "scale_attn_weights", True) else 1.0,
        original_architecture="GPT2LMHeadModel",
    )


def convert(sd: dict[str, torch.Tensor], cfg: TransformerConfig, hf) -> dict[str, torch.Tensor]:
    sd = strip_prefix(sd, ("transformer.",))
    H, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
    out = {"embed.W_E": take(sd, "wte.weight"), "pos_embed.W_pos": take(sd, "wpe.weight")}
    for l in range(cfg.n_layers):
        p, q = f"h.{l}.", f"blocks.{l}."
        out[q + "ln1.w"], out[q + "ln1.b"] = take(sd, p + "ln_1.weight"), take(sd, p + "ln_1.bias")
        W = take(sd, p + "attn.c_attn.weight")  # [d_model, 3 * d_model]
        b = take(sd, p + "attn.c_attn.bias")  # [3 * d_model]
        for i, name in enumerate("QKV"):
            out[q + f"attn.W_{name}"] = W[:, i * d:(i + 1) * d].reshape(d, H, e).permute(1, 0, 2)
            out[q + f"attn.b_{name}"] = b[i * d:(i + 1) * d].reshape(H, e)
        out[q + "attn.W_O"] = take(sd, p + "attn.c_proj.weight").reshape(H, e, d)
        out[q + "attn.b_O"] = take(sd, p + "attn.c_proj.bias")
        if cfg.attn_only:
            for w in ("mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight"):
                if torch.count_nonzero(sd.get(p + w, torch.zeros(0))):
                    raise ValueError(f"the config says attn_only but {p + w} is not zero, so this MLP cannot be dropped")
            out[q + "attn.b_O"] = out[q + "attn.b_O"] + take(sd, p + "mlp.c_proj.bias")
            continue
        out[q + "ln2.w"], out[q + "ln2.b"] = take(sd, p + "ln_2.weight"), take(sd, p + "ln_2.bias")
        out[q + "mlp.W_in"], out[q + "mlp.b_in"] = take(sd, p + "mlp.c_fc.weight"), take(sd, p + "mlp.c_fc.bias")
        out[q + "mlp.W_out"], out[q + "mlp.b_out"] = take(sd, p + "mlp.c_proj.weight"), take(sd, p + "mlp.c_proj.bias")
    out["ln_final.w"], out["ln_final.b"] = take(sd, "ln_f.weight"), take(sd, "ln_f.bias")
    W_U = sd.get("lm_head.weight")
    if W_U is None:
        W_U = tied_unembed(out["embed.W_E"], hf)
    out["unembed.W_U"] = W_U.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=W_U.dtype)
    return out
