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
from circuitscope.model.inputs import as_tokens, check_attention_mask, resolve_layer_range
from circuitscope.model.kv_cache import KVCache
from circuitscope.model.masking import has_left_padding, padding_mask_from_tokens, positions_and_masks
from circuitscope.model.norms import make_norm
from circuitscope.model.token_api import TokenAPI
from circuitscope.model.weight_views import WeightViews
from circuitscope.tokens import attached_mask

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
        self.hook_tokens = HookPoint(opt_in=True)  # [batch, pos] token ids (TransformerLens' use_hook_tokens)
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
        the residual stream entering block L instead of logits; negative L counts from the end, as
        in Python and TransformerLens (``stop_at_layer=-1``: every block but the last).

        Padding: ``attention_mask`` ``[batch, pos]`` (1 = real token) is rarely needed. Tokens from
        ``to_tokens`` carry their mask, and other token tensors have leading pad tokens read as
        left padding (see :mod:`circuitscope.model.masking`). Right padding runs the plain causal
        mask (real positions are exact); the loss never scores padding. ``tokens`` lets a run that
        starts mid-model still compute the loss. ``logit_positions`` ``[batch]`` (one position per prompt,
        e.g. a task's ``answer_pos``) unembeds only there and returns logits ``[batch, d_vocab]``:
        the unembedding is the largest matrix in small models, and a metric rarely reads more.
        """
        if return_type not in _RETURN_TYPES:
            raise ValueError(f"return_type must be one of {_RETURN_TYPES}, got {return_type!r}")
        first, end = resolve_layer_range(start_at_layer, stop_at_layer, self.cfg.n_layers)
        if isinstance(input, str) or (isinstance(input, (list, tuple)) and input and isinstance(input[0], str)):
            input, attention_mask = self.to_tokens(
                input, prepend_bos=prepend_bos, padding_side=padding_side, return_mask=True
            )
        if attention_mask is None:  # the mask to_tokens attached, before any copy drops it
            source = input if start_at_layer is None else tokens
            attention_mask = attached_mask(source) if isinstance(source, torch.Tensor) else None
        if start_at_layer is None:
            tokens = as_tokens(input, self.cfg).to(self.embed.W_E.device)
            padding = self._padding_mask(tokens, attention_mask, past_kv_cache)
            resid, positions, masks = self._embed(tokens, self._forward_mask(padding, past_kv_cache), past_kv_cache)
        else:
            resid = input
            if not isinstance(resid, torch.Tensor) or resid.dim() != 3 or resid.shape[-1] != self.cfg.d_model:
                raise ValueError(
                    f"with start_at_layer the input must be the residual stream [batch, pos, "
                    f"{self.cfg.d_model}], got {tuple(resid.shape) if isinstance(resid, torch.Tensor) else type(resid).__name__}"
                )
            if tokens is not None:
                tokens = as_tokens(tokens, self.cfg)
            padding = self._padding_mask(tokens if tokens is not None else resid[..., 0], attention_mask, past_kv_cache)
            positions, masks = self._positions_and_masks(resid, self._forward_mask(padding, past_kv_cache), past_kv_cache)

        for layer in range(first, end):
            past = past_kv_cache.layers[layer] if past_kv_cache is not None else None
            mask = masks[self.cfg.window_for(layer)]  # [batch, 1, q, k] or None (plain causal)
            resid = self.blocks[layer](resid, positions, mask, past)  # [batch, pos, d_model]
        if stop_at_layer is not None:
            return resid

        if return_type is None:
            return None
        if logit_positions is not None:
            if return_type != "logits":
                raise ValueError("logit_positions returns logits at those positions only; use return_type='logits'")
            rows = torch.as_tensor(logit_positions, device=resid.device).expand(resid.shape[0])
            if rows.is_floating_point() or bool(((rows < -resid.shape[1]) | (rows >= resid.shape[1])).any()):
                raise ValueError(f"logit_positions must be integer positions within the {resid.shape[1]}-token input, got {rows.tolist()}")
            resid = resid[torch.arange(resid.shape[0], device=resid.device), rows]  # [batch, d_model]
            return self.unembed(self.ln_final(resid))  # [batch, d_vocab]
        logits = self.unembed(self.ln_final(resid))  # [batch, pos, d_vocab]
        if return_type == "logits":
            return logits
        if tokens is None:
            raise ValueError("the loss needs the tokens: pass tokens=... when starting mid-model")
        if tokens.shape[1] < 2:
            raise ValueError("the loss needs at least 2 tokens per prompt (it scores next-token predictions)")
        loss = lm_loss(logits, tokens, padding, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def _padding_mask(self, tokens: torch.Tensor, attention_mask, past_kv_cache) -> Optional[torch.Tensor]:
        """The ``[batch, pos]`` padding mask (1 = real token) of this call's tokens, or None when
        there is no padding: the ``attention_mask`` argument (or the mask ``to_tokens`` attached to
        the tensor), else one read off the pad token (see :mod:`circuitscope.model.masking`).
        Tokens that continue a key/value cache are never guessed at (a generated EOS is text)."""
        batch, n_pos = tokens.shape[0], tokens.shape[1]
        if attention_mask is not None:
            return check_attention_mask(attention_mask, batch, n_pos).to(tokens.device)
        if tokens.is_floating_point():  # a residual stream with no tokens given
            return None
        continuing = past_kv_cache is not None and past_kv_cache.length > 0
        pad_id = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        if continuing or pad_id is None:
            return None
        return padding_mask_from_tokens(tokens, pad_id, getattr(self.tokenizer, "bos_token_id", None))

    def attention_mask_for(self, tokens: torch.Tensor, attention_mask=None) -> Optional[torch.Tensor]:
        """The ``[batch, pos]`` padding mask attention will apply to ``tokens``, or None when it
        runs the plain causal mask (no padding, or right padding only)."""
        if attention_mask is None:
            attention_mask = attached_mask(tokens)
        tokens = as_tokens(tokens, self.cfg)
        return self._forward_mask(self._padding_mask(tokens, attention_mask, None), None)

    @staticmethod
    def _forward_mask(padding: Optional[torch.Tensor], past_kv_cache) -> Optional[torch.Tensor]:
        """The mask attention needs: none for right padding (a causal model never looks right, so
        real positions are exact under the plain causal mask and its fused kernel)."""
        if past_kv_cache is None and not has_left_padding(padding):
            return None
        return padding

    def _positions_and_masks(self, x: torch.Tensor, attention_mask, past_kv_cache):
        """Absolute positions [batch, pos] and a mask per sliding-window size used by the layers
        ({window: [batch, 1, q, k] bool, or None for the plain causal mask}); a layer reads
        ``masks[cfg.window_for(layer)]``."""
        if past_kv_cache is not None and past_kv_cache.length + x.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"{past_kv_cache.length} cached + {x.shape[1]} new tokens exceed {self.cfg.model_name}'s "
                f"context of {self.cfg.n_ctx} tokens"
            )
        windows = [self.cfg.window_for(layer) for layer in range(self.cfg.n_layers)]
        return positions_and_masks(x.shape[0], x.shape[1], x.device, attention_mask, past_kv_cache, windows)

    def _positions_and_mask(self, x: torch.Tensor, attention_mask, past_kv_cache):
        """Positions and the one mask every layer shares (models without per-layer windows)."""
        if len({self.cfg.window_for(layer) for layer in range(self.cfg.n_layers)}) > 1:
            raise ValueError("this model's layers use different attention windows; use _positions_and_masks")
        positions, masks = self._positions_and_masks(x, attention_mask, past_kv_cache)
        return positions, masks[self.cfg.window_for(0)]

    def _embed(self, tokens, attention_mask, past_kv_cache):
        positions, masks = self._positions_and_masks(tokens, attention_mask, past_kv_cache)
        tokens = self.hook_tokens(tokens)  # [batch, pos]; free unless a hook is attached
        resid = self.hook_embed(self.embed(tokens))  # [batch, pos, d_model]
        if self.cfg.positional_embedding_type == "standard":
            resid = resid + self.hook_pos_embed(self.pos_embed(positions))  # [batch, pos, d_model]
        return resid, positions, masks

    def _opt_in_enabled(self, name: str) -> bool:
        c = self.cfg
        return (
            (name.endswith("attn.hook_result") and c.use_attn_result)
            or (name.endswith(("hook_q_input", "hook_k_input", "hook_v_input")) and c.use_split_qkv_input)
            or (name.endswith("hook_mlp_in") and c.use_hook_mlp_in)
            or (name.endswith("hook_attn_in") and c.use_attn_in)
            or (name == "hook_tokens" and getattr(c, "use_hook_tokens", False))
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
    """Next-token cross-entropy: logits [batch, pos, vocab], tokens [batch, pos] -> scalar or [batch, pos-1].

    With a padding mask [batch, pos], a prediction counts only when both the position predicting
    and the token predicted are real: the mean runs over those, and ``per_token`` is 0 elsewhere.
    """
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -log_probs.gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0]  # [batch, pos - 1]
    if attention_mask is None:
        return nll if per_token else nll.mean()
    mask = attention_mask.to(nll.device).bool()
    scored = (mask[:, :-1] & mask[:, 1:]).float()  # [batch, pos - 1]
    if per_token:
        return nll * scored
    return (nll * scored).sum() / scored.sum()
