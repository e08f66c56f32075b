"""The report's sections, in the order the seed notebooks walk: task, logit lens, attribution,
activation patching, attention, path patching, head roles, the circuit, its evaluation."""

from __future__ import annotations

import html
from typing import Any

from circuitscope.report.document import Report

__all__ = ["build_report"]

_SWEEP_CAPTIONS = {
    "patch_resid_pre_pos": "Residual stream before each layer, patched position by position (denoising: clean into corrupted; 1 = fully restores the clean behaviour).",
    "patch_attn_out_pos": "Attention-layer outputs patched position by position.",
    "patch_mlp_out_pos": "MLP outputs patched position by position.",
    "patch_z_pos": "Each head's output (z) patched position by position.",
    "patch_z_all": "Each head's output patched at every position at once.",
    "patch_q_all": "Each head's queries patched at every position.",
    "patch_k_all": "Each head's keys patched at every position.",
    "patch_v_all": "Each head's values patched at every position.",
    "patch_pattern_all": "Each head's attention pattern patched.",
}


def _fig(section, analysis, name: str, caption: str = "") -> None:
    fig = analysis.figures.get(name)
    if fig is not None:
        section.figure(name, fig, caption)


def build_report(analysis) -> Report:
    """The :class:`Report` of an :class:`~circuitscope.report.pipeline.Analysis`."""
    res, task = analysis.results, analysis.task
    model = res["model"]
    report = Report(
        f"Circuit report: {task.name} on {analysis.model_name or 'model'}",
        subtitle=f"{len(task)} prompts, seed {res['seed']}{' (fast mode)' if res['fast'] else ''}",
        meta={"model": analysis.model_name, "layers x heads": f"{model['n_layers']} x {model['n_heads']}",
              "task": task.name, "prompts": len(task), "circuitscope": res["circuitscope_version"],
              "seed": res["seed"], "total time (s)": res.get("timings", {}).get("total")},
    )
    _summary(report, analysis)
    base = analysis.sections["baselines"]
    sec = report.section("task", "Can the model do the task?",
                         "The task metric on the clean prompts and on the corrupted prompts (the corruption removes "
                         "the information the behaviour needs), with 95% bootstrap intervals over prompts.")
    sec.table(["quantity", "value [95% CI]"],
              [[f"clean {base['metric']}", base["clean"]], [f"corrupted {base['metric']}", base["corrupted"]],
               ["clean - corrupted", base["gap"]], ["accuracy", base["accuracy"]]])
    ex = res["task"]["example"]
    if ex.get("clean"):
        sec.table(["", "example"], [["clean", ex["clean"]], ["corrupted", ex.get("corrupted") or ""],
                                   ["answers (correct, incorrect)", " / ".join(map(repr, ex.get("answers") or []))]])
    if "logit_lens" in analysis.figures:
        sec = report.section("logit-lens", "Logit lens",
                             "The logit difference read off the residual stream after each layer: where the answer appears.")
        _fig(sec, analysis, "logit_lens")
        sec = report.section("attribution", "Direct logit attribution",
                             "What each layer and each head writes directly onto the logit difference at the answer position.")
        _fig(sec, analysis, "dla_layers")
        _fig(sec, analysis, "dla_heads")
        _fig(sec, analysis, "sketch_dla_correct", "Each head's direct effect on the correct answer's logit (centred).")
        _fig(sec, analysis, "sketch_dla_incorrect", "... and on the incorrect answer's logit: a suppressor pushes it down.")
    if not base["does_task"]:
        report.section("stopped", "No circuit to find").text(
            "The model does not do this task (the clean metric is not above the corrupted one with 95% confidence), "
            "so there is no behaviour to localise; patching and the circuit sketch were skipped.")
        return report
    sec = report.section("patching", "Activation patching",
                         "Each activation of the clean run patched into the corrupted run, one at a time (exact; "
                         "normalised so 0 = corrupted, 1 = clean).")
    for name, caption in _SWEEP_CAPTIONS.items():
        _fig(sec, analysis, name, caption)
    circuit = analysis.circuit
    sec = report.section("attention", "Attention of the circuit's heads",
                         "Where the circuit's heads look, on the first prompts (hover or click a token).")
    if "attention_circuit" in analysis.figures:
        sec.attention("attention_circuit", analysis.figures["attention_circuit"])
    _fig(sec, analysis, "sketch_attention_from_end", "Attention from the answer position to each labelled position.")
    sec = report.section("path-patching", "Path patching",
                         "Each head's effect through one path only (noising; 0 = no effect, -1 = the whole "
                         "clean-to-corrupted drop): directly to the logits, and into the queries, keys and values "
                         "of the circuit's heads. Effects are paired per prompt.")
    _fig(sec, analysis, "sketch_direct_path")
    for name in sorted(n for n in analysis.figures if n.startswith("sketch_path_")):
        _fig(sec, analysis, name)
    sec = report.section("roles", "Head detectors and backup heads",
                         "Previous-token, duplicate-token and induction scores on repeated random tokens; the DLA "
                         "change when the direct heads are knocked out.")
    for name in ("sketch_detector_previous_token", "sketch_detector_duplicate_token", "sketch_detector_induction",
                 "sketch_head_output_patching", "sketch_backup"):
        _fig(sec, analysis, name)
    sec = report.section("circuit", "The circuit", "")
    sec.text(circuit.description)
    sec.table(["head", "role", "score [95% CI]", "why"], circuit.rows())
    sec.html(_evidence_table(circuit, analysis.figures))
    sec.diagram("circuit_diagram", analysis.figures["circuit_diagram"],
                "Roles as nodes (layer 0 at the bottom), path-patching effects as edges into q/k/v and the logits.")
    _evaluation(report, analysis)
    _reproduce(report, analysis)
    return report


