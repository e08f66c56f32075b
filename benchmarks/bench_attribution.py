"""Attribution patching vs exact activation patching on the shipped ``ioi`` organism.

For every sweep type it runs the exact sweep as a plain loop (one ``run_with_hooks`` forward per
patch, as TransformerLens does; and ``patching.sweep`` when available), the linear and the IG
attribution sweeps, and prints Pearson / Spearman r, the largest error and the timings.

    .venv/bin/python benchmarks/bench_attribution.py --n 50 --seed 1 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from circuitscope import HookedTransformer
from circuitscope.patching.attribution import _axes, _hook_names, attribution_sweep, correlation
from circuitscope.tasks import ioi_task


def exact_loop(model, task, what, by, metric):
    """The definition: one forward of the corrupted prompts per patch of clean activations."""
    names = _hook_names(model, what)
    with torch.no_grad():
        _, source = model.run_with_cache(task.clean_tokens, names_filter=names)
        n_pos, n_heads = task.clean_tokens.shape[1], model.cfg.n_heads
        axes = _axes(what, by)
        out = torch.zeros([model.cfg.n_layers] + [n_pos if a in ("pos", "dest_pos") else n_heads for a in axes[1:]])
        for layer, name in enumerate(names):
            for index in itertools.product(*[range(n) for n in out.shape[1:]]):
                if what == "pattern":  # [batch, head, dest, src]
                    sel = (slice(None), index[-1], index[0]) if by == "pos" else (slice(None), index[0])
                elif what in ("z", "q", "k", "v"):  # [batch, pos, head, d_head]
                    sel = (slice(None), index[0], index[1]) if by == "pos" else (slice(None), slice(None), index[0])
                else:  # [batch, pos, d_model]
                    sel = (slice(None), index[0]) if by == "pos" else (slice(None),)

                def patch(act, hook, sel=sel):
                    act = act.clone()
                    act[sel] = source[hook.name][sel]
                    return act

                out[(layer, *index)] = metric(model.run_with_hooks(task.corrupted_tokens, fwd_hooks=[(name, patch)]))
    return out


def timed(fn, repeat=1):
    """(value, the fastest of ``repeat`` runs in seconds): on a shared machine the minimum is the
    figure least disturbed by other processes."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timings are the fastest of this many runs")
    ap.add_argument("--whats", default="resid_pre,resid_mid,resid_post,attn_out,mlp_out,z,q,k,v,pattern")
    ap.add_argument("--loop", default="z", help="sweeps also timed as a plain loop (all of them without sweep())")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    task = ioi_task(model, N=args.n, seed=args.seed)
    metric = task.patching_metric(model)
    try:
        from circuitscope.patching import sweep
    except ImportError:
        sweep = None
    print(f"ioi organism, {len(task)} prompts x {task.clean_tokens.shape[1]} tokens, {args.threads} threads, "
          f"IG steps {args.steps}")
    print(f"{'sweep':<16}{'entries':>8}{'exact loop s':>13}{'sweep() s':>10}{'linear s':>9}{'r lin':>7}"
          f"{'rho lin':>8}{'err lin':>8}{'ig s':>7}{'r ig':>7}{'rho ig':>7}{'err ig':>7}{'loop/lin':>9}{'sweep/lin':>10}")
    for what in args.whats.split(","):
        for by in ("pos", "all"):
            exact, t_exact, t_sweep = None, float("nan"), float("nan")
            if sweep is None or what in args.loop.split(","):
                exact, t_exact = timed(lambda: exact_loop(model, task, what, by, metric))
            if sweep is not None:
                res, t_sweep = timed(lambda: sweep(model, task, what, by, metric=metric, progress=False), args.repeat)
                if exact is not None:
                    assert torch.allclose(res.values.float(), exact, atol=1e-4), "sweep() != exact loop"
                exact = res.values.float()
            lin, t_lin = timed(lambda: attribution_sweep(model, task, what, by, "linear", metric=metric), args.repeat)
            ig, t_ig = timed(lambda: attribution_sweep(model, task, what, by, "ig", steps=args.steps, metric=metric),
                             args.repeat)
            cl, ci = correlation(lin, exact), correlation(ig, exact)
            print(f"{what + '/' + by:<16}{exact.numel():>8}{t_exact:>13.3f}{t_sweep:>10.3f}{t_lin:>9.3f}"
                  f"{cl['pearson']:>7.3f}{cl['spearman']:>8.3f}{cl['max_abs_error']:>8.3f}{t_ig:>7.3f}"
                  f"{ci['pearson']:>7.3f}{ci['spearman']:>7.3f}{ci['max_abs_error']:>7.3f}"
                  f"{t_exact / t_lin:>9.1f}{t_sweep / t_lin:>10.1f}")


if __name__ == "__main__":
    main()
