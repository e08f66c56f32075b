"""Peak memory of ``circuitscope demo`` as the number of prompts grows (batching keeps it flat).

Usage: ``python scripts/measure_demo_memory.py [N ...] [-- extra demo arguments]``
(default N: 200 2000). Each run is a fresh subprocess, so its peak resident set size (RSS, from
``getrusage``) is its own. Prints one line per run: prompts, batch size, wall time, peak RSS.

Before batching, the demo cached every activation of every prompt at once: 100,000 prompts were
killed by the OS at 23 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys
from circuitscope.cli import main
code = main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def measure(n: int, extra: list[str]) -> dict:
    """Run the demo on ``n`` prompts in a subprocess; its peak RSS in MiB, seconds and batch size."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.json"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, "demo", "--prompts", str(n), "--no-progress", "--out", str(out), *extra],
            capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"demo --prompts {n} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        peak_kb = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
        data = json.loads(out.read_text())
    return {"prompts": n, "batch_size": data.get("batch_size"), "seconds": round(seconds, 1),
            "peak_rss_mib": round(peak_kb / 1024, 1), "clean_logit_diff": round(data["clean_logit_diff"], 4)}


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    sizes = [int(a) for a in (argv[: argv.index("--")] if "--" in argv else argv)] or [200, 2000]
    for n in sizes:
        print(json.dumps(measure(n, extra)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
