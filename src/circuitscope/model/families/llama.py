"""LLaMA-style models (``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM``):
RMSNorm, rotary, gated SiLU MLP, grouped-query attention.

Grouped key/value heads are expanded so query head h gets its own copy of key/value head
``h // (n_heads / n_key_value_heads)`` (the same sharing HF's ``repeat_kv`` does).
"""

from __future__ import annotations

import torch

from circuitscope.model.config import TransformerConfig
from circuitscope.model.families._common import maybe, rope_settings, strip_prefix, take, tied_unembed


def config_from_hf(hf) -> TransformerConfig:
    d_head = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    rotary_dim, base = rope_settings(hf, d_head)
    window, layer_windows = sliding_windows(hf)
    return TransformerConfig(
        n_layers=hf.num_hidden_layers, d_model=hf.hidden_size, n_heads=hf.num_attention_heads, d_head=d_head,
        d_vocab=hf.vocab_size, n_ctx=hf.max_position_embeddings, d_mlp=hf.intermediate_size,
        n_key_value_heads=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
        act_fn=hf.hidden_act, normalization_type="RMS", eps=hf.rms_norm_eps,
        positional_embedding_type="rotary", rotary_dim=rotary_dim, rotary_base=base,
        gated_mlp=True, window_size=window, layer_windows=layer_windows,
        original_architecture=(hf.architectures or ["LlamaForCausalLM"])[0],
    )


def sliding_windows(hf) -> tuple:
    """``(window_size, layer_windows)``, as HF's attention reads them.

    Mistral slides one window over every layer. Qwen2 slides it only when ``use_sliding_window``
    is on, and then only in layers whose ``layer_types`` entry is ``"sliding_attention"`` (its
    config derives these from ``max_window_layers``: layers from that index on slide).
    """
    window = getattr(hf, "sliding_window", None)
    if hasattr(hf, "use_sliding_window") and not hf.use_sliding_window:
        window = None
    layer_types = getattr(hf, "layer_types", None)
    if window is None or layer_types is None:
        return window, None
    unknown = sorted(set(layer_types) - {"full_attention", "sliding_attention"})
    if unknown:
        raise ValueError(f"layer_types {unknown} are not supported (only full_attention and sliding_attention)")
    if len(layer_types) != hf.num_hidden_layers:
        raise ValueError(f"layer_types has {len(layer_types)} entries for {hf.num_hidden_layers} layers")
    return window, tuple(window if t == "sliding_attention" else None for t in layer_types)


def convert(sd: dict[str, torch.Tensor], cfg: TransformerConfig, hf) -> dict[str, torch.Tensor]:
    W_U = sd.get("lm_head.weight")
    sd = strip_prefix(sd, ("model.",))
    H, KV, d, e = cfg.n_heads, cfg.n_key_value_heads, cfg.d_model, cfg.d_head
    rep = H // KV
    out = {"embed.W_E": take(sd, "embed_tokens.weight")}
    for l in range(cfg.n_layers):
        p, q = f"layers.{l}.", f"blocks.{l}."
        out[q + "ln1.w"] = take(sd, p + "input_layernorm.weight")
        out[q + "ln2.w"] = take(sd, p + "post_attention_layernorm.weight")
        for name, proj, heads in (("Q", "q_proj", H), ("K", "k_proj", KV), ("V", "v_proj", KV)):
            w = take(sd, p + f"self_attn.{proj}.weight").reshape(heads, e, d).permute(0, 2, 1)
            b = maybe(sd, p + f"self_attn.{proj}.bias", (heads, e), w)
            if heads != H:
                w, b = w.repeat_interleave(rep, dim=0), b.repeat_interleave(rep, dim=0)
            out[q + f"attn.W_{name}"], out[q + f"attn.b_{name}"] = w, b
        o = take(sd, p + "self_attn.o_proj.weight")  # [d_model, head * d_head]
        out[q + "attn.W_O"] = o.T.reshape(H, e, d)
        out[q + "attn.b_O"] = maybe(sd, p + "self_attn.o_proj.bias", (d,), o)
        for ours, proj, size in (("W_gate", "gate_proj", cfg.d_mlp), ("W_in", "up_proj", cfg.d_mlp)):
            w = take(sd, p + f"mlp.{proj}.weight")
            out[q + f"mlp.{ours}"] = w.T
            out[q + f"mlp.b_{ours[2:]}"] = maybe(sd, p + f"mlp.{proj}.bias", (size,), w)
        w = take(sd, p + "mlp.down_proj.weight")
        out[q + "mlp.W_out"], out[q + "mlp.b_out"] = w.T, maybe(sd, p + "mlp.down_proj.bias", (d,), w)
    out["ln_final.w"] = take(sd, "norm.weight")
    if W_U is None:
        W_U = tied_unembed(out["embed.W_E"], hf)
    out["unembed.W_U"] = W_U.T
    out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=W_U.dtype)
    return out
