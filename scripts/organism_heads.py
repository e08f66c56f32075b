"""The heads the shipped organisms' model cards list, with 95% bootstrap intervals.

attn-only-2l: induction scores of the layer-1 heads and previous-token scores of the layer-0 heads
on 500 repeated random sequences (seed 0). ioi: direct logit attribution of every head on 500
held-out IOI prompts (seed 0), and the patching figures the cards quote. Prints Markdown tables.

    python scripts/organism_heads.py
"""

from __future__ import annotations

import torch

from circuitscope import HookedTransformer, analysis, patching
from circuitscope.tasks import ioi_task


def table(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def fmt(result, index) -> str:
    value = float(result.values[index])
    low, high = (float(result.ci[0][index]), float(result.ci[1][index]))
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def main() -> None:
    torch.set_grad_enabled(False)
    attn = HookedTransformer.from_pretrained("circuitscope/attn-only-2l")
    scores = analysis.detect_heads(attn, generator=torch.Generator().manual_seed(0), n_prompts=500, seq_len=20)
    H = attn.cfg.n_heads
    print("## attn-only-2l: head detectors (500 repeated random sequences, seed 0; 95% bootstrap CI)\n")
    rows = [(f"L1H{h}", fmt(scores["induction"], (1, h)), fmt(scores["previous_token"], (1, h))) for h in range(H)]
    rows += [(f"L0H{h}", fmt(scores["induction"], (0, h)), fmt(scores["previous_token"], (0, h))) for h in range(H)]
    print(table(rows, ("head", "induction score", "previous-token score")))

    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    task = ioi_task(model, N=500, seed=0)
    dla = analysis.head_attribution(model, task)
    print("\n## ioi: direct logit attribution per head (500 held-out IOI prompts, seed 0; 95% bootstrap CI)\n")
    order = dla.values.flatten().abs().argsort(descending=True)[:6].tolist()
    print(table([(f"L{i // model.cfg.n_heads}H{i % model.cfg.n_heads}", fmt(dla, divmod(i, model.cfg.n_heads)))
                 for i in order], ("head", "logit-diff contribution")))
    small = ioi_task(model, N=100, seed=0)
    z = patching.sweep(model, small, "z", by="all", per_prompt=True, progress=False)
    print("\n## ioi: denoising each head's output at all positions (100 prompts; 1 = clean restored)\n")
    order = z.values.flatten().abs().argsort(descending=True)[:6].tolist()
    print(table([(f"L{i // model.cfg.n_heads}H{i % model.cfg.n_heads}", fmt(z, divmod(i, model.cfg.n_heads)))
                 for i in order], ("head", "normalised metric")))


if __name__ == "__main__":
    main()
