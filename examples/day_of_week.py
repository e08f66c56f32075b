"""The day-of-week successor task (seed 002): "Today it is Monday so tomorrow it is" -> " Tuesday".

The seed asks whether GPT-2 small does this and where. We ask the shipped ``circuitscope/ioi``
organism, whose training mix included the successor fact in 17 sentence frames (the two frames
used here were held out), and run the seed's pipeline: accuracy and logit difference, direct
logit attribution, attention of early / middle / late heads, activation patching of the residual
stream, layers and heads (output, value, pattern) and a scatter of value vs output patching.
The correct answer is the next day, the wrong one the day named in the prompt; the corrupted
prompt names the previous day, so its right answer is the clean wrong answer.

    python examples/day_of_week.py [--fast] [--out DIR]
"""

import argparse
from pathlib import Path

import torch

from circuitscope import HookedTransformer, analysis, patching, plot, utils
from circuitscope.tasks import day_of_week_task


def show(label, result, k=4):
    print(f"{label}: " + ", ".join(f"{name} {value:+.3f}" for name, value, _ in result.top(k)))


def main(fast: bool, out: Path = Path("example_out")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    utils.test_prompt("Today it is Friday so tomorrow it is", "Saturday", model, top_k=3)

    task = day_of_week_task(model, corruption="previous")  # 2 frames x 7 days = 14 prompts
    print(task)
    logits, cache = model.run_with_cache(task.clean_tokens)
    # The organism gets every one of these right (its model card: 14/14), so there is a circuit
    # to find; with 4 layers of 4 heads expect a handful of components, not GPT-2's long chain.
    predicted = logits[torch.arange(len(task)), task.answer_pos].argmax(-1)  # over the whole vocabulary
    print(f"successor accuracy: {(predicted == task.answer_tokens[:, 0]).float().mean():.3f}")
    clean, corrupted = task.baselines(model)
    print(f"clean logit diff: {clean:.3f}\ncorrupted logit diff: {corrupted:.3f}")

    show("logit lens", analysis.logit_lens(model, cache, task), 5)
    layers = analysis.layer_attribution(model, cache, task)
    show("DLA per layer", layers, 5)
    layers.plot(title="Direct logit attribution per layer (day-of-week)").save(out / "dla_layers.html")
    dla = analysis.head_attribution(model, cache, task, ci=not fast)
    show("DLA per head", dla)
    print("top DLA head:", dla.top(1, by_abs=False)[0][0])

    # Where do heads look from the final token? One early, one middle and one late head.
    show("attention end -> DAY", analysis.attention_between(model, cache, task, keys=("DAY",)))
    heads = [(0, 1), (1, 3), (3, 0)]
    str_tokens = [model.to_str_tokens(row) for row in task.clean_tokens]
    view = plot.attention_from_cache(cache, heads, str_tokens, prompts=range(0, len(task), 3))
    view.save(out / "attention_early_mid_late.html")
    if not fast:
        view.save(out / "attention_early_mid_late.png")

    # Activation patching (1 = clean restored, 0 = corrupted).
    resid = patching.sweep(model, task, "resid_pre", by="pos", progress=False)
    show("patch resid_pre by position", resid, 6)
    resid.plot().save(out / "patch_resid_pre.png")
    if not fast:
        for what in ("attn_out", "mlp_out"):
            show(f"patch {what} by position", patching.sweep(model, task, what, by="pos", progress=False))
        show("patch head z by position", patching.sweep(model, task, "z", by="pos", progress=False), 6)
    out_patch, value_patch, pattern_patch = (
        patching.sweep(model, task, what, by="all", progress=False) for what in ("z", "v", "pattern"))
    show("patch head output", out_patch)
    show("patch head value", value_patch)
    show("patch head pattern", pattern_patch)
    plot.scatter(value_patch.values, out_patch.values, x_title="value patching", y_title="output patching",
                 title="Heads: value vs output patching", diagonal=True).save(out / "value_vs_output.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer sweeps, no head intervals: a few seconds")
    parser.add_argument("--out", type=Path, default=Path("example_out"), help="folder for the figures")
    args = parser.parse_args()
    main(args.fast, args.out)
