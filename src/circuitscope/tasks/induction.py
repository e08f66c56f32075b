"""Induction on repeated random tokens: ``BOS A A`` with corruptions ``AB``, ``BA``, ``BB``, ``BC``.

A, B and C are independent random sequences of ``seq_len`` tokens. On the clean run the second
copy of A is predictable by induction (find the earlier occurrence of the current token, copy
what followed it). The corruptions separate what an induction head needs:

* ``AB``: same first half, unrelated second half: the predictions have nothing to copy.
* ``BA``: the first half differs, so keys *and* values of the earlier copy are wrong.
* ``BB``: still a repeat, of other tokens: the mechanism works, the content differs.
* ``BC``: no repetition at all.

The metric is the mean log-probability of the clean second copy (``task.span``), see
``metrics.span_log_prob``; the first token of the second copy is left out as unpredictable.
"""

from __future__ import annotations

from typing import Sequence

import torch

from circuitscope.tasks.checks import check_count, check_flag, check_text
from circuitscope.tasks.task import Task, as_tokenizer
from circuitscope.tokens import bos_token_id

__all__ = ["induction_task", "default_token_pool", "INDUCTION_CORRUPTIONS"]

INDUCTION_CORRUPTIONS = ("AB", "BA", "BB", "BC")


def default_token_pool(tokenizer) -> torch.Tensor:
    """Every non-special token id of the tokenizer: ``[n_tokens]``."""
    special = set(int(i) for i in tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)


def _as_pool(token_pool, vocab_size: int) -> torch.Tensor:
    """``token_pool`` as a flat long tensor of valid ids with at least two distinct tokens."""
    if isinstance(token_pool, (str, bytes)):
        raise TypeError("token_pool must be token ids (a list or tensor of ints), not a string")
    pool = torch.as_tensor(token_pool)
    if pool.is_floating_point() or pool.dtype == torch.bool:
        raise TypeError(f"token_pool must hold integer token ids, got dtype {pool.dtype}")
    pool = pool.long().flatten()
    if pool.numel() and (int(pool.min()) < 0 or int(pool.max()) >= vocab_size):
        raise ValueError(f"token_pool ids must lie in [0, {vocab_size}) (the tokenizer's vocabulary)")
    if len(pool.unique()) < 2:
        raise ValueError(
            f"token_pool has {len(pool.unique())} distinct token(s) but needs at least 2: the correct "
            "answer (A's first token) and the incorrect one (A's last token) would always be the "
            "same token, so every logit difference would be 0"
        )
    return pool


def _separate_answers(a: torch.Tensor, pool: torch.Tensor, gen: torch.Generator) -> None:
    """Redraw A's last token (in place) where it equals A's first: the answers must differ.

    Only those rows change, so for a large pool nearly every seed gives the same task as a plain
    uniform draw; for a small pool, many rows would otherwise score a logit difference of 0.
    """
    for i in (a[:, 0] == a[:, -1]).nonzero().flatten().tolist():
        others = pool[pool != a[i, 0]]
        a[i, -1] = others[int(torch.randint(len(others), (1,), generator=gen))]


def induction_task(
    tokenizer_or_model,
    seq_len: int = 20,
    batch: int = 8,
    corruption: str = "AB",
    seed: int = 0,
    token_pool: Sequence[int] | torch.Tensor | None = None,
    prepend_bos: bool = True,
) -> Task:
    """Clean ``[BOS] A A`` against a corruption built from the letters in ``corruption``.

    Tokens are drawn uniformly (with replacement) from ``token_pool``, by default the tokenizer's
    whole non-special vocabulary, with a ``torch.Generator`` seeded by ``seed``; where A's last
    token equals its first it is redrawn, so the two answers always differ. Positions:
    "first_start" and "repeat_start" (first token of each half) and "end". ``answer_tokens`` are
    (A's first token, A's last token): at the last position induction predicts the token that
    followed A's end in the first copy, i.e. A's start, over repeating the current token.
    """
    tokenizer = as_tokenizer(tokenizer_or_model)
    corruption = check_text(corruption, "corruption").upper()
    if len(corruption) != 2 or set(corruption) - set("ABC"):
        raise ValueError(f"corruption must be two letters from A, B, C such as {INDUCTION_CORRUPTIONS}, got {corruption!r}")
    if corruption == "AA":
        raise ValueError("corruption 'AA' is the clean sequence itself; use one of " + ", ".join(INDUCTION_CORRUPTIONS))
    seq_len, batch = check_count(seq_len, "seq_len", 2), check_count(batch, "batch")
    prepend_bos = check_flag(prepend_bos, "prepend_bos")
    pool = default_token_pool(tokenizer) if token_pool is None else _as_pool(token_pool, len(tokenizer))
    gen = torch.Generator().manual_seed(seed)
    seqs = {letter: pool[torch.randint(len(pool), (batch, seq_len), generator=gen)] for letter in "ABC"}
    _separate_answers(seqs["A"], pool, gen)
    same = [i for i in range(batch) if torch.equal(seqs[corruption[0]][i], seqs["A"][i]) and torch.equal(seqs[corruption[1]][i], seqs["A"][i])]
    if same:
        raise ValueError(
            f"the corrupted sequence of prompt(s) {same[:10]} is identical to the clean one: token_pool "
            f"has only {len(pool.unique())} distinct tokens for seq_len={seq_len}; use a larger pool "
            "or longer sequences"
        )
    prefix = torch.full((batch, int(prepend_bos)), bos_token_id(tokenizer) if prepend_bos else 0, dtype=torch.long)
    clean = torch.cat([prefix, seqs["A"], seqs["A"]], dim=1)  # [batch, 1 + 2 * seq_len]
    corrupted = torch.cat([prefix, seqs[corruption[0]], seqs[corruption[1]]], dim=1)
    off = int(prepend_bos)
    width = clean.shape[1]
    full = lambda v: torch.full((batch,), v, dtype=torch.long)  # noqa: E731
    return Task(
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        answer_tokens=torch.stack([seqs["A"][:, 0], seqs["A"][:, -1]], dim=1),  # [batch, 2]
        answer_pos=full(width - 1),
        positions={"first_start": full(off), "repeat_start": full(off + seq_len), "end": full(width - 1)},
        prompts=[tokenizer.decode(row[off:].tolist()) for row in clean],
        corrupted_prompts=[tokenizer.decode(row[off:].tolist()) for row in corrupted],
        name=f"induction_{corruption}",
        span=(off + seq_len + 1, width),
    )
