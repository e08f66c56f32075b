"""The organisms' acceptance metrics: held-out IOI logit difference, day-of-week successor
accuracy, and loss on the first and second copy of a repeated random sequence.

All functions take an HF causal LM (anything returning ``.logits``) and a tokenizer with the
``tokenizers.Tokenizer`` interface (``encode(text, add_special_tokens=False).ids``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from circuitscope.tasks.vocab import DAY_TEMPLATES, DAYS, IOI_TEMPLATES, NAMES, OBJECTS, PLACES

__all__ = ["IOIPrompts", "ioi_prompts", "ioi_metrics", "day_metrics", "repeat_metrics"]


@dataclass
class IOIPrompts:
    """Right-padded prompts ``[n, pos]`` with their last real position and answer token ids."""

    tokens: torch.Tensor  # [n, pos]
    last: torch.Tensor  # [n] index of the final prompt token
    io: torch.Tensor  # [n] token id of " IO"
    s: torch.Tensor  # [n] token id of " S"


def _single(tok, word: str) -> int:
    ids = tok.encode(" " + word, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not a single token")
    return ids[0]


def _batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    tokens = torch.zeros(len(seqs), width, dtype=torch.long)  # pad with id 0 (<|endoftext|>)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return tokens, torch.tensor([len(s) - 1 for s in seqs])


def ioi_prompts(tok, n: int = 500, seed: int = 0) -> IOIPrompts:
    """``n`` prompts from the held-out IOI_TEMPLATES, half BABA and half ABBA, BOS prepended."""
    rng = random.Random(seed)
    seqs, ios, ss = [], [], []
    for i in range(n):
        template = IOI_TEMPLATES[i % len(IOI_TEMPLATES)]
        io, s = rng.sample(NAMES, 2)
        prompt = template.rsplit(" [A]", 1)[0]
        if i % 2:  # ABBA: the IO is named first
            prompt = prompt.replace("[B]", "#", 1).replace("[A]", "[B]", 1).replace("#", "[A]", 1)
        prompt = (prompt.replace("[A]", io).replace("[B]", s)
                  .replace("[PLACE]", rng.choice(PLACES)).replace("[OBJECT]", rng.choice(OBJECTS)))
        seqs.append([0] + tok.encode(prompt, add_special_tokens=False).ids)
        ios.append(_single(tok, io))
        ss.append(_single(tok, s))
    tokens, last = _batch(seqs)
    return IOIPrompts(tokens, last, torch.tensor(ios), torch.tensor(ss))


@torch.no_grad()
def _last_logits(model, tokens: torch.Tensor, last: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    out = []
    for i in range(0, len(tokens), chunk):
        logits = model(tokens[i : i + chunk]).logits  # [chunk, pos, vocab]
        out.append(logits[torch.arange(len(logits)), last[i : i + chunk]])
    return torch.cat(out)  # [n, vocab]


def ioi_metrics(model, prompts: IOIPrompts) -> dict[str, float]:
    """Mean logit(IO) - logit(S) at the final position and the fraction with IO above S."""
    logits = _last_logits(model, prompts.tokens, prompts.last)  # [n, vocab]
    rows = torch.arange(len(logits))
    diff = logits[rows, prompts.io] - logits[rows, prompts.s]  # [n]
    return {"ioi_logit_diff": diff.mean().item(), "ioi_io_gt_s": (diff > 0).float().mean().item()}


def day_metrics(model, tok) -> dict[str, float]:
    """Successor accuracy on DAY_TEMPLATES x DAYS, argmax over the full vocab and over 7 days."""
    day_ids = torch.tensor([_single(tok, d) for d in DAYS])
    seqs, answers = [], []
    for template in DAY_TEMPLATES:
        for i, day in enumerate(DAYS):
            seqs.append([0] + tok.encode(template.replace("[DAY]", day),
                                         add_special_tokens=False).ids)
            answers.append((i + 1) % 7)
    tokens, last = _batch(seqs)
    logits = _last_logits(model, tokens, last)  # [14, vocab]
    answers_t = torch.tensor(answers)
    full = (logits.argmax(-1) == day_ids[answers_t]).float().mean().item()
    among_days = (logits[:, day_ids].argmax(-1) == answers_t).float().mean().item()
    return {"day_acc_full_vocab": full, "day_acc_7_days": among_days}


@torch.no_grad()
def repeat_metrics(model, vocab_size: int, n: int = 200, length: int = 20,
                   seed: int = 0) -> dict[str, float]:
    """Mean loss predicting ``A[1:]`` in the 1st and in the 2nd copy of ``[bos] A A``.

    ``A[0]`` is left out of both: after BOS, and after the last token of the first copy, it is
    not predictable by induction. ``repeat_loss_second_all`` includes it, for reference.
    """
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(1, vocab_size, (n, length), generator=gen)  # [n, length], id 0 is special
    tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), a, a], dim=1)  # [n, 1 + 2*length]
    logits = model(tokens).logits[:, :-1]  # [n, 2*length, vocab]; position p predicts p + 1
    losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    first = losses[:, 1:length]  # [n, length - 1] predicting tokens 2..L, i.e. A[1:]
    second = losses[:, length + 1 :]  # [n, length - 1] predicting the second copy's A[1:]
    return {"repeat_loss_first": first.mean().item(), "repeat_loss_second": second.mean().item(),
            "repeat_loss_second_all": losses[:, length:].mean().item()}
