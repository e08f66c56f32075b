"""Text <-> token conveniences on the model (TransformerLens names and semantics)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from circuitscope import tokens as tok


class TokenAPI:
    """Mixin: needs ``self.tokenizer``, ``self.cfg`` and ``self.W_U``."""

    def set_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tok.prepare_tokenizer(tokenizer)

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(
                "this model has no tokenizer; load it with tokenizer=AutoTokenizer.from_pretrained(...) "
                "or call model.set_tokenizer(...), or pass token ids instead of text"
            )
        return self.tokenizer

    def to_tokens(
        self,
        input: Union[str, Sequence[str]],
        prepend_bos: Optional[bool] = None,
        padding_side: Optional[str] = None,
        truncate: bool = False,
        return_mask: bool = False,
    ):
        """Tokenize text into ``[batch, pos]`` ids, right-padded (so each prompt's real tokens keep
        their positions). ``return_mask=True`` also returns the ``[batch, pos]`` attention mask.

        The returned tensor remembers its mask, so ``model(model.to_tokens(texts))`` treats the
        padding exactly as ``model(texts)`` does (see :func:`circuitscope.tokens.attach_mask`).
        """
        tokenizer = self._require_tokenizer()
        if prepend_bos is None:
            prepend_bos = self.cfg.default_prepend_bos
        if not isinstance(prepend_bos, bool):
            raise TypeError(f"prepend_bos must be True, False or None (the model's default), got {prepend_bos!r}")
        if not isinstance(input, str) and not (isinstance(input, (list, tuple)) and all(isinstance(x, str) for x in input)):
            raise TypeError(f"to_tokens takes a string or a list of strings, got {type(input).__name__}")
        tokens, mask = tok.tokenize(
            tokenizer, input, prepend_bos=prepend_bos, padding_side=padding_side or "right",
            max_length=None if truncate else self.cfg.n_ctx,
        )
        if truncate:
            tokens, mask = tokens[:, : self.cfg.n_ctx], mask[:, : self.cfg.n_ctx]
        device = self.cfg.device
        tokens, mask = tokens.to(device), mask.to(device)
        if not bool(mask.all()):
            tok.attach_mask(tokens, mask)
        return (tokens, mask) if return_mask else tokens

    def to_string(self, tokens: Union[torch.Tensor, Sequence[int], int]) -> Union[str, list[str]]:
        """Decode ids: one sequence -> a string, a batch ``[batch, pos]`` -> a list of strings."""
        tokenizer = self._require_tokenizer()
        if isinstance(tokens, int):
            tokens = [tokens]
        t = _checked_ids(tokens, tokenizer, "to_string")
        if t.dim() == 2:
            return [tokenizer.decode(row.tolist()) for row in t]
        return tokenizer.decode(t.reshape(-1).tolist())

    def to_str_tokens(
        self, input: Union[str, torch.Tensor, Sequence[int]], prepend_bos: Optional[bool] = None
    ) -> Union[list[str], list[list[str]]]:
        """Each token as its own string, e.g. ``['<|endoftext|>', 'When', ' John', ...]``."""
        tokenizer = self._require_tokenizer()
        if isinstance(input, str):
            ids = self.to_tokens(input, prepend_bos=prepend_bos)[0].tolist()
            return tok.str_tokens(tokenizer, ids)
        if isinstance(input, list) and input and isinstance(input[0], str):
            return [self.to_str_tokens(s, prepend_bos=prepend_bos) for s in input]
        t = _checked_ids(input, tokenizer, "to_str_tokens")
        if t.dim() == 2:
            if t.shape[0] == 1:
                return tok.str_tokens(tokenizer, t[0].tolist())
            return [tok.str_tokens(tokenizer, row.tolist()) for row in t]
        return tok.str_tokens(tokenizer, t.reshape(-1).tolist())

    def to_single_token(self, string: str) -> int:
        """The id of a string that must be exactly one token (error showing the split otherwise)."""
        return tok.to_single_token(self._require_tokenizer(), string)

    def get_token_position(self, token: Union[str, int], input: Union[str, torch.Tensor], mode: str = "first") -> int:
        """Index of ``token`` in a single prompt (``mode`` "first" or "last")."""
        if mode not in ("first", "last"):
            raise ValueError(f"mode must be 'first' or 'last', got {mode!r}")
        ids = input if isinstance(input, torch.Tensor) else self.to_tokens(input)
        if ids.dim() > 2 or (ids.dim() == 2 and ids.shape[0] != 1):
            raise ValueError(f"get_token_position takes one prompt, got tokens of shape {tuple(ids.shape)}")
        ids = ids.reshape(-1)
        target = self.to_single_token(token) if isinstance(token, str) else int(token)
        hits = (ids == target).nonzero().flatten().tolist()
        if not hits:
            raise ValueError(f"token {token!r} does not occur in the input")
        return hits[0] if mode == "first" else hits[-1]

    def tokens_to_residual_directions(self, tokens: Union[str, int, torch.Tensor]) -> torch.Tensor:
        """Unembedding directions: a token id (or tensor of ids ``[*shape]``) -> ``[*shape, d_model]``.

        The dot product of the final (normalised) residual stream with this direction is that
        token's logit, minus the unembedding bias.
        """
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        t = torch.as_tensor(tokens, device=self.W_U.device)
        return self.W_U.T[t]

    def generate(self, input: Union[str, torch.Tensor], max_new_tokens: int = 10, temperature: float = 0.0,
                 generator: Optional[torch.Generator] = None) -> Union[str, torch.Tensor]:
        """Greedy (temperature 0) or sampled continuation of one prompt (a string, returning a
        string) or of a token batch ``[batch, pos]`` (returning ``[batch, pos + max_new_tokens]``),
        reusing keys/values of earlier tokens."""
        from circuitscope.model.kv_cache import KVCache

        if isinstance(input, (list, tuple)) and input and isinstance(input[0], str):
            raise TypeError(
                "generate takes one prompt (a string) or a token tensor; for several prompts call it "
                "once per prompt, or pass model.to_tokens(prompts, padding_side='left')"
            )
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0 (an int), got {max_new_tokens!r}")
        tokens = self.to_tokens(input) if isinstance(input, str) else torch.as_tensor(input)
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.shape[-1] + max_new_tokens > self.cfg.n_ctx:
            raise ValueError(
                f"the prompt is {tokens.shape[-1]} tokens and max_new_tokens={max_new_tokens}, past "
                f"{self.cfg.model_name}'s context of {self.cfg.n_ctx} tokens; ask for at most "
                f"{max(self.cfg.n_ctx - tokens.shape[-1], 0)} new tokens"
            )
        cache = KVCache.empty(self.cfg.n_layers)
        out, step_input = tokens, tokens
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = self(step_input, past_kv_cache=cache)[:, -1]  # [batch, vocab]
                if temperature <= 0:
                    nxt = logits.argmax(-1, keepdim=True)
                else:
                    probs = (logits / temperature).softmax(-1)
                    nxt = torch.multinomial(probs, 1, generator=generator)
                out = torch.cat([out, nxt], dim=1)
                step_input = nxt
        return self.to_string(out[0]) if isinstance(input, str) else out


def _checked_ids(ids, tokenizer, caller: str) -> torch.Tensor:
    """Token ids as a tensor, after checking they are integers the tokenizer can decode."""
    t = torch.as_tensor(ids)
    if t.is_floating_point():
        raise TypeError(f"{caller} needs integer token ids, got dtype {t.dtype}")
    n_vocab = len(tokenizer)
    bad = t[(t < 0) | (t >= n_vocab)]
    if bad.numel():
        raise ValueError(
            f"token ids {sorted(set(bad.tolist()))[:10]} lie outside the tokenizer's vocabulary of "
            f"{n_vocab} ids (0..{n_vocab - 1})"
        )
    return t
