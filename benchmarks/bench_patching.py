"""Patching speed: circuitscope's engine vs TransformerLens 2.16.1's ``patching`` functions.

GPT-2-small shape, random init (seeded, saved to a temp dir and loaded by both sides exactly as
``from_pretrained`` would), 8 prompts x 15 tokens, corrupted prompts = other random tokens (so no
shared prefix helps us), random answer pairs read at the last position, the normalised
logit-difference metric; CPU, 2 threads. For each sweep it prints both times, the ratio, the
largest difference between the two results, the matrix-multiply work our engine performed and
its GFLOP/s, next to a large fp32 matmul's GFLOP/s measured in the same run.

Bars (issue 8): resid_pre by position >= 6x, head output all positions >= 4x, head output by
position >= 7x, five-way head sweep all positions >= 4x, path patching into 3 receivers'
queries at the end position >= 10x and into 4 receivers' values at all positions >= 5x, largest
difference <= 1e-4.

    python3 benchmarks/bench_patching.py              # ~10 minutes on 2 quiet cores (TL dominates)
    python3 benchmarks/bench_patching.py --no-tl      # ours only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_forward import build_checkpoint, load_ours, versions, write_json_atomic  # noqa: E402

TL_PYTHON = os.environ.get("TL_PYTHON", "/opt/tl-venv/bin/python")
BARS = {"attribution_head_out_by_pos": 100, "resid_pre_by_pos": 6, "head_out_all_pos": 4, "head_out_by_pos": 7, "head_all_pos_every": 4,
        "path_q_end": 10, "path_v_all": 5}
Q_RECEIVERS = [[9, 9], [9, 6], [10, 0]]
V_RECEIVERS = [[7, 3], [7, 9], [8, 6], [8, 10]]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9


def make_data(model_dir: Path, tok_path: Path) -> Path:
    clean = torch.load(tok_path, weights_only=True)
    g = torch.Generator().manual_seed(7)
    data = {
        "clean": clean,
        "corrupted": torch.randint(0, 50257, clean.shape, generator=g),
        "answer_tokens": torch.randint(0, 50257, (clean.shape[0], 2), generator=g),
        "answer_pos": torch.full((clean.shape[0],), clean.shape[1] - 1),
        "q_receivers": torch.tensor(Q_RECEIVERS), "v_receivers": torch.tensor(V_RECEIVERS),
    }
    path = model_dir / "patching_data.pt"
    torch.save(data, path)
    return path


def ours(model_dir: Path, data_path: Path, repeats: int, only=()) -> tuple[dict, dict, dict]:
    from circuitscope import patching
    from circuitscope.tasks import Task

    model = load_ours(model_dir, processed=True)
    d = torch.load(data_path, weights_only=True)
    task = Task(d["clean"], d["corrupted"], d["answer_tokens"], d["answer_pos"])
    metric = task.patching_metric(model)
    _, clean_cache = model.run_with_cache(task.clean_tokens)
    C = task.corrupted_tokens

    def run(what, by):
        return patching.run_sweep(model, C, clean_cache, what, by, metric, progress=False)

    def every():
        outs = [run(w, "all") for w in ("z", "q", "k", "v", "pattern")]
        return torch.stack([o[0] for o in outs]), sum(o[3].flops for o in outs)

    jobs = {
        "resid_pre_by_pos": lambda: (lambda o: (o[0], o[3].flops))(run("resid_pre", "pos")),
        "head_out_all_pos": lambda: (lambda o: (o[0], o[3].flops))(run("z", "all")),
        "head_out_by_pos": lambda: (lambda o: (o[0], o[3].flops))(run("z", "pos")),
        "head_all_pos_every": every,
        "path_q_end": lambda: (patching.path_patch(model, task, Q_RECEIVERS, "q", positions="end", progress=False,
                                                   metric=task.patching_metric(model, convention="ioi")).values, None),
        "path_v_all": lambda: (patching.path_patch(model, task, V_RECEIVERS, "v", positions=None, progress=False,
                                                   metric=task.patching_metric(model, convention="ioi")).values, None),
        # first-order approximation of head_out_by_pos: bar >= 100x faster than the exact sweep
        "attribution_head_out_by_pos": lambda: (patching.attribution_sweep(model, task, "z", by="pos",
                                                                           metric=metric).values, None),
    }
    times, values, flops = {}, {}, {}
    for name, job in jobs.items():
        if only and name not in only:
            continue
        # attribution patching needs gradients; everything else runs without autograd
        mode = torch.enable_grad() if name.startswith("attribution") else torch.inference_mode()
        with mode:
            job()  # warm-up
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                values[name], flops[name] = job()
                samples.append(time.perf_counter() - t0)
        times[name] = statistics.median(samples)
        print(f"ours {name}: {times[name]:.3f} s", file=sys.stderr, flush=True)
    return times, values, flops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-tl", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tl-python", default=TL_PYTHON)
    ap.add_argument("--out", default=str(HERE / "results" / "patching.json"))
    ap.add_argument("--only", default="", help="comma-separated sweep names (ours only; implies --no-tl)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "gpt2-small-random"
        tok_path = build_checkpoint(model_dir, batch=8, seq=15)
        data_path = make_data(model_dir, tok_path)
        only = [x for x in args.only.split(",") if x]
        our_t, our_v, our_f = ours(model_dir, data_path, args.repeats, only)
        tl_t, tl_v = {}, {}
        if not args.no_tl and not only:
            out_pt = Path(tmp) / "tl_values.pt"
            proc = subprocess.run([args.tl_python, str(HERE / "_tl_patching.py"), "--model-dir", str(model_dir),
                                   "--data", str(data_path), "--out", str(out_pt), "--threads", str(args.threads)],
                                  capture_output=True, text=True, check=True)
            tl_t = json.loads(proc.stdout.strip().splitlines()[-1])["timings"]
            tl_v = torch.load(out_pt, weights_only=True)
    peak_after = matmul_gflops()
    rows, report = [], {"matmul_gflops": [round(peak, 1), round(peak_after, 1)], "sweeps": {}, "versions": versions()}
    print(f"\nlarge fp32 matmul: {peak:.0f} GFLOP/s before, {peak_after:.0f} after (2 threads)")
    print(f"{'sweep':<20} {'TL s':>8} {'ours s':>8} {'ratio':>7} {'bar':>5} {'max diff':>9} {'GFLOP':>8} {'GFLOP/s':>8}")
    for name, t in our_t.items():
        entry = {"ours_s": round(t, 4)}
        gf = our_f[name] / 1e9 if our_f[name] else None
        line = f"{name:<20} "
        if name in tl_t:
            ratio = tl_t[name] / t
            ours_v = our_v[name]
            tl_vals = tl_v[name][: ours_v.shape[0]] if name.startswith("path") else tl_v[name]
            ours_cmp = ours_v[: tl_vals.shape[0]] if name.startswith("path") else ours_v
            diff = (ours_cmp - tl_vals).abs().max().item()
            entry.update(tl_s=round(tl_t[name], 3), ratio=round(ratio, 2), bar=BARS[name], max_diff=diff,
                         passes=ratio >= BARS[name] and diff <= 1e-4)
            line += f"{tl_t[name]:8.2f} {t:8.3f} {ratio:7.2f} {BARS[name]:5} {diff:9.2e} "
        else:
            line += f"{'-':>8} {t:8.3f} {'-':>7} {BARS[name]:5} {'-':>9} "
        if gf:
            entry.update(gflop=round(gf, 2), gflops_per_s=round(gf / t, 1))
            line += f"{gf:8.1f} {gf / t:8.1f}"
        print(line)
        report["sweeps"][name] = entry
    attr, exact = "attribution_head_out_by_pos", "head_out_by_pos"
    if attr not in our_t or exact not in our_t:
        write_json_atomic(Path(args.out), report)
        return 0
    speedup = our_t[exact] / our_t[attr]
    r = torch.corrcoef(torch.stack([our_v[attr].flatten(), our_v[exact].flatten()]))[0, 1].item()
    report["attribution"] = {"speedup_vs_exact": round(speedup, 1), "bar": 100, "pearson_r_random_init": round(r, 3)}
    print(f"\nattribution patching of head outputs by position: {speedup:.0f}x faster than our exact sweep "
          f"(bar 100x); Pearson r on this random-init model {r:.3f}")
    write_json_atomic(Path(args.out), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
