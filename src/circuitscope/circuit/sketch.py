"""The circuit sketch: the seeds' walk from "which heads write the answer" to a labelled circuit.

1. **Direct heads.** Path-patch every head's direct path to the logits (noising); heads whose
   effect clears ``direct_threshold`` with an interval excluding 0 write the answer directly.
   On tasks with a correct and an incorrect answer, direct logit attribution must agree in sign
   (its own interval excluding 0), and splitting it into the two answers' logits tells a
   *mover* (raises the correct answer) from a *suppressor* (lowers the incorrect one).
2. **What drives them.** Path-patch into the direct heads' queries, keys and values (every
   position); senders that clear ``path_threshold`` join, named by the head detectors
   (previous-token, duplicate-token, induction) or by where they feed (query -> inhibition,
   key/value -> feeder). Repeat one level further down (``max_depth``).
3. **Backup.** Knock the direct heads out; heads whose DLA rises significantly are backup heads.

Every role rests on an effect with a bootstrap interval plus the facts that name it; the
thresholds are in :class:`~circuitscope.circuit.roles.SketchConfig`.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import torch
from tqdm.auto import tqdm

from circuitscope.analysis.bootstrap import Bootstrap
from circuitscope.circuit.circuit import Circuit, Edge, Evidence, HeadRecord, head_label
from circuitscope.circuit.describe import describe
from circuitscope.circuit.estimate import Estimate
from circuitscope.circuit.experiments import (
    answer_split, attention_targets, direct_effects, path_effects, task_metrics, total_effects,
)
from circuitscope.circuit.roles import DETECTOR_ROLES, HeadFacts, SketchConfig, assign_role, detector_matches
from circuitscope.results import Result
from circuitscope.tasks.task import Task

__all__ = ["sketch_circuit"]

logger = logging.getLogger(__name__)
Head = tuple[int, int]


def _est(result: Optional[Result], layer: int, head: int, *index: int) -> Optional[Estimate]:
    if result is None:
        return None
    idx = (*index, layer, head)
    ci = None if result.ci is None else (float(result.ci[0][idx]), float(result.ci[1][idx]))
    return Estimate(float(result.values[idx]), ci)


def sketch_circuit(model, task: Task, config: SketchConfig = SketchConfig(), progress: bool = True,
                   detectors: Optional[dict[str, Result]] = None) -> Circuit:
    """Find the heads behind ``task`` and name their roles (see the module docstring).

    ``detectors`` may pass precomputed :func:`~circuitscope.analysis.detect_heads` results.
    Returns a :class:`Circuit` whose ``results`` hold every experiment for the figures.
    """
    from circuitscope.analysis import backup_heads, detect_heads, head_attribution

    if not isinstance(task, Task):
        raise TypeError(f"sketch_circuit needs a Task (clean/corrupted prompts with answers), got {type(task).__name__}")
    t0 = time.perf_counter()
    metric, ioi_metric = task_metrics(model, task)  # normalised (denoising) and IOI (noising, path) scales
    if not metric.clean_baseline > metric.corrupted_baseline:
        raise ValueError(
            f"the model does not do this task: its metric is {metric.clean_baseline:.4g} on the clean prompts and "
            f"{metric.corrupted_baseline:.4g} on the corrupted ones (clean must be higher); there is no behaviour "
            f"for a circuit to explain (check the answers' order: (correct, incorrect))"
        )
    ci = Bootstrap(config.n_resamples, config.confidence, seed=config.seed)
    answers = task.span is None  # a logit-difference task: DLA, answer split, attention, backup apply
    steps = tqdm(total=5 + 3 * config.max_depth, desc="circuit sketch", disable=not progress, leave=False)

    def step(name: str) -> None:
        steps.set_postfix_str(name)
        steps.update(1)

    results: dict[str, Result] = {}
    try:
        total = total_effects(model, task, ci, metric=metric)
        results["head_output_patching"] = total.as_result("Head output patching (denoising, all positions)")
        step("head output patching")
        direct = direct_effects(model, task, ci, metric=ioi_metric)
        results["direct_path"] = direct.as_result("Direct path to the logits (path patching, noising)")
        step("direct paths")
        dla = split = attn = None
        if answers:
            dla = head_attribution(model, task, task, ci=ci)
            results["dla"] = dla
            split = answer_split(model, task, ci)
            results["dla_correct"], results["dla_incorrect"] = split["correct"], split["incorrect"]
            attn = attention_targets(model, task, ci)
            if attn is not None:
                results["attention_from_end"] = attn[0]
        step("attribution")
        seq_len = max(2, min(20, (model.cfg.n_ctx - 1) // 2))  # [BOS] A A must fit the context
        det = detectors if detectors is not None else detect_heads(
            model, n_prompts=config.n_detector_prompts, seq_len=seq_len,
            generator=torch.Generator().manual_seed(config.seed), ci=ci)
        for kind, res in det.items():
            results[f"detector_{kind}"] = res
        step("detectors")

        def facts(layer, head, level, effect, depth=1):
            return HeadFacts(level, effect, _est(split and split["correct"], layer, head),
                             _est(split and split["incorrect"], layer, head),
                             {k: _est(r, layer, head) for k, r in det.items()}, depth)

        records: dict[str, HeadRecord] = {}
        edges: list[Edge] = []
        drivers: dict[str, list[tuple[str, Estimate]]] = {}  # path result name -> significant senders
        sig = direct.significant(config.direct_threshold)
        if dla is not None:  # DLA must agree: same sign, its own interval excluding zero
            dv, lo, hi = (t.to(direct.values.device) for t in (dla.values, *dla.ci))
            sig &= (torch.sign(dv) == -torch.sign(direct.values)) & ((lo > 0) | (hi < 0))
        for layer, head in sig.nonzero().tolist():
            eff = direct.estimate(layer, head)
            role, reason = assign_role(facts(layer, head, "direct", eff), config)
            rec = HeadRecord(layer, head, role, eff, reason, "direct")
            rec.evidence.append(Evidence("direct path to the logits", "direct_path", eff))
            if dla is not None:
                rec.evidence.append(Evidence("direct logit attribution", "dla", _est(dla, layer, head)))
            records[rec.label] = rec
            edges.append(Edge(rec.label, "logits", "logits", eff))
        frontier = sorted((r.layer, r.head) for r in records.values())

        for depth in range(1, config.max_depth + 1):
            found: dict[Head, tuple[str, Estimate]] = {}
            frontier = [h for h in frontier if h[0] > 0]  # layer-0 heads read only the embeddings
            for inp in "qkv":
                step(f"path patching into {inp} (depth {depth})")
                if not frontier:
                    continue
                eff = path_effects(model, task, frontier, inp, ci, metric=ioi_metric)
                name = f"path_{inp}_depth{depth}"
                results[name] = eff.as_result(f"Path patching into the {inp} of {', '.join(head_label(*h) for h in frontier)}")
                mask = eff.significant(config.path_threshold)
                mask[max(l for l, _ in frontier):] = False  # senders must sit below a receiver
                drivers[name] = []
                for layer, head in mask.nonzero().tolist():
                    e = eff.estimate(layer, head)
                    drivers[name].append((head_label(layer, head), e))
                    if (layer, head) not in found or abs(e.value) > abs(found[(layer, head)][1].value):
                        found[(layer, head)] = (inp, e)
                    label = head_label(layer, head)
                    if label in records:
                        records[label].evidence.append(Evidence(f"path into {inp} of {_whose(depth)}", name, e))
                edges += _edges(model, task, frontier, inp, eff, mask, ci, config, ioi_metric)
            new = []
            for (layer, head), (inp, e) in sorted(found.items()):
                label = head_label(layer, head)
                if label in records:
                    continue
                role, reason = assign_role(facts(layer, head, inp, e, depth), config)
                rec = HeadRecord(layer, head, role, e, reason, f"{inp}@{depth}")
                rec.evidence.append(Evidence(f"path into {inp} of {_whose(depth)}", f"path_{inp}_depth{depth}", e))
                records[label] = rec
                new.append((layer, head))
            frontier = new

        helpers = [(r.layer, r.head) for r in records.values() if r.level == "direct" and r.score.value < 0]
        if answers and helpers:
            backup = backup_heads(model, task, helpers, method=config.ablation, ci=ci)
            results["backup"] = backup
            knocked = float(sum(dla.values[l, h] for l, h in helpers))
            rise = backup.values[2]
            low, high = backup.ci[0][2], backup.ci[1][2]
            mask = (rise.abs() >= config.backup_threshold * abs(knocked)) & (low > 0)
            for layer, head in mask.nonzero().tolist():
                label = head_label(layer, head)
                e = Estimate(float(rise[layer, head]), (float(low[layer, head]), float(high[layer, head])))
                if label not in records:
                    role, reason = assign_role(facts(layer, head, "backup", e), config)
                    records[label] = HeadRecord(layer, head, role, e, reason, "backup")
                records[label].evidence.append(Evidence("DLA rise after knocking out the direct heads", "backup", e))
        step("backup heads")
    finally:
        steps.close()

    for rec in records.values():
        rec.evidence.append(Evidence("head output patching", "head_output_patching", total.estimate(rec.layer, rec.head)))
        for kind in detector_matches({k: _est(r, rec.layer, rec.head) for k, r in det.items()}, config):
            rec.tags.append(f"{DETECTOR_ROLES.get(kind, kind)} score {_est(det[kind], rec.layer, rec.head)}")
            rec.evidence.append(Evidence(f"{kind.replace('_', '-')} detector", f"detector_{kind}", _est(det[kind], rec.layer, rec.head)))
    circuit = Circuit(records, edges, [], results, config, model.cfg.n_layers, model.cfg.n_heads,
                      {"clean": metric.clean_baseline, "corrupted": metric.corrupted_baseline}, task.name, drivers=drivers)
    circuit.description = describe(circuit, attn, split)
    circuit.seconds = time.perf_counter() - t0
    return circuit


def _whose(depth: int) -> str:
    return "the direct heads" if depth == 1 else f"the depth-{depth - 1} heads"


def _edges(model, task, receivers, inp, joint, mask, ci, config, metric) -> list[Edge]:
    """Per-receiver edges for the senders the joint path patch found (one more path patch per
    receiver when there are several; the joint effect is the edge when there is one)."""
    senders = [(l, h) for l, h in mask.nonzero().tolist()]
    if not senders:
        return []
    out = []
    for r in receivers:
        eff = joint if len(receivers) == 1 else path_effects(model, task, [r], inp, ci, metric=metric)
        for layer, head in senders:
            if layer < r[0]:
                e = eff.estimate(layer, head)
                if abs(e.value) >= config.edge_threshold and e.excludes_zero:
                    out.append(Edge(head_label(layer, head), head_label(*r), inp, e))
    return out
