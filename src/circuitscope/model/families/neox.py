"""GPT-NeoX / Pythia (``GPTNeoXForCausalLM``): rotary on part of each head, parallel attention
and MLP (``use_parallel_residual``), untied unembedding.

The fused ``query_key_value`` weight is laid out head-major: ``[head, (q|k|v), d_head, d_model]``.
"""

from __future__ import annotations

import torch

from circuitscope.model.config import TransformerConfig
from circuitscope.model.families._common import maybe, rope_settings, strip_prefix, take, tied_unembed


def config_from_hf(hf) -> TransformerConfig:
    d_head = hf.hidden_size // hf.num_attention_heads
    rotary_dim, base = rope_settings(hf, d_head)
    return TransformerConfig(
        n_layers=hf.num_hidden_layers, d_model=hf.hidden_size, n_heads=hf.num_attention_heads, d_head=d_head,
        d_vocab=hf.vocab_size, n_ctx=hf.max_position_embeddings, d_mlp=hf.intermediate_size,
        act_fn=hf.hidden_act, normalization_type="LN", eps=hf.layer_norm_eps,
        positional_embedding_type="rotary", rotary_dim=rotary_dim, rotary_base=base,
        parallel_attn_mlp=bool(getattr(hf, "use_parallel_residual", True)),
        original_architecture="GPTNeoXForCausalLM",
    )


def convert(sd: dict[str, torch.Tensor], cfg: TransformerConfig, hf) -> dict[str, torch.Tensor]:
    sd = strip_prefix(sd, ("gpt_neox.",))
    H, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
    out = {"embed.W_E": take(sd, "embed_in.weight")}
    for l in range(cfg.n_layers):
        p, q = f"layers.{l}.", f"blocks.{l}."
        out[q + "ln1.w"], out[q + "ln1.b"] = take(sd, p + "input_layernorm.weight"), take(sd, p + "input_layernorm.bias")
        out[q + "ln2.w"] = take(sd, p + "post_attention_layernorm.weight")
        out[q + "ln2.b"] = take(sd, p + "post_attention_layernorm.bias")
        W = take(sd, p + "attention.query_key_value.weight").reshape(H, 3, e, d)
        b = maybe(sd, p + "attention.query_key_value.bias", (H, 3, e), W)
        for i, name in enumerate("QKV"):
            out[q + f"attn.W_{name}"] = W[:, i].permute(0, 2, 1)  # [head, d_model, d_head]
            out[q + f"attn.b_{name}"] = b[:, i]
        dense = take(sd, p + "attention.dense.weight")  # [d_model, head * d_head]
        out[q + "attn.W_O"] = dense.T.reshape(H, e, d)
        out[q + "attn.b_O"] = maybe(sd, p + "attention.dense.bias", (d,), dense)
        w_in = take(sd, p + "mlp.dense_h_to_4h.weight")
        out[q + "mlp.W_in"], out[q + "mlp.b_in"] = w_in.T, maybe(sd, p + "mlp.dense_h_to_4h.bias", (cfg.d_mlp,), w_in)
        w_out = take(sd, p + "mlp.dense_4h_to_h.weight")
        out[q + "mlp.W_out"], out[q + "mlp.b_out"] = w_out.T, maybe(sd, p + "mlp.dense_4h_to_h.bias", (d,), w_out)
    out["ln_final.w"], out["ln_final.b"] = take(sd, "final_layer_norm.weight"), take(sd, "final_layer_norm.bias")
    W_U = sd.get("embed_out.weight", sd.get("lm_head.weight"))  # transformers 5 names it lm_head in memory
    if W_U is None:
        W_U = tied_unembed(out["embed.W_E"], hf)
    out["unembed.W_U"] = W_U.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=W_U.dtype)
    return out
