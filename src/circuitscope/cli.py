"""Command line: ``circuitscope demo`` runs the IOI analysis on a model (the shipped organism by default)."""

from __future__ import annotations

import argparse
import logging
import sys

import torch

DEFAULT_MODEL = "circuitscope/ioi"


def _table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def demo(args: argparse.Namespace) -> dict:
    with torch.no_grad():
        return _demo(args)


def _demo(args: argparse.Namespace) -> dict:
    from circuitscope import HookedTransformer
    from circuitscope.analysis import head_attribution, logit_lens
    from circuitscope.tasks import ioi_task
    from circuitscope.utils import test_prompt

    model = HookedTransformer.from_pretrained(args.model, device=args.device)
    print(model)
    task = ioi_task(model, N=args.prompts, seed=args.seed)
    example = task.prompts[0]
    answer = model.to_string(int(task.answer_tokens[0, 0]))
    print(f"\nExample prompt: {example!r} -> expected {answer!r}")
    print(test_prompt(example, answer, model, top_k=5, prepend_space_to_answer=False))

    clean_logits, cache = model.run_with_cache(task.clean_tokens)
    corrupted_logits = model(task.corrupted_tokens)
    per_prompt = task.logit_diff(clean_logits, per_prompt=True)
    clean_ld = per_prompt.mean().item()
    corrupted_ld = task.logit_diff(corrupted_logits, corrupted=True).item()
    accuracy = (per_prompt > 0).float().mean().item()
    print(f"\nIOI task: {len(task)} prompts (held-out templates), corruption ABB->XYZ, BAB->XYZ")
    print(f"  clean logit diff (IO - S):     {clean_ld:7.3f}")
    print(f"  corrupted logit diff:          {corrupted_ld:7.3f}")
    print(f"  IO ranked above S:             {accuracy:7.1%}")

    lens_result = logit_lens(model, cache, task, ci=False)
    lens, labels = lens_result.values, lens_result.labels[0]
    print("\nLogit lens (logit diff read from the residual stream after each layer):")
    print(_table([(lab, f"{v:.3f}") for lab, v in zip(labels, lens.tolist())], ("residual", "logit diff")))

    heads = head_attribution(model, cache, task, ci=False).values
    order = heads.flatten().abs().argsort(descending=True)[: args.top]
    rows = []
    for idx in order.tolist():
        layer, head = divmod(idx, model.cfg.n_heads)
        rows.append((f"L{layer}H{head}", f"{heads[layer, head].item():+.3f}"))
    print(f"\nTop {args.top} heads by direct logit attribution (positive: pushes IO over S):")
    print(_table(rows, ("head", "logit diff")))
    result = {
        "model": args.model, "prompts": len(task), "clean_logit_diff": clean_ld,
        "corrupted_logit_diff": corrupted_ld, "io_over_s": accuracy,
        "logit_lens": dict(zip(labels, lens.tolist())),
        "head_attribution": heads.tolist(),
    }
    if args.out:
        from circuitscope.io import write_json_atomic

        print(f"\nwrote {write_json_atomic(args.out, result)}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitscope", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="IOI analysis: logit diffs, logit lens, head attribution")
    d.add_argument("--model", default=DEFAULT_MODEL, help="organism, local HF folder or hub name")
    d.add_argument("--prompts", type=int, default=100, help="number of IOI prompts")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--top", type=int, default=10, help="heads to list")
    d.add_argument("--device", default=None)
    d.add_argument("--out", default=None, help="also write the results as JSON here")
    d.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        args = parser.parse_args(["demo", *(argv or sys.argv[1:])])
    try:
        args.func(args)
    except (ValueError, OSError, KeyError) as err:
        print(f"circuitscope: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
