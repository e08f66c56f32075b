"""Tokenizer helpers shared by the model and the task builders.

Everything here works on a Hugging Face tokenizer (``PreTrainedTokenizerBase`` or anything with
the same ``__call__``/``decode``/``convert_ids_to_tokens`` methods). BOS is prepended by us, not by
the tokenizer, so that ``prepend_bos`` means the same thing for every family (LLaMA tokenizers add
one themselves, GPT-2's never do).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "prepare_tokenizer",
    "tokenize",
    "to_single_token",
    "str_tokens",
    "bos_token_id",
    "attach_mask",
    "attached_mask",
]

_MASK_ATTR = "_circuitscope_attention_mask"


def prepare_tokenizer(tokenizer):
    """Give a tokenizer a pad token if it has none (reusing EOS, as GPT-2 users always do)."""
    if tokenizer is None:
        return None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.bos_token is not None:
            tokenizer.pad_token = tokenizer.bos_token
    return tokenizer


def bos_token_id(tokenizer) -> int:
    """The token put in front of prompts: BOS, or EOS for tokenizers (GPT-2) that reuse it."""
    tid = tokenizer.bos_token_id
    if tid is None:
        tid = tokenizer.eos_token_id
    if tid is None:
        raise ValueError(
            "this tokenizer has neither a BOS nor an EOS token, so prepend_bos=True cannot work; "
            "pass prepend_bos=False"
        )
    return int(tid)


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize(
    tokenizer,
    texts: str | Sequence[str],
    prepend_bos: bool = True,
    padding_side: str = "right",
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize one or many strings into a padded batch.

    Returns ``(tokens, attention_mask)``, both ``[batch, pos]`` (mask is 1 on real tokens).
    Right padding (the default) keeps every real token at the position it would have alone, so a
    causal model gives the same activations as when each prompt is run by itself.
    """
    if tokenizer is None:
        raise ValueError("this model has no tokenizer; pass tokenizer= when loading it")
    if isinstance(texts, str):
        texts = [texts]
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    seqs = []
    for text in texts:
        ids = _encode(tokenizer, text)
        if prepend_bos:
            ids = [bos_token_id(tokenizer)] + ids
        seqs.append(ids)
    if not seqs:
        raise ValueError("tokenize got an empty list of strings")
    width = max(len(s) for s in seqs)
    if width == 0:
        raise ValueError("every string tokenized to nothing (empty prompt with prepend_bos=False)")
    if max_length is not None and width > max_length:
        longest = max(range(len(seqs)), key=lambda i: len(seqs[i]))
        raise ValueError(
            f"prompt {longest} is {width} tokens long but the model's context is {max_length} "
            "tokens; shorten it or split it"
        )
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = bos_token_id(tokenizer)
    tokens = torch.full((len(seqs), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if padding_side == "right":
            tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        elif len(s):
            tokens[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return tokens, mask


def attach_mask(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Remember ``mask`` ``[batch, pos]`` on the ``tokens`` tensor itself, so that feeding these
    tokens back to the model (``model(model.to_tokens(texts))``) ignores their padding exactly as
    ``model(texts)`` does. Only this tensor object carries it: a slice or copy does not (the model
    then reads padding off the pad token instead). Returns ``tokens``."""
    setattr(tokens, _MASK_ATTR, mask)
    return tokens


def attached_mask(tokens: torch.Tensor):
    """The mask :func:`attach_mask` put on ``tokens`` if it still fits their shape, else None."""
    mask = getattr(tokens, _MASK_ATTR, None)
    if mask is None or tuple(mask.shape) != tuple(tokens.shape):
        return None
    return mask


def to_single_token(tokenizer, string: str) -> int:
    """The id of ``string`` if it is exactly one token; otherwise a ValueError showing the split."""
    ids = _encode(tokenizer, string)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        shown = [tokenizer.decode([i]) for i in ids]
        raise ValueError(
            f"{string!r} is not a single token: it splits into {len(ids)} tokens {shown} "
            f"(ids {ids}, pieces {pieces}). Answers must be single tokens; check the leading "
            "space (' Mary' vs 'Mary') or pick another word."
        )
    return ids[0]


def str_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own, so the pieces concatenate back to the text."""
    return [tokenizer.decode([int(i)]) for i in ids]
