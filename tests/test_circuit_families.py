"""The sketch, the evaluation and the whole analyze walk on random models of every attention
layout (GPT-2, NeoX with parallel attention and partial rotary, LLaMA with grouped keys/values).

Random models do no task, so the task is built around each model: its answers are the clean and
corrupted runs' top tokens, which makes clean score above corrupted. What is checked is that every
step runs on each family and that its exact identities hold (the full model as "circuit" is
exactly faithful; heads that cannot reach a receiver have exactly zero path effect).
"""

import json

import pytest

from circuitscope.circuit import SketchConfig, evaluate_circuit, sketch_circuit
from circuitscope.report import AnalysisOptions, analyze
from hf_models import get_model, make_task

LENGTHS = (8,) * 32
CFG = SketchConfig(direct_threshold=0.01, path_threshold=0.01, n_resamples=100, n_detector_prompts=6)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
def test_sketch_and_evaluation_run_on_every_family(family):
    model = get_model(family, n_layers=3)
    task = make_task(model, lengths=LENGTHS, diff_positions=(1, 3, 5), seed=2)
    circuit = sketch_circuit(model, task, CFG, progress=False)
    json.dumps(circuit.to_dict())  # JSON-ready
    if family != "gpt2":  # (these seeds give both layouts direct heads and path-patching levels)
        assert circuit.heads and "path_v_depth1" in circuit.results
    for name, res in circuit.results.items():
        if name.startswith("path_") and name.endswith("depth1"):
            last = max(int(h[1]) for h in res.title.split(" of ")[1].replace(",", "").split())  # "L2H3" -> 2
            assert bool((res.values[last:] == 0).all())  # senders at or above every receiver: exactly 0
    all_heads = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    full = evaluate_circuit(model, task, all_heads, completeness=False, minimality=False, ci=False, progress=False)
    assert full.faithfulness.value == pytest.approx(1.0, abs=1e-6)
    if circuit.heads:
        ev = evaluate_circuit(model, task, circuit.heads, ranking=circuit.ranking(), ci=False, progress=False,
                              n_random=2, greedy=1)
        assert ev.curve is not None and ev.curve.values[-1].value == pytest.approx(1.0, abs=1e-5)


def test_analyze_walk_on_a_llama_layout():
    model = get_model("llama", n_layers=2)
    task = make_task(model, lengths=(8,) * 8, diff_positions=(1, 3, 5), seed=2)
    result = analyze(model, task, "random-llama", AnalysisOptions(fast=True, progress=False, sketch=CFG))
    assert result.results["baselines"]["does_task"]
    assert {"patch_mlp_out_pos", "patch_z_all", "patch_pattern_all"} <= set(result.results["patching"])
    html = result.report().to_html()
    assert "Activation patching" in html and "The circuit" in html
