"""The IOI teaching walk (seed 001) on the shipped ``circuitscope/ioi`` organism.

Test one prompt, then on an IOI dataset with the ABC corruption: logit difference, direct logit
attribution by hand from the cache (logit lens, layers, heads) checked against
``circuitscope.analysis``, attention of the top heads, one activation patch written as a hook and
checked against ``patching.sweep``, sweeps over the residual stream, layers and heads (output,
query, key, value, pattern), path patching, knocking out the top heads, and finally the automatic
circuit sketch and its faithfulness.

    python examples/ioi_walkthrough.py [--fast] [--out DIR]
"""

import argparse
from pathlib import Path

import torch

from circuitscope import HookedTransformer, analysis, patching, plot, utils
from circuitscope.tasks import ioi_task

# One template, so that position p means the same word in every prompt.
TEMPLATE = "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]"


def show(label, result, k=4):
    print(f"{label}: " + ", ".join(f"{name} {value:+.3f}" for name, value, _ in result.top(k)))


def main(fast: bool, out: Path = Path("example_out")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    check = utils.test_prompt("When John and Mary went to the store, John gave a drink to", "Mary", model, top_k=3)
    print(f"rank of ' Mary': {check.rank}")

    task = ioi_task(model, N=16 if fast else 100, seed=0, templates=[TEMPLATE])
    print(task)
    clean, corrupted = task.baselines(model)
    print(f"clean logit diff: {clean:.3f}\ncorrupted logit diff: {corrupted:.3f}")

    # Direct logit attribution by hand: project residual pieces on the answer direction.
    logits, cache = model.run_with_cache(task.clean_tokens)
    answer_dirs = model.tokens_to_residual_directions(task.answer_tokens)  # [prompt, 2, d_model]
    direction = answer_dirs[:, 0] - answer_dirs[:, 1]
    bias = (model.b_U[task.answer_tokens[:, 0]] - model.b_U[task.answer_tokens[:, 1]]).mean()

    def to_logit_diff(stack):  # [component, prompt, d_model] -> [component]
        scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=task.answer_pos)
        return (scaled * direction).sum(-1).mean(-1)

    def table(values, labels):
        return ", ".join(f"{lab} {v:+.3f}" for lab, v in zip(labels, values.tolist()))

    lens, labels = cache.accumulated_resid(layer=-1, pos_slice=task.answer_pos, return_labels=True)
    by_hand = to_logit_diff(lens) + bias  # the unembedding bias adds a constant
    print("logit lens by hand:", table(by_hand, labels))
    lens_result = analysis.logit_lens(model, cache, task)
    print(f"final logit diff by hand / analysis: {by_hand[-1]:.4f} / {lens_result.values[-1]:.4f}")
    lens_result.plot().save(out / "logit_lens.html")
    layers, labels = cache.decompose_resid(layer=-1, pos_slice=task.answer_pos, return_labels=True)
    print("DLA per layer:", table(to_logit_diff(layers), labels))
    heads = to_logit_diff(cache.stack_head_results(layer=-1, pos_slice=task.answer_pos))
    dla = analysis.head_attribution(model, cache, task)
    print(f"max |per-head DLA by hand - analysis|: {(heads.reshape(dla.shape) - dla.values).abs().max():.1e}")
    show("DLA per head", dla)
    dla.plot().save(out / "dla_heads.png")

    top = [divmod(i, model.cfg.n_heads) for i in dla.values.flatten().topk(3).indices.tolist()]
    str_tokens = [model.to_str_tokens(row) for row in task.clean_tokens]
    plot.attention_from_cache(cache, top, str_tokens, prompts=range(3)).save(out / "top_heads_attention.html")
    show("attention from end", analysis.attention_between(model, cache, task, keys=("IO", "S1", "S2")))

    # One activation patch by hand: clean resid_pre of layer 1 at S2 into the corrupted run.
    metric = task.patching_metric(model)  # 1 = clean, 0 = corrupted
    layer, pos = 1, int(task.positions["S2"][0])

    def patch_resid(resid, hook):
        resid[:, pos] = cache[hook.name][:, pos]
        return resid

    name = utils.get_act_name("resid_pre", layer)
    by_hook = metric(model.run_with_hooks(task.corrupted_tokens, fwd_hooks=[(name, patch_resid)])).item()
    resid = patching.sweep(model, task, "resid_pre", by="pos", progress=False)
    print(f"patch resid_pre L{layer} at S2, hook / sweep: {by_hook:.4f} / {resid.values[layer, pos]:.4f}")
    resid.plot().save(out / "patch_resid_pre.html")
    for what in ("attn_out", "mlp_out"):
        show(f"patch {what} by position", patching.sweep(model, task, what, by="pos", progress=False))
    parts = {w: patching.sweep(model, task, w, by="all", progress=False) for w in ("z", "q", "k", "v", "pattern")}
    for what, result in parts.items():
        show(f"patch head {what}", result)
    decomposed = torch.stack([r.values for r in parts.values()])  # [part, layer, head]
    figure = plot.heatmap(decomposed, parts["z"].labels[0], parts["z"].labels[1], facet_labels=list(parts),
                          title="Patching each head's output / q / k / v / pattern (all positions)")
    figure.save(out / "patch_heads_decomposed.png")
    if not fast:
        show("patch head z by position", patching.sweep(model, task, "z", by="pos", progress=False), 6)

    # Path patching (0 = clean, -1 = corrupted): direct effects, then the inputs of the top heads.
    show("path patching -> logits", patching.path_patch(model, task, progress=False))
    into_v = patching.path_patch(model, task, top[:2], "v", positions="S2", progress=False)
    show("path patching -> top heads' v at S2", into_v)

    # Knock out the top two heads (mean over the corrupted prompts) and look for backups.
    with patching.ablated(model, heads=top[:2], method="mean", reference=task.corrupted_tokens):
        print(f"logit diff with {top[:2]} mean-ablated: {task.logit_diff(task.run(model)):.3f}")
    backup = patching.backup_heads(model, task, top[:2], positions="end", ci=not fast)
    gain, i = backup.values[2].flatten().max(0)  # [which = after - before, layer, head]
    print("largest DLA increase after knock-out: L{}H{} {:+.3f}".format(*divmod(int(i), model.cfg.n_heads), gain))

    # The whole walk above, automated: the circuit with a role, interval and evidence per head,
    # then how much of the logit difference it keeps with every other head mean-ablated.
    from circuitscope.circuit import SketchConfig, evaluate_circuit, sketch_circuit

    circuit = sketch_circuit(model, task, SketchConfig(n_resamples=200 if fast else 1000), progress=False)
    print(circuit)
    evaluation = evaluate_circuit(model, task, circuit.heads, completeness=not fast, minimality=not fast,
                                  progress=False)
    print(f"circuit faithfulness: {evaluation.faithfulness}")
    circuit.diagram().save(out / "circuit.svg")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="16 prompts, fewer sweeps: a few seconds")
    parser.add_argument("--out", type=Path, default=Path("example_out"), help="folder for the figures")
    args = parser.parse_args()
    main(args.fast, args.out)
