"""Pack corpus text and repeated random token sequences into fixed-length training rows.

Batch ``step`` is a pure function of ``(seed, step)``, so a resumed run sees exactly the batches
an uninterrupted run would have seen, without saving any data-loader state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer

from circuitscope.organisms.corpus import paragraph

__all__ = ["DataMix", "make_batch", "random_repeat"]


@dataclass(frozen=True)
class DataMix:
    """How a training row is filled.

    ``pure_repeat``: fraction of rows that are ``[bos] r r (r ...)`` with ``r`` random tokens.
    ``repeat_doc``: probability that a document inside a text row is a repeated random sequence
    (so induction also happens mid-text). ``sentences``: weights of the sentence kinds.
    """

    pure_repeat: float = 0.1
    repeat_doc: float = 0.1
    sentences: dict[str, float] = field(
        default_factory=lambda: {"ioi": 0.5, "day": 0.15, "filler": 0.35})


def random_repeat(rng: random.Random, vocab_size: int, length: int, copies: int) -> list[int]:
    """``copies`` copies of ``length`` token ids drawn uniformly from the non-special vocab."""
    seq = [rng.randrange(1, vocab_size) for _ in range(length)]  # id 0 is <|endoftext|>
    return seq * copies


def _pure_repeat_row(rng: random.Random, vocab_size: int, seq_len: int) -> list[int]:
    length = rng.randint(5, (seq_len - 1) // 2)
    copies = (seq_len - 1) // length + 1  # the last copy is cut to fill the row exactly
    return ([0] + random_repeat(rng, vocab_size, length, copies))[:seq_len]


def _text_row(rng: random.Random, tok: Tokenizer, mix: DataMix, seq_len: int) -> list[int]:
    """Documents separated by <|endoftext|> (id 0), each preceded by it as a BOS would be."""
    vocab_size = tok.get_vocab_size()
    row: list[int] = []
    texts: list[str] = []
    slots: list[int | list[int]] = []  # index into ``texts`` or a ready token list
    approx = 0
    while approx < seq_len:
        if rng.random() < mix.repeat_doc:
            ids = random_repeat(rng, vocab_size, rng.randint(3, 25), rng.choice([2, 2, 3]))
            slots.append(ids)
            approx += len(ids) + 1
        else:
            texts.append(paragraph(rng, mix.sentences))
            slots.append(len(texts) - 1)
            approx += len(texts[-1]) // 4 + 1  # ~4 characters per token in this corpus
    encoded = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    for slot in slots:
        row += [0] + (slot if isinstance(slot, list) else encoded[slot])
    while len(row) < seq_len:  # the character estimate fell short: append one more document
        row += [0] + tok.encode(paragraph(rng, mix.sentences), add_special_tokens=False).ids
    return row[:seq_len]


def make_batch(
    tok: Tokenizer, mix: DataMix, seed: int, step: int, batch_size: int, seq_len: int
) -> torch.Tensor:
    """The training batch for ``step``: token ids ``[batch_size, seq_len]``."""
    rng = random.Random(seed * 1_000_003 + step)
    rows = []
    for _ in range(batch_size):
        if rng.random() < mix.pure_repeat:
            row = _pure_repeat_row(rng, tok.get_vocab_size(), seq_len)
        else:
            row = _text_row(rng, tok, mix, seq_len)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)  # [batch, seq_len]
