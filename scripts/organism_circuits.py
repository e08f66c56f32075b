"""Write the circuit each shipped organism's sketch finds, and its evaluation, into its model card.

For every organism: the circuit sketch on its task (heads, roles, scores with 95% intervals), the
evaluation with mean ablation outside the circuit (faithfulness, normalized faithfulness,
completeness, minimality, CPR/CMD), and, for a model with a ``ground_truth.json``, the precision
and recall of the planted heads. The section between the markers below is replaced on each run,
so the card always shows the numbers of the current code and weights.

    .venv/bin/python scripts/organism_circuits.py          # all organisms
"""

from __future__ import annotations

import re
import sys

from circuitscope import HookedTransformer
from circuitscope.analysis.bootstrap import Bootstrap
from circuitscope.circuit import (
    SketchConfig, discovery_scores, evaluate_circuit, faithfulness, load_ground_truth, sketch_circuit,
)
from circuitscope.organisms import organism_path
from circuitscope.tasks.registry import TASKS, build_task

BEGIN, END = "<!-- circuit: begin (scripts/organism_circuits.py) -->", "<!-- circuit: end -->"
ORGANISMS = {"circuitscope/ioi": "ioi", "circuitscope/attn-only-2l": "induction",
             "circuitscope/planted-induction": "induction"}


def section(name: str, task_name: str) -> str:
    model = HookedTransformer.from_pretrained(name)
    spec = TASKS[task_name]
    task = build_task(task_name, model, seed=0)
    circuit = sketch_circuit(model, task, SketchConfig(), progress=False)
    ev = evaluate_circuit(model, task, circuit.heads, ranking=circuit.ranking(), ci=Bootstrap(seed=0), progress=False)
    lines = [BEGIN, "## Circuit found by `circuitscope analyze`", "",
             f"`circuitscope analyze --task {task_name} --model {name}`: {spec.description}; "
             f"{len(task)} prompts, seed 0, 95% bootstrap intervals over prompts (1,000 resamples). "
             f"Scores are path-patching effects as a fraction of the clean-corrupted gap (negative = the head helps).",
             "", "| head | role | score [95% CI] | why |", "| --- | --- | --- | --- |"]
    lines += [f"| {label} | {role} | {score} | {why} |" for label, role, score, why in circuit.rows()]
    lines += ["", *[f"- {s}" for s in circuit.description], "",
              f"Evaluation (every head outside the circuit mean-ablated, means over the corrupted prompts per "
              f"position): faithfulness ({ev.faithfulness_kind}) **{ev.faithfulness}**, normalized "
              f"{ev.normalized_faithfulness}; F(M) {ev.model_value}, F(C) {ev.circuit_value}, F(empty) {ev.empty_value}."]
    others = ["template_mean", "zero", "resample"] if task.groups is not None else ["zero", "resample"]
    lines.append("The same circuit under other ablations: " + ", ".join(
        f"{m} {faithfulness(model, task, circuit.heads, method=m, ci=Bootstrap(seed=0))}" for m in others) + ".")
    if ev.completeness is not None:
        lines.append(f"Incompleteness max_K |F(C\\K) - F(M\\K)| = {ev.completeness.score} (worst K = "
                     f"{ev.completeness.worst.label}).")
    if ev.minimality is not None:
        lines.append("Minimality per head: " + ", ".join(f"{k}: {v}" for k, v in _minimality(ev).items()) + ".")
    if ev.curve is not None:
        lines.append(f"Faithfulness curve over heads in the sketch's order (circuit heads by |score|, then the "
                     f"rest by |output-patching effect|): CPR {ev.curve.cpr}, "
                     f"CMD {ev.curve.cmd}.")
    truth = load_ground_truth(name)
    if truth is not None:
        s = discovery_scores(circuit.heads, circuit.roles, truth)
        lines.append(f"Against `ground_truth.json`: precision {s['precision']:.2f}, recall {s['recall']:.2f}, "
                     f"roles right {s['role_accuracy']:.2f}.")
    lines += [f"Sketch {circuit.seconds:.1f} s, evaluation {ev.seconds:.1f} s on a 2-core CPU.", END]
    return "\n".join(lines)


def _minimality(ev) -> dict[str, str]:
    return {(k if isinstance(k, str) else f"L{k[0]}H{k[1]}"): str(v) for k, v in ev.minimality.items()}


def main() -> None:
    names = sys.argv[1:] or list(ORGANISMS)
    for name in names:
        text = section(name, ORGANISMS[name])
        card = organism_path(name) / "MODEL_CARD.md"
        old = card.read_text()
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        new = pattern.sub(lambda _: text, old) if BEGIN in old else old.rstrip() + "\n\n" + text + "\n"
        card.write_text(new)
        print(text, "\n")


if __name__ == "__main__":
    main()
