"""IOI circuit sketch on a model handed over as a ready Hugging Face object (seed 000).

The seed loads Pythia with ``AutoModelForCausalLM`` and passes it as ``hf_model=``. We do the
same with the shipped ``circuitscope/ioi`` organism (offline), then follow the seed's path: a
hand-written 8-prompt dataset where neighbours swap the repeated name, logit difference and the
normalised metric, direct logit attribution, attention of the top heads, activation patching,
knocking out the top heads (backup heads?) and path patching into their queries and values.

    python examples/ioi_pythia_hf_model.py [--fast] [--out DIR]
"""

import argparse
from pathlib import Path

import torch
import transformers

from circuitscope import HookedTransformer, analysis, patching, plot
from circuitscope.organisms import organism_path
from circuitscope.tasks import Task

# (first name, second name, place, object): each frame gives two prompts whose answers swap.
FRAMES = [("John", "Mary", "store", "a drink"), ("Tom", "Anna", "park", "the ball"),
          ("Lisa", "Mark", "school", "a book"), ("Paul", "Emma", "office", "a letter")]


def simple_dataset(model) -> Task:
    prompts, answers, io_pos = [], [], []
    for a, b, place, obj in FRAMES:
        for subject, io in ((a, b), (b, a)):
            prompts.append(f"When {a} and {b} went to the {place}, {subject} gave {obj} to")
            answers.append((" " + io, " " + subject))
            io_pos.append(2 if io == a else 4)  # token index, counting BOS
    positions = {"IO": io_pos, "S1": [6 - p for p in io_pos], "S2": [10] * len(prompts)}
    return Task.from_prompts(model, prompts, answers, pairing="swap_adjacent", positions=positions,
                             name="simple_ioi")


def show(label, result, k=4):
    print(f"{label}: " + ", ".join(f"{name} {value:+.3f}" for name, value, _ in result.top(k)))


def main(fast: bool, out: Path = Path("example_out")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    folder = organism_path("circuitscope/ioi")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = HookedTransformer.from_pretrained("circuitscope/ioi", hf_model=hf, tokenizer=tokenizer,
                                              fold_ln=True, center_writing_weights=True, center_unembed=True)
    task = simple_dataset(model)
    print("clean[0]:    ", task.prompts[0], "\ncorrupted[0]:", task.corrupted_prompts[0])
    # Centring the unembedding shifts all logits of a position equally, so compare log-probs.
    ours = model(task.clean_tokens).log_softmax(-1)
    theirs = hf(task.clean_tokens, attention_mask=torch.ones_like(task.clean_tokens)).logits.log_softmax(-1)
    print(f"max |log-prob difference| vs HF: {(ours - theirs).abs().max():.2e}")

    clean, corrupted = task.baselines(model)
    print(f"clean logit diff: {clean:.3f}\ncorrupted logit diff: {corrupted:.3f}")
    metric = task.patching_metric(model)  # 1 = clean run, 0 = corrupted run
    print(f"metric on clean / corrupted: {metric(task.run(model)):.2f} / {metric(task.run(model, corrupted=True)):.2f}")

    # Direct logit attribution from our own cache (the logit lens, layers, heads).
    logits, cache = model.run_with_cache(task.clean_tokens)
    show("logit lens", analysis.logit_lens(model, cache, task), 5)
    show("DLA per layer", analysis.layer_attribution(model, cache, task))
    dla = analysis.head_attribution(model, cache, task)
    print(dla)  # a table with 95% bootstrap intervals over prompts
    top = [divmod(i, model.cfg.n_heads) for i in dla.values.flatten().topk(2).indices.tolist()]
    print("top DLA heads:", ", ".join(f"L{l}H{h}" for l, h in top))
    dla.plot(title="Direct logit attribution per head").save(out / "dla_heads.html")
    dla.plot(kind="bar", k=8).save(out / "dla_heads.png")

    str_tokens = [model.to_str_tokens(row) for row in task.clean_tokens]
    plot.attention_from_cache(cache, top, str_tokens, prompts=range(4)).save(out / "top_heads_attention.html")
    print(analysis.attention_vs_effect(model, cache, task, key="S2"))  # attend to S2, write IO - S

    # Activation patching: clean activations into the corrupted run, one at a time.
    for what in ("resid_pre",) if fast else ("resid_pre", "attn_out", "mlp_out"):
        result = patching.sweep(model, task, what, by="pos", progress=False)
        show(f"patch {what} by position", result)
        result.plot().save(out / f"patch_{what}.png")
    for what in ("z", "pattern") if fast else ("z", "q", "k", "v", "pattern"):
        show(f"patch head {what} (all positions)", patching.sweep(model, task, what, by="all", progress=False))

    # Knock out the top heads at the final position; do other heads take over?
    with patching.ablated(model, heads=top, method="zero", positions=task.positions["end"]):
        print(f"metric with {top} knocked out: {metric(task.run(model)):.3f}")
    backup = patching.backup_heads(model, task, top, method="zero", positions="end", ci=not fast)
    change = backup.values[2]  # [layer, head]: DLA after - before
    rising = [f"L{l}H{h}" for l, h in (change > 0.05).nonzero().tolist() if (l, h) not in top]
    print("backup heads (DLA rises > 0.05):", rising or "none")

    # Path patching (0 = clean, -1 = corrupted): which heads feed the top heads' queries / values?
    show("path patching -> q at end", patching.path_patch(model, task, top, "q", positions="end", progress=False))
    into_v = patching.path_patch(model, task, top, "v", positions="S2", progress=False)
    show("path patching -> v at S2", into_v)
    into_v.plot(title="Path patching into the top heads' values at S2").save(out / "path_patch_v.html")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer sweeps, a few seconds")
    parser.add_argument("--out", type=Path, default=Path("example_out"), help="folder for the figures")
    args = parser.parse_args()
    main(args.fast, args.out)