def _evidence_table(circuit, figures) -> str:
    """Every head's evidence, each number linked to the figure that shows it."""
    rows = []
    for rec in sorted(circuit.records.values(), key=lambda r: (-r.layer, r.head)):
        items = []
        for ev in rec.evidence:
            name = f"sketch_{ev.figure}"
            text = f"{html.escape(ev.experiment)}: {html.escape(str(ev.value))}"
            items.append(f'<a href="#fig-{html.escape(name)}">{text}</a>' if name in figures else text)
        rows.append(f"<tr><td>{html.escape(rec.label)}</td><td>{html.escape(rec.role)}</td>"
                    f"<td>{'<br>'.join(items)}</td></tr>")
    return ('<div class="cs-table-wrap"><table class="cs-table"><caption>Evidence for each head (links go to the figures)</caption>'
            "<thead><tr><th>head</th><th>role</th><th>evidence [95% CI]</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _summary(report: Report, analysis) -> None:
    res = analysis.results
    circuit = res.get("circuit") or {}
    bullets = []
    base = analysis.sections["baselines"]
    bullets.append(f"Task metric: clean {base['clean']:.3g}, corrupted {base['corrupted']:.3g}, accuracy {base['accuracy']:.2f}.")
    if circuit.get("heads"):
        roles = ", ".join(f"{k} ({v})" for k, v in circuit["roles"].items())
        bullets.append(f"Circuit: {roles}.")
    faith = circuit.get("faithfulness") or {}
    if faith.get("value") is not None:
        lo, hi = faith.get("ci") or (None, None)
        interval = f" [{lo:.1%}, {hi:.1%}]" if lo is not None and hi is not None else ""
        bullets.append(f"Faithfulness: {faith['value']:.1%}{interval} of the model's metric kept with "
                       f"every head outside the circuit ablated.")
    truth = circuit.get("ground_truth")
    if truth:
        bullets.append(f"Against the planted circuit in the model's ground_truth.json: precision {truth['precision']:.2f}, "
                       f"recall {truth['recall']:.2f}, roles right {truth['role_accuracy']:.2f}"
                       f"{'; missed ' + str(truth['missed']) if truth['missed'] else ''}"
                       f"{'; extra ' + str(truth['extra']) if truth['extra'] else ''}.")
    if circuit.get("skipped"):
        bullets.append(circuit["skipped"])
    sec = report.section("summary", "Summary")
    sec.text(bullets)
    if analysis.circuit is not None:
        sec.text(analysis.circuit.description)


def _evaluation(report: Report, analysis) -> None:
    ev = analysis.evaluation
    if ev is None:
        return
    how = {"mean": "by its mean over the corrupted prompts, position by position",
           "zero": "by zero", "resample": "by its activation on another corrupted prompt"}.get(ev.method, ev.method)
    sec = report.section("evaluation", "Does the circuit explain the behaviour?",
                         f"Every head outside the circuit is replaced {how} ({ev.method} ablation); faithfulness "
                         "compares the circuit's metric with the full model's.")
    rows: list[list[Any]] = [["model F(M)", ev.model_value], ["circuit F(C)", ev.circuit_value],
                             ["nothing F(empty)", ev.empty_value], [f"faithfulness ({ev.faithfulness_kind})", ev.faithfulness],
                             ["normalized faithfulness", ev.normalized_faithfulness]]
    comp = ev.completeness
    if comp is not None:
        rows.append([f"incompleteness max_K |F(C\\K) - F(M\\K)| (worst K = {comp.worst.label}, {comp.worst.kind})",
                     comp.score])
    curve = getattr(ev, "curve", None)
    if curve is not None:
        rows += [["CPR (area under the faithfulness curve)", curve.cpr], ["CMD (area between curve and 1)", curve.cmd]]
    sec.table(["quantity", "value [95% CI]"], rows)
    by_method = analysis.sections.get("faithfulness_by_method")
    if by_method:
        what = {"mean": "mean over the corrupted prompts, per position",
                "template_mean": "mean over the corrupted prompts of the same template, per position (IOI paper)",
                "zero": "zero", "resample": "another corrupted prompt's activation"}
        sec.table(["ablation outside the circuit", f"faithfulness ({ev.faithfulness_kind}) [95% CI]"],
                  [[f"{m}: {what.get(m, m)}", est] for m, est in by_method.items()],
                  caption="The same circuit under each way of removing the other heads.")
    for name in sorted(n for n in analysis.figures if n.startswith("evaluation_")):
        _fig(sec, analysis, name)


def _reproduce(report: Report, analysis) -> None:
    res = analysis.results
    sec = report.section("reproduce", "Timings and reproduction")
    sec.table(["step", "seconds"], [[k, v] for k, v in res.get("timings", {}).items()])
    sec.text(f"circuitscope {res['circuitscope_version']}, seed {res['seed']}; every number above is in results.json.")
