"""HookedTransformer: a decoder-only transformer with a hook point on every activation.

The forward pass reads top to bottom: embed tokens (and learned positions), run the blocks,
normalise, unembed. ``start_at_layer`` / ``stop_at_layer`` run a slice of the blocks, which is how
patching runs begin at the patched layer instead of recomputing the unchanged prefix.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from circuitscope.hooks import HookPoint
from circuitscope.model.block import TransformerBlock
from circuitscope.model.config import TransformerConfig
from circuitscope.model.embed import Embed, PosEmbed, Unembed
from circuitscope.model.hooked_module import HookedRootModule
from circuitscope.model.kv_cache import KVCache
from circuitscope.model.norms import make_norm
from circuitscope.model.token_api import TokenAPI
from circuitscope.model.weight_views import WeightViews

logger = logging.getLogger(__name__)

_RETURN_TYPES = ("logits", "loss", "both", None)


class HookedTransformer(TokenAPI, WeightViews, HookedRootModule):
    """A transformer language model instrumented for interpretability.

    Build one with :meth:`from_pretrained` (Hugging Face checkpoints, shipped organisms) or
    directly from a :class:`TransformerConfig` (random weights).
    """

    def __init__(self, cfg: TransformerConfig, tokenizer=None) -> None:
        super().__init__()
        self.cfg = cfg
        self.set_tokenizer(tokenizer)
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional_embedding_type == "standard":
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList([TransformerBlock(cfg, layer) for layer in range(cfg.n_layers)])
        self.ln_final = make_norm(cfg)
        self.unembed = Unembed(cfg)
        self.setup_hooks()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Random weights for a model built from a config (GPT-2-style init, torch's global RNG):
        matrices ~ N(0, std), biases 0, norm gains 1. Loading a checkpoint overwrites them."""
        for name, p in self.named_parameters():
            if p.is_meta:
                continue
            if name.endswith(".w"):
                p.fill_(1.0)
            elif p.dim() == 1 or name.split(".")[-1].startswith("b_"):
                p.zero_()
            else:
                p.normal_(0.0, std)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: Union[str, list[str], torch.Tensor],
        return_type: Optional[str] = "logits",
        loss_per_token: bool = False,
        prepend_bos: Optional[bool] = None,
        padding_side: Optional[str] = None,
        start_at_layer: Optional[int] = None,
        stop_at_layer: Optional[int] = None,
        attention_mask: Optional[torch.Tensor] = None,
        tokens: Optional[torch.Tensor] = None,
        past_kv_cache: Optional[KVCache] = None,
        logit_positions: Optional[torch.Tensor] = None,
    ):
        """Run the model.

        ``input`` is text, a list of texts, tokens ``[batch, pos]``, or — with ``start_at_layer=L`` —
        the residual stream ``[batch, pos, d_model]`` entering block L. ``stop_at_layer=L`` returns
        the residual stream entering block L instead of logits. ``attention_mask`` ``[batch, pos]``
        (1 = real token) is only needed for left-padded batches; ``tokens`` lets a run that starts
        mid-model still compute the loss. ``logit_positions`` ``[batch]`` (one position per prompt,
        e.g. a task's ``answer_pos``) unembeds only there and returns logits ``[batch, d_vocab]``:
        the unembedding is the largest matrix in small models, and a metric rarely reads more.
        """
        if return_type not in _RETURN_TYPES:
            raise ValueError(f"return_type must be one of {_RETURN_TYPES}, got {return_type!r}")
        if isinstance(input, (str, list)):
            input, attention_mask = self.to_tokens(
                input, prepend_bos=prepend_bos, padding_side=padding_side, return_mask=True
            )
        if start_at_layer is None:
            tokens = self._check_tokens(input)
            resid, positions, mask = self._embed(tokens, attention_mask, past_kv_cache)
            start_at_layer = 0
        else:
            resid = input
            if resid.dim() != 3 or resid.shape[-1] != self.cfg.d_model:
                raise ValueError(
                    f"with start_at_layer the input must be the residual stream [batch, pos, "
                    f"{self.cfg.d_model}], got shape {tuple(resid.shape)}"
                )
            positions, mask = self._positions_and_mask(resid, attention_mask, past_kv_cache)

        for layer in range(start_at_layer, self.cfg.n_layers if stop_at_layer is None else stop_at_layer):
            past = past_kv_cache.layers[layer] if past_kv_cache is not None else None
            resid = self.blocks[layer](resid, positions, mask, past)  # [batch, pos, d_model]
        if stop_at_layer is not None:
            return resid

        if return_type is None:
            return None
        if logit_positions is not None:
            if return_type != "logits":
                raise ValueError("logit_positions returns logits at those positions only; use return_type='logits'")
            rows = torch.as_tensor(logit_positions, device=resid.device).expand(resid.shape[0])
            resid = resid[torch.arange(resid.shape[0], device=resid.device), rows]  # [batch, d_model]
            return self.unembed(self.ln_final(resid))  # [batch, d_vocab]
        logits = self.unembed(self.ln_final(resid))  # [batch, pos, d_vocab]
        if return_type == "logits":
            return logits
        if tokens is None:
            raise ValueError("the loss needs the tokens: pass tokens=... when starting mid-model")
        loss = lm_loss(logits, tokens, attention_mask, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError("tokens must be an integer tensor [batch, pos]; use model.to_tokens(text)")
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"the input is {tokens.shape[1]} tokens long but {self.cfg.model_name} has a context "
                f"of {self.cfg.n_ctx} tokens; truncate the prompt or split it"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab):
            raise ValueError(
                f"token ids must lie in [0, {self.cfg.d_vocab}); got ids from {int(tokens.min())} "
                f"to {int(tokens.max())}"
            )
        return tokens.to(self.embed.W_E.device)

    def _positions_and_mask(self, x: torch.Tensor, attention_mask, past_kv_cache):
        """Absolute positions [batch, pos] and the boolean attention mask [batch, 1, q, k] (or None
        for a plain causal mask, which lets attention use its fastest kernel)."""
        batch, n_new = x.shape[0], x.shape[1]
        past_len = past_kv_cache.length if past_kv_cache is not None else 0
        window = self.cfg.window_size
        if attention_mask is None and past_kv_cache is None:
            positions = torch.arange(n_new, device=x.device).expand(batch, -1)
            if window is None or n_new <= window:
                return positions, None
            key_mask = torch.ones(batch, n_new, dtype=torch.long, device=x.device)
        else:
            if attention_mask is None:
                attention_mask = torch.ones(batch, n_new, dtype=torch.long, device=x.device)
            attention_mask = attention_mask.to(x.device)
            key_mask = past_kv_cache.extend_mask(attention_mask) if past_kv_cache is not None else attention_mask
            positions = (key_mask.cumsum(-1) - 1).clamp(min=0)[:, past_len:]
        n_keys = key_mask.shape[1]
        q_idx = torch.arange(past_len, past_len + n_new, device=x.device)[:, None]
        k_idx = torch.arange(n_keys, device=x.device)[None, :]
        allowed = (k_idx <= q_idx)[None] & key_mask.bool()[:, None, :]  # [batch, q, k]
        if window is not None:
            allowed &= (q_idx - k_idx < window)[None]
        allowed |= k_idx == q_idx  # a padding query attends to itself, so no row is empty (no NaN)
        return positions, allowed[:, None]

    def _embed(self, tokens, attention_mask, past_kv_cache):
        positions, mask = self._positions_and_mask(tokens, attention_mask, past_kv_cache)
        resid = self.hook_embed(self.embed(tokens))  # [batch, pos, d_model]
        if self.cfg.positional_embedding_type == "standard":
            resid = resid + self.hook_pos_embed(self.pos_embed(positions))  # [batch, pos, d_model]
        return resid, positions, mask

    def _opt_in_enabled(self, name: str) -> bool:
        c = self.cfg
        return (
            (name.endswith("attn.hook_result") and c.use_attn_result)
            or (name.endswith(("hook_q_input", "hook_k_input", "hook_v_input")) and c.use_split_qkv_input)
            or (name.endswith("hook_mlp_in") and c.use_hook_mlp_in)
            or (name.endswith("hook_attn_in") and c.use_attn_in)
        )

    # ------------------------------------------------------------------ config flags
    def set_use_attn_result(self, use: bool) -> None:
        self.cfg.use_attn_result = use

    def set_use_split_qkv_input(self, use: bool) -> None:
        self.cfg.use_split_qkv_input = use

    def set_use_hook_mlp_in(self, use: bool) -> None:
        self.cfg.use_hook_mlp_in = use

    def set_use_attn_in(self, use: bool) -> None:
        self.cfg.use_attn_in = use

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_name: str, **kwargs) -> "HookedTransformer":
        """Load a Hugging Face checkpoint (local folder, hub name, shipped organism, or
        ``hf_model=``) and process its weights; see :func:`circuitscope.model.loading.load_pretrained`."""
        from circuitscope.model.loading import load_pretrained

        return load_pretrained(cls, model_name, **kwargs)

    @classmethod
    def from_pretrained_no_processing(cls, model_name: str, **kwargs) -> "HookedTransformer":
        """Load a checkpoint with its weights exactly as trained (logits equal to Hugging Face's)."""
        for flag in ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases"):
            kwargs.setdefault(flag, False)
        kwargs.setdefault("refactor_factored_attn_matrices", False)
        return cls.from_pretrained(model_name, **kwargs)

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"HookedTransformer({c.model_name}: {c.n_layers} layers, {c.n_heads} heads, "
            f"d_model={c.d_model}, d_vocab={c.d_vocab}, n_ctx={c.n_ctx}, {len(self.hook_dict)} hook points)"
        )


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor, attention_mask=None, per_token: bool = False):
    """Next-token cross-entropy: logits [batch, pos, vocab], tokens [batch, pos] -> scalar or [batch, pos-1]."""
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -log_probs.gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0]  # [batch, pos - 1]
    if per_token:
        return nll
    if attention_mask is not None:
        m = attention_mask[:, 1:].to(nll.device).float()
        return (nll * m).sum() / m.sum()
    return nll.mean()
