"""Peak memory of ``run_with_cache`` (every hook): circuitscope vs TransformerLens 2.16.1.

Same checkpoint and input as bench_forward.py: a seeded random-init GPT-2 small saved to a temp
dir, 8 prompts x 15 random token ids, 2 threads. Both libraries load it processed (fold_ln,
center_writing_weights, center_unembed, as ``from_pretrained`` does by default).

Each measurement runs in a fresh subprocess so its RSS figures are clean:
  ours: ``python3 bench_cache_memory.py --worker ...`` (this interpreter)
  TL:   ``/opt/tl-venv/bin/python _tl_cache_memory.py --mode memory ...`` (the TL venv)
and both use the same measuring code (``measure_cache_memory`` in _tl_cache_memory.py):

* peak delta: kernel peak RSS (VmHWM, reset through /proc/self/clear_refs just before the call)
  during ``logits, cache = model.run_with_cache(tokens)``, minus the RSS just before it (model
  loaded, warmed up, gc'd, malloc_trim'd). Median of 3. ``ru_maxrss`` is not used for the delta:
  it is a lifetime peak, dominated by checkpoint loading, which is larger than the cache.
* held delta: RSS growth while logits + cache are alive.
* cache tensor bytes: logical (numel*itemsize) and distinct-storage bytes of the cached tensors.

The workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` so tensors >= 64 KiB are mmapped and given
back on free: RSS then tracks live tensor memory instead of glibc's free lists.

Measured in two grad modes: ``inference`` (under ``torch.inference_mode()``; the bar) and
``default`` (a bare ``run_with_cache`` call, as users often write it; TL then keeps autograd
graphs). The hook sets are compared; if ours caches a different set than TL's default, ours is
also measured with ``names_filter`` = TL's hook names. TL's forward / run_with_cache timing is
recorded too (for the forward table).

Bar: ours peak delta (inference, all hooks) <= TL's. Writes ``benchmarks/results/cache_memory.json``.

    python3 benchmarks/bench_cache_memory.py        # ~1-2 minutes
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from bench_forward import (  # noqa: E402
    GPT2_SMALL,
    RESULTS,
    TL_PYTHON_DEFAULT,
    build_checkpoint,
    load_ours,
    run_tl,
    versions,
    write_json_atomic,
)

WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "2"}


# ----------------------------------------------------------------------------- worker (ours)

def worker(args) -> int:
    import _tl_cache_memory as m  # stdlib + torch at module level only

    torch.set_num_threads(args.threads)
    tokens = torch.load(args.tokens)
    model = load_ours(args.model_dir, processed=True)
    import gc
    gc.collect()
    m.malloc_trim()
    if args.names_file:
        with open(args.names_file) as f:
            names = json.load(f)
        run = lambda: model.run_with_cache(tokens, names_filter=names)  # noqa: E731
    else:
        run = lambda: model.run_with_cache(tokens)  # noqa: E731
    res = m.measure_cache_memory(run, grad=args.grad, warmup=args.warmup, repeats=args.repeats,
                                 save_logits=args.save_logits)
    res.update(impl="circuitscope", processed=True, names_filter=bool(args.names_file),
               threads=torch.get_num_threads(), tokens_shape=list(tokens.shape))
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, args.out)
    return 0


def run_ours(model_dir, tok_path, out_json, grad, *, names_file=None, save_logits=None, env=None):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model-dir", str(model_dir),
           "--tokens", str(tok_path), "--out", str(out_json), "--grad", grad]
    if names_file:
        cmd += ["--names-file", str(names_file)]
    if save_logits:
        cmd += ["--save-logits", str(save_logits)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"ours worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(out_json) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- driver

def _summary(r: dict) -> dict:
    keep = ("grad_mode", "n_hooks", "peak_delta_kb_median", "peak_delta_kb_min", "held_delta_kb_median",
            "cache_tensors", "peak_method", "ru_maxrss_lifetime_kb", "reps", "names_filter", "load_s")
    return {k: r[k] for k in keep if k in r}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="run_with_cache peak memory: circuitscope vs TL")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--tokens", help=argparse.SUPPRESS)
    p.add_argument("--names-file", help=argparse.SUPPRESS)
    p.add_argument("--save-logits", help=argparse.SUPPRESS)
    p.add_argument("--grad", default="inference", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timing-repeats", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tl-python", default=TL_PYTHON_DEFAULT)
    p.add_argument("--no-default-grad", action="store_true", help="only measure under inference_mode")
    p.add_argument("--out", default=str(RESULTS / "cache_memory.json"))
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    if not Path(args.tl_python).exists():
        print(f"TL python not found at {args.tl_python}; run benchmarks/setup_tl_venv.sh", file=sys.stderr)
        return 2
    env = {**os.environ, **WORKER_ENV}
    common = ["--threads", str(args.threads), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    grads = ["inference"] if args.no_default_grad else ["inference", "default"]

    with tempfile.TemporaryDirectory(prefix="cs-bench-mem-") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "gpt2-random"
        tok_path = build_checkpoint(model_dir, seed=args.seed, batch=args.batch, seq=args.seq)

        tl, ours = {}, {}
        for g in grads:
            tl[g] = run_tl("memory", model_dir, tok_path, tmp / f"tl_{g}.json", tl_python=args.tl_python,
                           extra=[*common, "--grad", g, "--save-logits", str(tmp / f"tl_logits_{g}.pt")],
                           env=env)
            ours[g] = run_ours(model_dir, tok_path, tmp / f"ours_{g}.json", g,
                               save_logits=tmp / f"ours_logits_{g}.pt", env=env)

        tl_hooks, our_hooks = tl["inference"]["hooks"], ours["inference"]["hooks"]
        only_tl = sorted(set(tl_hooks) - set(our_hooks))
        only_ours = sorted(set(our_hooks) - set(tl_hooks))
        ours_tl_set = None
        if only_tl or only_ours:
            names_file = tmp / "tl_hooks.json"
            names_file.write_text(json.dumps(sorted(set(tl_hooks) & set(our_hooks))))
            try:
                ours_tl_set = _summary(run_ours(model_dir, tok_path, tmp / "ours_tlset.json", "inference",
                                                names_file=names_file, env=env))
            except Exception as e:
                ours_tl_set = {"error": str(e)}

        a = torch.load(tmp / "tl_logits_inference.pt")
        b = torch.load(tmp / "ours_logits_inference.pt")
        logits_check = {
            "logits_max_abs_diff_ours_vs_tl": (a - b).abs().max().item(),
            "logprobs_max_abs_diff_ours_vs_tl": (a.log_softmax(-1) - b.log_softmax(-1)).abs().max().item(),
        }

        try:
            tl_timing = run_tl("timing", model_dir, tok_path, tmp / "tl_timing.json", tl_python=args.tl_python,
                               extra=["--threads", str(args.threads), "--warmup", "3",
                                      "--repeats", str(args.timing_repeats)])
        except Exception as e:
            tl_timing = {"error": str(e)}

    ours_pk = ours["inference"]["peak_delta_kb_median"]
    tl_pk = tl["inference"]["peak_delta_kb_median"]
    result = {
        "benchmark": "cache_memory",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {"model": "gpt2-small random init (seeded)", **GPT2_SMALL, "batch": args.batch,
                   "seq": args.seq, "threads": args.threads, "repeats": args.repeats, "seed": args.seed,
                   "dtype": "float32", "processed": True, "worker_env": WORKER_ENV},
        "versions": {"ours": versions(), "tl": tl["inference"].get("versions")},
        "bar": {"metric": "peak RSS delta of run_with_cache (all hooks, inference_mode), ours <= TL",
                "ours_kb": ours_pk, "tl_kb": tl_pk, "ratio": ours_pk / tl_pk if tl_pk else None,
                "pass": ours_pk <= tl_pk},
        "ours": {g: _summary(r) for g, r in ours.items()},
        "tl": {g: _summary(r) for g, r in tl.items()},
        "ours_with_tl_hook_set": ours_tl_set,
        "hooks": {"n_ours": len(our_hooks), "n_tl": len(tl_hooks), "same_set": not (only_tl or only_ours),
                  "only_ours": only_ours, "only_tl": only_tl, "ours": our_hooks, "tl": tl_hooks},
        "logits_check": logits_check,
        "tl_timing": {k: v for k, v in tl_timing.items() if k in ("forward", "run_with_cache", "error", "threads")},
    }
    write_json_atomic(Path(args.out), result)

    mb = lambda kb: kb / 1024  # noqa: E731
    print(f"run_with_cache memory, GPT-2 small (random init), {args.batch} x {args.seq} tokens, "
          f"median of {args.repeats}")
    print(f"{'impl / grad mode':34s} {'hooks':>5s} {'peak dMB':>9s} {'held dMB':>9s} {'cache MB':>9s} {'logits MB':>9s}")
    rows = [(f"ours / {g}", ours[g]) for g in grads] + [(f"TL 2.16.1 / {g}", tl[g]) for g in grads]
    if ours_tl_set and "error" not in ours_tl_set:
        rows.append(("ours / inference, TL hook set", ours_tl_set))
    for name, r in rows:
        ct = r["cache_tensors"]
        print(f"{name:34s} {r['n_hooks']:5d} {mb(r['peak_delta_kb_median']):9.1f} "
              f"{mb(r['held_delta_kb_median']):9.1f} {ct['storage_bytes'] / 2**20:9.1f} "
              f"{ct['logits_bytes'] / 2**20:9.1f}")
    print(f"hooks: ours {len(our_hooks)}, TL {len(tl_hooks)}; only ours: {only_ours[:8]}"
          f"{' ...' if len(only_ours) > 8 else ''}; only TL: {only_tl[:8]}{' ...' if len(only_tl) > 8 else ''}")
    print("logits check:", ", ".join(f"{k}={v:.2e}" for k, v in logits_check.items()))
    if "forward" in tl_timing:
        print(f"TL timing: forward {tl_timing['forward']['median_ms']:.2f} ms, "
              f"run_with_cache {tl_timing['run_with_cache']['median_ms']:.2f} ms")
    else:
        print("TL timing failed:", tl_timing.get("error", "")[:500])
    print(f"bar: ours peak <= TL peak: {'PASS' if result['bar']['pass'] else 'FAIL'} "
          f"({mb(ours_pk):.1f} MB vs {mb(tl_pk):.1f} MB)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
