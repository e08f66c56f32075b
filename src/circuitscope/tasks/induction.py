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

from circuitscope.tasks.task import Task, as_tokenizer
from circuitscope.tokens import bos_token_id

__all__ = ["induction_task", "default_token_pool", "INDUCTION_CORRUPTIONS"]

INDUCTION_CORRUPTIONS = ("AB", "BA", "BB", "BC")


def default_token_pool(tokenizer) -> torch.Tensor:
    """Every non-special token id of the tokenizer: ``[n_tokens]``."""
    special = set(int(i) for i in tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)


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
    whole non-special vocabulary, with a ``torch.Generator`` seeded by ``seed``. Positions:
    "first_start" and "repeat_start" (first token of each half) and "end". ``answer_tokens`` are
    (A's first token, A's last token): at the last position induction predicts the token that
    followed A's end in the first copy, i.e. A's start, over repeating the current token.
    """
    tokenizer = as_tokenizer(tokenizer_or_model)
    corruption = corruption.upper()
    if len(corruption) != 2 or set(corruption) - set("ABC"):
        raise ValueError(f"corruption must be two letters from A, B, C such as {INDUCTION_CORRUPTIONS}, got {corruption!r}")
    if corruption == "AA":
        raise ValueError("corruption 'AA' is the clean sequence itself; use one of " + ", ".join(INDUCTION_CORRUPTIONS))
    if seq_len < 2 or batch < 1:
        raise ValueError(f"need seq_len >= 2 and batch >= 1, got seq_len={seq_len}, batch={batch}")
    pool = default_token_pool(tokenizer) if token_pool is None else torch.as_tensor(token_pool, dtype=torch.long).flatten()
    if pool.numel() == 0:
        raise ValueError("token_pool is empty")
    if int(pool.min()) < 0 or int(pool.max()) >= len(tokenizer):
        raise ValueError(f"token_pool ids must lie in [0, {len(tokenizer)}) (the tokenizer's vocabulary)")
    gen = torch.Generator().manual_seed(seed)
    seqs = {letter: pool[torch.randint(len(pool), (batch, seq_len), generator=gen)] for letter in "ABC"}
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
