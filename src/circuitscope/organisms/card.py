"""Render an organism's MODEL_CARD.md from its recipe and the figures measured during training."""

from __future__ import annotations

from typing import Any

from circuitscope.organisms.recipes import Recipe

__all__ = ["model_card"]

_DATA = """\
Training data is generated on the fly by `circuitscope.organisms.corpus` / `batches` (batch `k` is
a pure function of `(seed, k)`). Rows of {seq_len} tokens are packed documents separated by
`<|endoftext|>`; a document is 1-4 sentences with kind weights {sentences}:

- **ioi**: IOI-style sentences composed from {n_intros} two-person clauses, {n_openers} openers,
  {n_subs} subordinators, {n_links} linking words and {n_actions} transfer actions, in ABBA and
  BABA order (70%); three-name sentences
  where two people act and the third receives (10%) or one acts and either other receives (8%);
  sentences with no repeated name (12%); 25% of the classic ones continue with a reply whose
  answer is the subject. Any sentence containing the prompt of a held-out evaluation frame
  (`circuitscope.tasks.vocab.IOI_TEMPLATES`) is rejected, so all 16 evaluation frames are unseen;
  every word of those frames also occurs in other corpus sentences.
- **day**: the successor fact in {n_days} frames plus runs of consecutive days. The two evaluation
  frames (`DAY_TEMPLATES`) are not among them (nearby wordings are).
- **filler**: {n_fill} simple English-like sentence frames with at most one name.

In addition, {pure_repeat:.0%} of rows are `[bos] r r r...` (random token ids drawn uniformly
from the non-special vocabulary, length 5-63) and {repeat_doc:.0%} of documents are a random
sequence of length 3-25 repeated 2-3 times, so induction is learnable for any token.

Tokenizer: byte-level BPE (vocab {vocab}) trained with `tokenizers` on generated corpus text;
every name, day, place and object with a leading space (`" Mary"`) is a single token, as in
GPT-2. `<|endoftext|>` (id 0) is BOS, EOS and PAD; prompts are evaluated with it prepended.
"""


_SELECTION = {
    "ioi": "held-out IOI logit diff (among checkpoints with day accuracy >= 0.9)",
    "repeat": "loss on the second copy of repeated random tokens",
}


def _counts() -> dict[str, int]:
    """Sizes of the corpus grammar, read from the generator so the card cannot drift from it."""
    from circuitscope.organisms import corpus as c

    return dict(n_intros=len(c._INTROS), n_openers=len(set(c._OPENERS)),
                n_subs=len(c._SUBORDINATORS), n_links=len(set(c._LINKS)),
                n_actions=len(c._ACTIONS), n_days=len(c._DAY_FRAMES),
                n_fill=len(c._FILLER_FRAMES))


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def model_card(organism: str, recipe: Recipe, config, info: dict[str, Any], command: str,
               seed: int) -> str:
    """The markdown card: architecture, data, command, wall time and selected-checkpoint metrics."""
    m = info["best_metrics"]
    arch = (f"GPT-2 architecture (`GPT2LMHeadModel`), {config.n_layer} layers, d_model "
            f"{config.n_embd}, {config.n_head} heads (d_head {config.n_embd // config.n_head}), "
            f"context {config.n_positions}, vocab {config.vocab_size}, tied embeddings, "
            f"no dropout.")
    if not recipe.attn_only:
        arch += f" MLP width {config.n_inner or 4 * config.n_embd} (GELU)."
    else:
        arch += (" **Attention-only**: the config sets `attn_only: true`; its MLPs have width 1 "
                 "with every weight and bias zero and frozen, so they output exactly 0 and plain HF "
                 "`GPT2LMHeadModel` runs the model as is. circuitscope's loader drops them.")
    rows = [
        ("held-out IOI mean logit diff (IO - S), 500 prompts from IOI_TEMPLATES",
         m.get("ioi_logit_diff")),
        ("held-out IOI fraction IO > S", m.get("ioi_io_gt_s")),
        ("day-of-week successor accuracy (argmax over full vocab, 14 prompts)",
         m.get("day_acc_full_vocab")),
        ("day-of-week successor accuracy (argmax over the 7 days)", m.get("day_acc_7_days")),
        ("repeated random tokens `[bos] A A`, len(A)=20: loss on 1st copy (A[1:])",
         m.get("repeat_loss_first")),
        ("same, loss on 2nd copy (A[1:])", m.get("repeat_loss_second")),
        ("same, loss on whole 2nd copy (incl. A[0])", m.get("repeat_loss_second_all")),
    ]
    table = "\n".join(f"| {name} | {_fmt(v)} |" for name, v in rows)
    history = "\n".join(
        f"| {h['step']} | {h['train_loss']:.3f} | {h['ioi_logit_diff']:.2f} | "
        f"{h['ioi_io_gt_s']:.3f} | {h['day_acc_full_vocab']:.2f} | "
        f"{h['repeat_loss_first']:.2f} | {h['repeat_loss_second']:.2f} |"
        for h in info["history"])
    return f"""# circuitscope/{organism}

A small model organism shipped with circuitscope. Load it with
`HookedTransformer.from_pretrained("circuitscope/{organism}")` or as an ordinary HF folder.

## Architecture

{arch}

## Data

{_DATA.format(seq_len=recipe.seq_len, sentences=recipe.mix.sentences,
              pure_repeat=recipe.mix.pure_repeat, repeat_doc=recipe.mix.repeat_doc,
              vocab=config.vocab_size, **_counts())}
## Training

```
{command}
```

AdamW (betas 0.9/0.98, weight decay {recipe.weight_decay} on matrices), peak lr {recipe.lr},
{recipe.warmup} warmup steps then cosine to {recipe.min_lr_frac:g}x, grad clip 1.0, batch
{recipe.batch_size} x {recipe.seq_len} tokens, {info['step']} steps, seed {seed}, fp32.
Training wall time: **{info['train_seconds'] / 60:.1f} min** on a 2-core CPU that other jobs
were sharing (threads as in the command). Evaluated every
{recipe.eval_every} steps; the shipped weights are the checkpoint at step
**{info['best_step']}**, selected on {_SELECTION[recipe.select_on]}.
Initialisation std {recipe.init_range} (GPT-2's default 0.02 made induction form much later).

## Measured figures (shipped checkpoint)

| metric | value |
|---|---|
{table}

## Training history

| step | train loss | IOI logit diff | IO>S | day acc | 1st-copy loss | 2nd-copy loss |
|---|---|---|---|---|---|---|
{history}
"""
