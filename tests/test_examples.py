"""Each script in examples/ runs in --fast mode, writes its figures and prints the numbers that
matter for its workflow (checked here against what the shipped organisms are known to do)."""

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("plotly")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = ["ioi_pythia_hf_model.py", "ioi_walkthrough.py", "day_of_week.py", "patching_demo.py", "path_patching.py"]


def run_example(name: str, out: Path) -> subprocess.CompletedProcess:
    """``examples/<name> --fast --out <out>``, single-threaded (shared cores: no thread spinning)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(EXAMPLES / name), "--fast", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def example(request, tmp_path_factory):
    """``example(name)`` -> (stdout, figure folder). The scripts the session selected run two at a
    time in the background (each is single-threaded, the suite has 2 cores); a test waits for its own."""
    selected = [n for n in SCRIPTS if any(item.name == "test_" + n[:-3] for item in request.session.items)]
    outs = {n: tmp_path_factory.mktemp(n[:-3]) for n in selected}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {n: pool.submit(run_example, n, outs[n]) for n in selected}

        def get(name: str) -> tuple[str, Path]:
            proc = runs[name].result()
            assert proc.returncode == 0, (
                f"{name} exited with {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            return proc.stdout, outs[name]

        yield get


def number(stdout: str, label: str) -> float:
    """The number printed right after ``label``."""
    found = re.search(re.escape(label) + r"\s*([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", stdout)
    assert found, f"{label!r} not found in the output:\n{stdout[-3000:]}"
    return float(found.group(1))


def line(stdout: str, label: str) -> str:
    """The rest of the first line that starts with ``label``."""
    found = re.search(r"^\s*" + re.escape(label) + r"(.*)$", stdout, re.MULTILINE)
    assert found, f"no line starting with {label!r} in the output:\n{stdout[-3000:]}"
    return found.group(1).strip()


def check_figures(out: Path, names: list[str]) -> None:
    """Each named figure exists and is a real PNG / a self-contained HTML page."""
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".html") for n in names)
    for name in names:
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000, f"{name} missing or empty in {sorted(os.listdir(out))}"
        head = path.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if name.endswith(".png") else b"<html" in head.lower(), name


def test_ioi_pythia_hf_model(example):
    stdout, out = example("ioi_pythia_hf_model.py")
    check_figures(out, ["dla_heads.html", "dla_heads.png", "top_heads_attention.html", "patch_resid_pre.png",
                             "path_patch_v.html"])
    assert number(stdout, "max |log-prob difference| vs HF:") < 1e-4  # hf_model= loads the same function
    clean, corrupted = number(stdout, "clean logit diff:"), number(stdout, "corrupted logit diff:")
    assert clean > 3 and corrupted < -3  # neighbours swap the answer, so the sign flips
    assert line(stdout, "top DLA heads:") == "L3H3, L3H0"
    assert number(stdout, "metric on clean / corrupted:") == pytest.approx(1.0)
    assert line(stdout, "path patching -> v at S2:").startswith("L0H2 -")


def test_ioi_walkthrough(example):
    stdout, out = example("ioi_walkthrough.py")
    check_figures(out, ["logit_lens.html", "dla_heads.png", "top_heads_attention.html",
                             "patch_resid_pre.html", "patch_heads_decomposed.png"])
    assert number(stdout, "rank of ' Mary':") == 0
    assert number(stdout, "clean logit diff:") > number(stdout, "corrupted logit diff:") + 3
    by_hand, library = re.search(r"final logit diff by hand / analysis: (\S+) / (\S+)", stdout).groups()
    assert float(by_hand) == pytest.approx(float(library), abs=1e-3)
    assert number(stdout, "max |per-head DLA by hand - analysis|:") < 1e-3
    assert line(stdout, "DLA per head:").startswith("L3H3 +")
    hook, sweep = re.search(r"patch resid_pre L1 at S2, hook / sweep: (\S+) / (\S+)", stdout).groups()
    assert float(hook) == pytest.approx(float(sweep), abs=1e-4) and float(hook) > 0.1
    assert line(stdout, "path patching -> logits:").startswith("L3H3 -")
    assert re.search(r"L3H3\s+suppressor", stdout)
    assert number(stdout, "circuit faithfulness:") > 0.8
    assert (out / "circuit.svg").read_text().lstrip().startswith("<svg")


def test_day_of_week(example):
    stdout, out = example("day_of_week.py")
    check_figures(out, ["dla_layers.html", "attention_early_mid_late.html", "patch_resid_pre.png",
                             "value_vs_output.png"])
    assert number(stdout, "successor accuracy:") >= 0.9
    assert number(stdout, "clean logit diff:") > 2 > 0 > number(stdout, "corrupted logit diff:")
    top = line(stdout, "top DLA head:")
    assert re.fullmatch(r"L[0-3]H[0-3]", top)
    assert line(stdout, "patch head output:").startswith(top)  # its output alone restores the most


def test_patching_demo(example):
    stdout, out = example("patching_demo.py")
    check_figures(out, ["01_resid_pre.png", "02_head_out_all_pos.png", "06_induction_every.png",
                             "06_induction_every.html"])
    assert number(stdout, "metric function vs Task: max diff") < 1e-4
    assert number(stdout, "resid_pre at S2, layer 0:") > 0.3  # the repeated name is what the corruption removed
    assert {"L3H3", "L3H0"} <= set(re.findall(r"L\dH\d", line(stdout, "heads whose output restores > 0.1:")))
    assert "refused: the normalised metric is undefined" in stdout  # the seed's NaN, explained instead
    induction = re.findall(r"L(\d)H\d", line(stdout, "induction heads (induction score > 0.5):"))
    assert len(induction) >= 2 and set(induction) == {"1"}
    assert line(stdout, "previous-token heads (score > 0.5):") == "['L0H3']"
    assert "L1H" in line(stdout, "heads restoring the repeat (output patching > 0.05):")
    clean_ab, corrupted_ab = re.search(r"induction AB: log-prob of the repeat, clean (\S+) / corrupted (\S+)",
                                       stdout).groups()
    assert float(clean_ab) > -1 and float(corrupted_ab) < -4  # the repeat is predicted only when it repeats


def test_path_patching(example):
    stdout, out = example("path_patching.py")
    check_figures(out, ["path_to_logits.html", "path_into_qkv.png", "total_vs_direct.png"])
    assert number(stdout, "metric on clean / ABC:") == pytest.approx(0.0, abs=1e-3)
    assert line(stdout, "top direct heads:") == "L3H3, L3H0"
    assert line(stdout, "top heads feeding the top heads' values at S2:").startswith("L0H2")
    total, direct, via_v = (float(x) for x in re.search(
        r"L0H2: total (\S+), direct (\S+), via the top heads' values at S2 (\S+)", stdout).groups())
    assert total < -0.2 and abs(direct) < 0.05 and via_v < -0.2  # acts only through the layer-3 heads
    abc_attention = re.findall(r"L3H[03] ([\d.]+)", line(stdout, "attention end -> S2 on ABC prompts:"))
    assert len(abc_attention) == 2 and min(map(float, abc_attention)) > 0.8
