"""Weight rewrites that keep the model's predictions but make its internals easier to read.

* ``fold_layer_norm``: a norm's weight (and bias) is a fixed linear map right before the next
  linear layer, so it can be multiplied into that layer; the norm keeps only its normalisation
  (LN -> LNPre, RMS -> RMSPre). For LayerNorm the reading weights are also centred: their input is
  already mean-free, so their mean over d_model never mattered.
* ``center_writing_weights``: everything written into the residual stream loses its mean over
  d_model. Every reader is a LayerNorm, which subtracts that mean anyway.
* ``center_unembed``: subtracting the mean over the vocabulary shifts every logit at a position
  by the same amount: log-probabilities do not change.
* ``fold_value_biases``: each attention row sums to 1, so the value bias of a head always adds
  exactly ``b_V @ W_O`` to the output; it moves into ``b_O``.
* ``refactor_factored_attn_matrices``: rewrite W_Q/W_K (and W_V/W_O) so that each pair is an SVD
  of its product (same ``QK`` and ``OV``, balanced column norms, orthogonal columns).

All functions take and return our state dict (``blocks.{l}.attn.W_Q`` etc.) and a config.
"""

from __future__ import annotations

import torch

from circuitscope.model.config import TransformerConfig


def _layers(cfg: TransformerConfig):
    return range(cfg.n_layers)


def fold_layer_norm(sd: dict, cfg: TransformerConfig) -> tuple[dict, TransformerConfig]:
    if cfg.normalization_type not in ("LN", "RMS"):
        return sd, cfg
    is_ln = cfg.normalization_type == "LN"

    def fold(norm: str, readers: list[tuple[str, str | None]]) -> None:
        w = sd.pop(f"{norm}.w")
        b = sd.pop(f"{norm}.b") if is_ln else None
        for W_key, b_key in readers:
            W = sd[W_key]  # [..., d_model, out]; d_model is the second-to-last axis
            if b is not None and b_key is not None:
                sd[b_key] = sd[b_key] + (b[:, None] * W).sum(-2)
            W = W * w[:, None]
            if is_ln:
                W = W - W.mean(-2, keepdim=True)
            sd[W_key] = W

    for l in _layers(cfg):
        q = f"blocks.{l}."
        fold(q + "ln1", [(q + f"attn.W_{n}", q + f"attn.b_{n}") for n in "QKV"])
        if not cfg.attn_only:
            readers = [(q + "mlp.W_in", q + "mlp.b_in")]
            if cfg.gated_mlp:
                readers.append((q + "mlp.W_gate", q + "mlp.b_gate"))
            fold(q + "ln2", readers)
    fold("ln_final", [("unembed.W_U", "unembed.b_U")])
    return sd, cfg.replace(normalization_type="LNPre" if is_ln else "RMSPre")


def center_writing_weights(sd: dict, cfg: TransformerConfig) -> dict:
    if cfg.normalization_type not in ("LN", "LNPre"):
        return sd  # only a mean-subtracting reader makes this exact
    def center(key: str) -> None:
        sd[key] = sd[key] - sd[key].mean(-1, keepdim=True)

    center("embed.W_E")
    if "pos_embed.W_pos" in sd:
        center("pos_embed.W_pos")
    for l in _layers(cfg):
        q = f"blocks.{l}."
        center(q + "attn.W_O")
        center(q + "attn.b_O")
        if not cfg.attn_only:
            center(q + "mlp.W_out")
            center(q + "mlp.b_out")
    return sd


def center_unembed(sd: dict, cfg: TransformerConfig) -> dict:
    sd["unembed.W_U"] = sd["unembed.W_U"] - sd["unembed.W_U"].mean(-1, keepdim=True)
    sd["unembed.b_U"] = sd["unembed.b_U"] - sd["unembed.b_U"].mean()
    return sd


def fold_value_biases(sd: dict, cfg: TransformerConfig) -> dict:
    for l in _layers(cfg):
        q = f"blocks.{l}.attn."
        b_V, W_O = sd[q + "b_V"], sd[q + "W_O"]  # [head, d_head], [head, d_head, d_model]
        sd[q + "b_O"] = sd[q + "b_O"] + torch.einsum("he,hed->d", b_V, W_O)
        sd[q + "b_V"] = torch.zeros_like(b_V)
    return sd


def refactor_factored_attn_matrices(sd: dict, cfg: TransformerConfig) -> dict:
    if cfg.positional_embedding_type == "rotary":
        raise ValueError(
            "refactor_factored_attn_matrices does not preserve rotary models (rotation sits between "
            "W_Q and W_K); load with refactor_factored_attn_matrices=False"
        )
    from circuitscope.model.factored_matrix import FactoredMatrix

    for l in _layers(cfg):
        q = f"blocks.{l}.attn."
        # Append the bias as an extra input row so QK includes it: [head, d_model + 1, d_head].
        W_Q = torch.cat([sd[q + "W_Q"], sd[q + "b_Q"][:, None, :]], dim=1)
        W_K = torch.cat([sd[q + "W_K"], sd[q + "b_K"][:, None, :]], dim=1)
        A, B = FactoredMatrix(W_Q, W_K.transpose(-1, -2)).make_even().pair
        K = B.transpose(-1, -2)
        sd[q + "W_Q"], sd[q + "b_Q"] = A[:, :-1, :], A[:, -1, :]
        sd[q + "W_K"], sd[q + "b_K"] = K[:, :-1, :], K[:, -1, :]

        b_V, W_O = sd[q + "b_V"], sd[q + "W_O"]
        sd[q + "b_O"] = sd[q + "b_O"] + torch.einsum("he,hed->d", b_V, W_O)
        sd[q + "b_V"] = torch.zeros_like(b_V)
        A, B = FactoredMatrix(sd[q + "W_V"], W_O).make_even().pair
        sd[q + "W_V"], sd[q + "W_O"] = A, B
    return sd


def process_weights(
    sd: dict,
    cfg: TransformerConfig,
    fold_ln: bool = True,
    center_writing: bool = True,
    center_unembed_: bool = True,
    fold_value_biases_: bool = True,
    refactor_factored_attn_matrices_: bool = False,
) -> tuple[dict, TransformerConfig]:
    """Apply the chosen rewrites in the order that keeps each one exact."""
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}  # fold in float64
    if fold_ln:
        sd, cfg = fold_layer_norm(sd, cfg)
    if center_writing:
        sd = center_writing_weights(sd, cfg)
    if center_unembed_:
        sd = center_unembed(sd, cfg)
    if fold_value_biases_:
        sd = fold_value_biases(sd, cfg)
    if refactor_factored_attn_matrices_:
        sd = refactor_factored_attn_matrices(sd, cfg)
    return sd, cfg
