"""Path patching in depth (seed 004) on the shipped ``circuitscope/ioi`` organism.

Path patching asks how much of a sender head's effect travels along one path: straight to the
logits, or into given receiver heads' queries, keys or values. Steps: an IOI dataset and its ABC
corruption (``"ABB->XYZ, BAB->XYZ"``: every name replaced), the IOI paper's metric convention
(0 = clean, -1 = corrupted), path patching from every head to the final residual stream and to
the top heads' q / k / v at chosen positions, with and without MLPs in the path, and a
comparison with activation patching (the total effect of each head).

    python examples/path_patching.py [--fast] [--out DIR]
"""

import argparse
from pathlib import Path

import torch

from circuitscope import HookedTransformer, analysis, patching, plot
from circuitscope.tasks import IOIDataset

TEMPLATE = "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]"


def show(label, result, k=4):
    print(f"{label}: " + ", ".join(f"{name} {value:+.3f}" for name, value, _ in result.top(k)))


def main(fast: bool, out: Path = Path("example_out")) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    ioi = IOIDataset("mixed", N=16 if fast else 200, tokenizer=model.tokenizer, prepend_bos=True, seed=1,
                     templates=[TEMPLATE])
    abc = ioi.gen_flipped_prompts("ABB->XYZ, BAB->XYZ")
    for clean_text, abc_text in list(zip(ioi.sentences, abc.sentences))[:3]:
        print(f"  {clean_text!r:70} ABC: {abc_text!r}")
    print("positions of prompt 0:", {k: int(v[0]) for k, v in ioi.word_idx.items()})
    task = ioi.to_task(abc)

    # The IOI paper's convention: 0 = unharmed (clean run), -1 = as bad as the ABC run.
    metric = task.patching_metric(model, convention="ioi")
    print(f"clean logit diff: {metric.clean_baseline:.3f}\nABC logit diff: {metric.corrupted_baseline:.3f}")
    print(f"metric on clean / ABC: {metric(task.run(model)):.2f} / {metric(task.run(model, corrupted=True)):.2f}")

    # Senders -> logits: the direct path only, every other head frozen at its clean output.
    direct = patching.path_patch(model, task, progress=False)
    show("path patching -> logits", direct)
    movers = [divmod(i, model.cfg.n_heads) for i in (-direct.values).flatten().topk(2).indices.tolist()]
    print("top direct heads:", ", ".join(f"L{l}H{h}" for l, h in movers))
    direct.plot(title="Path patching: each head -> logits").save(out / "path_to_logits.html")

    # Senders -> receivers' inputs at one position (or all), with and without MLPs in the path.
    results = {}
    for inp, pos in [("q", "end"), ("k", "S2"), ("v", "S2")] + ([] if fast else [("k", None), ("v", None)]):
        for mlps in (True, False):
            r = patching.path_patch(model, task, movers, inp, positions=pos, include_mlps=mlps, progress=False)
            show(f"-> {inp} at {pos or 'all positions'}{'' if mlps else ', no MLPs'}", r, 3)
            results[inp, pos, mlps] = r
    into_v = results["v", "S2", True]
    # Queries and keys carry almost nothing here: the top heads find S2 even in ABC prompts, which
    # repeat no name. What the corruption changes is the name they read there (their values).
    for label, tokens in (("clean", task.clean_tokens), ("ABC", task.corrupted_tokens)):
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("pattern"))
        attn = analysis.attention_between(model, cache, task, keys=("S2",), ci=False).values[0]
        print(f"attention end -> S2 on {label} prompts: " + ", ".join(f"L{l}H{h} {attn[l, h]:.2f}" for l, h in movers))
    plot.heatmap(torch.stack([results[inp, pos, True].values for inp, pos in [("q", "end"), ("k", "S2"), ("v", "S2")]]),
                 into_v.labels[0], into_v.labels[1], facet_labels=["q at end", "k at S2", "v at S2"],
                 title="Path patching into the top heads").save(out / "path_into_qkv.png")

    # Activation patching the same heads (noising: ABC output into the clean run) is the total
    # effect, through every path. A head with a large total but a small direct effect acts
    # through later heads.
    total = patching.sweep(model, task, "z", by="all", direction="noise", metric=metric, progress=False)
    show("activation patching (total effect)", total)
    feeders = [divmod(i, model.cfg.n_heads) for i in (-into_v.values).flatten().topk(2).indices.tolist()]
    print("top heads feeding the top heads' values at S2:", ", ".join(f"L{l}H{h}" for l, h in feeders))
    for l, h in feeders + movers:  # a sender cannot reach receivers in its own layer or below: 0
        print(f"  L{l}H{h}: total {total.values[l, h]:+.3f}, direct {direct.values[l, h]:+.3f},"
              f" via the top heads' values at S2 {into_v.values[l, h]:+.3f}")
    plot.scatter(total.values, direct.values, x_title="activation patching (total)",
                 y_title="path patching (direct to logits)", diagonal=True,
                 title="Total vs direct effect per head").save(out / "total_vs_direct.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="16 prompts, fewer receivers: a few seconds")
    parser.add_argument("--out", type=Path, default=Path("example_out"), help="folder for the figures")
    args = parser.parse_args()
    main(args.fast, args.out)
