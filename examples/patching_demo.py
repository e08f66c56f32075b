"""The activation-patching utilities demo (seed 003), with TransformerLens-style calls.

``patching.get_act_patch_*(model, corrupted_tokens, clean_cache, metric)`` on three tasks:

* IOI on ``circuitscope/ioi``: every sweep type, figures saved as PNG; the metric is either a
  plain function of the logits (as in the seed) or the Task itself (same numbers, faster).
* Speaker attribution: the seed's metric came out NaN because clean and corrupted prompts scored
  the same. circuitscope's speaker task swaps the speakers so the answer flips, and a corruption
  that leaves the answer unchanged is refused with an explanation.
* Induction on ``circuitscope/attn-only-2l``: clean ``A A`` against ``AB / BA / BB / BC``,
  scored by the log-probability of the repeated half.

    python examples/patching_demo.py [--fast] [--out DIR]
"""

import argparse
from pathlib import Path

import torch

from circuitscope import HookedTransformer, analysis, patching, plot
from circuitscope.tasks import INDUCTION_CORRUPTIONS, Task, induction_task, ioi_task, speaker_task

TEMPLATE = "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]"
PARTS = ["output", "query", "key", "value", "pattern"]


def heads_over(values, threshold):
    return [f"L{l}H{h}" for l, h in (values > threshold).nonzero().tolist()]


def main(fast: bool, out: Path = Path("example_out")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    task = ioi_task(model, N=8 if fast else 50, seed=0, templates=[TEMPLATE])
    clean_logits, clean_cache = model.run_with_cache(task.clean_tokens)
    clean, corrupted = task.baselines(model)
    print(f"IOI clean / corrupted logit diff: {clean:.3f} / {corrupted:.3f}")

    def ioi_metric(logits):  # the seed's hand-written metric: 1 = clean, 0 = corrupted
        return (task.logit_diff(logits) - corrupted) / (clean - corrupted)

    labels = [f"{t}_{i}" for i, t in enumerate(model.to_str_tokens(task.clean_tokens[0]))]
    layers = [f"L{l}" for l in range(model.cfg.n_layers)]
    # TransformerLens's signature: (model, corrupted_tokens, clean_cache, patching_metric).
    resid = patching.get_act_patch_resid_pre(model, task.corrupted_tokens, clean_cache, ioi_metric, progress=False)
    args = (model, task.corrupted_tokens, clean_cache, task)  # a Task: its metric, logits read at the answers
    same = patching.get_act_patch_resid_pre(*args, progress=False)
    print(f"resid_pre {tuple(resid.shape)}; metric function vs Task: max diff {(resid - same).abs().max():.1e}")
    s2 = int(task.positions["S2"][0])
    print(f"resid_pre at S2, layer 0: {resid[0, s2]:.3f}; at end, last layer: {resid[-1, -1]:.3f}")
    plot.heatmap(resid, layers, labels, title="resid_pre patching").save(out / "01_resid_pre.png")
    head_out = patching.get_act_patch_attn_head_out_all_pos(*args, progress=False)
    print("heads whose output restores > 0.1:", heads_over(head_out, 0.1))
    plot.heatmap(head_out, title="head output patching (all positions)").save(out / "02_head_out_all_pos.png")
    block = patching.get_act_patch_block_every(*args, progress=False)  # [3, layer, pos]
    print(f"block sweep {tuple(block.shape)}: attn_out max {block[1].max():.3f}, mlp_out max {block[2].max():.3f}")
    every = patching.get_act_patch_attn_head_all_pos_every(*args, progress=False)  # [5, layer, head]
    for part, values in zip(PARTS, every):
        layer, head = divmod(int(values.argmax()), model.cfg.n_heads)
        print(f"  head {part:<7} top: L{layer}H{head} {values.max():+.3f}")
    if not fast:
        plot.heatmap(block, layers, labels, facet_labels=["resid_pre", "attn_out", "mlp_out"],
                     title="Patching per block").save(out / "03_block_every.png")
        plot.heatmap(every, facet_labels=PARTS, title="Patching per head (all positions)").save(out / "04_head_every.png")
        by_pos = patching.get_act_patch_attn_head_by_pos_every(*args, progress=False)  # [5, layer, pos, head]
        rows = by_pos.transpose(2, 3).flatten(1, 2)  # [5, layer * head, pos]
        names = [f"L{l}H{h}" for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
        plot.heatmap(rows, names, labels, facet_labels=PARTS,
                     title="Patching per head and position").save(out / "05_head_by_pos_every.png")

    # Speaker attribution: a task this organism was never trained on (expect chance level).
    speakers = speaker_task(model, N=8)
    s_clean, s_corrupted = speakers.baselines(model)
    print(f"speaker clean / corrupted logit diff: {s_clean:.3f} / {s_corrupted:.3f} (chance: not trained on it)")
    unchanged = Task.from_prompts(model, speakers.prompts, speakers.answers, corrupted_prompts=speakers.prompts)
    try:
        unchanged.patching_metric(model)
    except ValueError as err:
        print("refused:", str(err).split(". ")[0])

    # Induction in the attention-only model: which heads restore the repeated half?
    attn_only = HookedTransformer.from_pretrained("circuitscope/attn-only-2l")
    for corruption in INDUCTION_CORRUPTIONS:
        ind = induction_task(attn_only, seq_len=20, batch=4 if fast else 16, corruption=corruption, seed=0)
        metric = ind.patching_metric(attn_only)
        print(f"induction {corruption}: log-prob of the repeat, "
              f"clean {metric.clean_baseline:.2f} / corrupted {metric.corrupted_baseline:.2f}")
        if corruption == "AB":
            _, ind_cache = attn_only.run_with_cache(ind.clean_tokens)
            ind_every = patching.get_act_patch_attn_head_all_pos_every(
                attn_only, ind.corrupted_tokens, ind_cache, ind, progress=False)
    print("heads restoring the repeat (output patching > 0.05):", heads_over(ind_every[0], 0.05))
    scores = analysis.detect_heads(attn_only, n_prompts=20 if fast else 200, seq_len=20)
    print("induction heads (induction score > 0.5):", heads_over(scores["induction"].values, 0.5))
    print("previous-token heads (score > 0.5):", heads_over(scores["previous_token"].values, 0.5))
    figure = plot.heatmap(ind_every, facet_labels=PARTS, title="Induction (AA vs AB): patching per head")
    figure.save(out / "06_induction_every.png")
    figure.save(out / "06_induction_every.html")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few prompts, no by-position head sweeps")
    parser.add_argument("--out", type=Path, default=Path("example_out"), help="folder for the figures")
    args = parser.parse_args()
    main(args.fast, args.out)
