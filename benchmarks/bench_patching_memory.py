"""Patching memory is set by the budget, not by the number of patches.

A 4-layer model of GPT-2-small width (random init), prompts of 60 random tokens; for 16 and 64
prompts it runs ``resid_pre`` by position and head output (``z``) at all positions with
``memory_budget_mb=1024`` and reports the peak RSS growth over the sweep (each measurement in a
fresh process, the kernel's high-water mark reset just before the sweep). Bar: under 1 GiB.

    python3 benchmarks/bench_patching_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGET_MB = 1024

WORKER = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[4])
from _tl_cache_memory import PeakRSS, rss_kb, malloc_trim
from circuitscope import HookedTransformer, TransformerConfig, patching
from circuitscope.tasks import Task
torch.set_num_threads(2)
n, what, by = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = TransformerConfig(n_layers=4, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
                        n_ctx=1024, act_fn="gelu_new", normalization_type="LN")
torch.manual_seed(0)
model = HookedTransformer(cfg).eval()
g = torch.Generator().manual_seed(1)
clean = torch.randint(0, 50257, (n, 60), generator=g)
task = Task(clean, torch.randint(0, 50257, (n, 60), generator=g), torch.randint(0, 50257, (n, 2), generator=g),
            torch.full((n,), 59))
with torch.inference_mode():
    metric = task.patching_metric(model)
    malloc_trim()
    before = rss_kb()
    with PeakRSS() as peak:
        result = patching.sweep(model, task, what, by=by, metric=metric, memory_budget_mb=%d, progress=False)
print(json.dumps({"growth_mb": (peak.peak_kb - before) / 1024, "chunks": result.meta["chunks"],
                  "seconds": result.meta["seconds"], "method": peak.method}))
""" % BUDGET_MB


def measure(n: int, what: str, by: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(n), what, by, str(HERE)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    report = {}
    for what, by in (("resid_pre", "pos"), ("z", "all")):
        for n in (16, 64):
            r = measure(n, what, by)
            report[f"{what}_{by}_{n}"] = r
            ok = "under" if r["growth_mb"] < BUDGET_MB else "OVER"
            print(f"{what:>9} by {by:<3} {n:>2} prompts x 60 tokens: peak RSS growth {r['growth_mb']:7.1f} MB "
                  f"({ok} the {BUDGET_MB} MB budget), {r['chunks']} chunks, {r['seconds']:.1f} s")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "patching_memory.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
