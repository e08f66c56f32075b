"""Wall time of ``circuitscope analyze`` with its defaults (the bar: under 3 minutes on this 2-core CPU).

Each run is the real command in a fresh process (``python -m circuitscope analyze --out TMP``), so
the time includes importing torch, loading the model, every step of the walk, drawing every PNG
and writing the report. The step timings come from the run's own ``results.json``. Next to them:
the floating-point work the exact patching sweeps did (summed from their ``gflop``) and the
GFLOP/s that work reached, against a large fp32 matmul on the same threads. The organisms are tiny
(d_model 128), so the sweeps are bound by per-call overhead, not by arithmetic.

    .venv/bin/python benchmarks/bench_analyze.py                   # default task (ioi), 2 repeats
    .venv/bin/python benchmarks/bench_analyze.py --task induction --repeats 1

Results go to ``benchmarks/results/analyze.json`` (written atomically) and are printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from circuitscope.io import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"
BAR_S = 180.0


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def run_once(task: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "circuitscope", "analyze", "--task", task, "--out", str(out), "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"analyze failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        res = json.loads((out / "results.json").read_text())
        pngs = len(list((out / "figures").glob("*.png")))
        size = (out / "report.html").stat().st_size
    sweeps = res.get("patching", {})
    gflop = sum(s["meta"].get("gflop", 0.0) for s in sweeps.values())
    sweep_s = sum(s["meta"].get("seconds", 0.0) for s in sweeps.values())
    return {"wall_s": round(wall, 2), "timings": res["timings"], "pngs": pngs, "report_mb": round(size / 2**20, 2),
            "sweep_gflop": round(gflop, 3), "sweep_seconds": round(sweep_s, 3),
            "sweep_gflops": round(gflop / sweep_s, 2) if sweep_s else None,
            "faithfulness": res["circuit"].get("faithfulness"), "roles": res["circuit"].get("roles"),
            "n_prompts": res["task"]["n_prompts"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="ioi")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    runs = [run_once(args.task, args.threads) for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    peak = matmul_gflops(args.threads)
    print(f"circuitscope analyze --task {args.task} ({best['n_prompts']} prompts), {args.threads} threads")
    print(f"  wall time per run: {', '.join(str(r['wall_s']) for r in runs)} s (bar {BAR_S:.0f} s)")
    for step, seconds in best["timings"].items():
        print(f"    {step:<22} {seconds:8.2f} s")
    print(f"  {best['pngs']} PNGs, report.html {best['report_mb']} MB")
    print(f"  exact patching sweeps: {best['sweep_gflop']} GFLOP in {best['sweep_seconds']} s = "
          f"{best['sweep_gflops']} GFLOP/s; large fp32 matmul: {peak:.0f} GFLOP/s")
    print(f"  faithfulness {best['faithfulness']}; roles {best['roles']}")
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
           "cpus": os.cpu_count(), "threads": args.threads, "task": args.task, "bar_s": BAR_S,
           "matmul_gflops": round(peak, 1), "best": best, "runs": runs, "passes": best["wall_s"] < BAR_S}
    name = "analyze.json" if args.task == "ioi" else f"analyze_{args.task}.json"
    write_json_atomic(RESULTS / name, out)


if __name__ == "__main__":
    main()
