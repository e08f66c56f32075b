"""``analyze``: the whole walk of the seed notebooks on one model and task, as data.

In the seeds' order: can the model do the task (baselines, accuracy)? where does the answer
appear (logit lens)? who writes it (direct logit attribution per layer and head)? which
activations matter (every activation-patching sweep)? the circuit sketch (direct heads, path
patching into their queries, keys and values, detectors, backup heads) and its evaluation
(faithfulness, completeness, minimality, faithfulness curve). Each step is timed; every number
keeps its 95% interval. :class:`Analysis` holds the results, the figures and the report, and
writes them with :meth:`Analysis.write`.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from circuitscope.analysis.bootstrap import Bootstrap
from circuitscope.circuit.estimate import Estimate, estimate_mean
from circuitscope.circuit.roles import SketchConfig
from circuitscope.tasks.task import Task

__all__ = ["AnalysisOptions", "Analysis", "analyze", "SWEEPS"]

logger = logging.getLogger(__name__)

# (activation, by): the seeds' sweeps: residual stream and block outputs by position, heads by
# position, and every head input/output over all positions.
SWEEPS = (("resid_pre", "pos"), ("attn_out", "pos"), ("mlp_out", "pos"), ("z", "pos"),
          ("z", "all"), ("q", "all"), ("k", "all"), ("v", "all"), ("pattern", "all"))


@dataclass(frozen=True)
class AnalysisOptions:
    """``fast``: fewer resamples (200) and detector prompts (for tests and quick looks; the task's
    size is the caller's); ``ablation``: how the evaluation (and the sketch's backup search)
    removes heads (``"mean"`` over corrupted prompts per position, ``"template_mean"`` the same per
    template, ``"zero"``, ``"resample"``);
    ``sketch``: the sketch's thresholds (its seed, resamples and ablation follow this object's);
    ``attention_prompts``: prompts in the attention views."""

    fast: bool = False
    seed: int = 0
    ablation: str = "mean"
    sketch: SketchConfig = SketchConfig()
    n_resamples: int = 1000
    attention_prompts: int = 3
    progress: bool = True


@dataclass
class Analysis:
    """Everything ``analyze`` found: ``results`` (JSON-ready), ``figures`` (name -> Figure), the
    ``circuit`` and its ``evaluation`` (None when the model cannot do the task), and the task."""

    model_name: str
    task: Task
    results: dict[str, Any]
    figures: dict[str, Any]
    circuit: Any = None
    evaluation: Any = None
    sections: dict[str, Any] = field(default_factory=dict)

    def report(self):
        """The :class:`~circuitscope.report.document.Report` of this analysis."""
        from circuitscope.report.sections import build_report

        return build_report(self)

    def write(self, out_dir, progress: bool = True) -> dict[str, Path]:
        """Write ``report.html``, ``results.json`` and ``figures/*.png`` into ``out_dir``, atomically:
        a run that dies part-way leaves no ``report.html``."""
        from circuitscope.report.writer import write_outputs

        return write_outputs(out_dir, self.report(), self.results, self.figures, progress=progress)


class _Steps:
    """Times each step and advances one progress bar over the walk."""

    def __init__(self, total: int, progress: bool):
        self.timings: dict[str, float] = {}
        self.bar = tqdm(total=total, desc="analyze", disable=not progress)

    @contextmanager
    def __call__(self, name: str):
        self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 3)
        self.bar.update(1)


def _baselines(model, task: Task, ci: Bootstrap) -> dict[str, Any]:
    """Clean and corrupted metric per prompt, accuracy, and whether the model does the task."""
    from circuitscope.tasks.metrics import task_logit_diff, task_span_log_prob

    with torch.no_grad():
        clean_logits, corrupted_logits = task.run(model), task.run(model, corrupted=True)
    if task.span is None:
        clean = task_logit_diff(clean_logits, task, per_prompt=True).float()
        corrupted = task_logit_diff(corrupted_logits, task, per_prompt=True, corrupted=True).float()
        metric = "logit difference (correct - incorrect)"
    else:
        clean = task_span_log_prob(clean_logits, task, per_prompt=True).float()
        corrupted = task_span_log_prob(corrupted_logits, task, per_prompt=True).float()
        metric = "mean log-probability of the scored tokens"
    accuracy = (clean > corrupted).float() if task.span is not None else (clean > 0).float()
    out = {"metric": metric, "clean": estimate_mean(clean, ci), "corrupted": estimate_mean(corrupted, ci),
           "accuracy": estimate_mean(accuracy, ci), "gap": estimate_mean(clean - corrupted, ci)}
    gap = out["gap"]
    out["does_task"] = bool(gap.value > 0 and gap.ci is not None and gap.ci[0] > 0)
    return out


def analyze(model, task: Task, model_name: str = "", options: AnalysisOptions = AnalysisOptions()) -> Analysis:
    """Run the whole walk on ``model`` and ``task`` (see the module docstring)."""
    from circuitscope import __version__, analysis, patching
    from circuitscope.circuit.evaluate import evaluate_circuit
    from circuitscope.circuit.sketch import sketch_circuit
    from circuitscope.patching.plan import check_patchable

    if not isinstance(task, Task):
        raise TypeError(f"analyze needs a Task, got {type(task).__name__}")
    n_resamples = min(options.n_resamples, 200) if options.fast else options.n_resamples
    ci = Bootstrap(n_resamples, seed=options.seed)
    sketch_cfg = replace(options.sketch, n_resamples=n_resamples, seed=options.seed,
                         n_detector_prompts=20 if options.fast else options.sketch.n_detector_prompts,
                         ablation="mean" if options.ablation == "template_mean" else options.ablation)
    answers = task.span is None
    steps = _Steps(7, options.progress)
    t0 = time.perf_counter()
    cfg = model.cfg
    results: dict[str, Any] = {
        "circuitscope_version": __version__, "seed": options.seed, "fast": options.fast,
        "model": {"name": model_name, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model,
                  "d_vocab": cfg.d_vocab, "attn_only": bool(getattr(cfg, "attn_only", False))},
        "task": {"name": task.name, "n_prompts": len(task), "positions": list(task.positions),
                 "example": {"clean": task.prompts[0] if task.prompts else None,
                             "corrupted": task.corrupted_prompts[0] if task.corrupted_prompts else None,
                             "answers": list(task.answers[0]) if task.answers else None}},
    }
    figures: dict[str, Any] = {}
    out = Analysis(model_name, task, results, figures)
    try:
        with steps("baselines"):
            base = _baselines(model, task, ci)
            results["baselines"] = {k: v.to_dict() if isinstance(v, Estimate) else v for k, v in base.items()}
            out.sections["baselines"] = base
        with steps("attribution"):
            if answers:
                for name, fn in (("logit_lens", analysis.logit_lens), ("dla_layers", analysis.layer_attribution),
                                 ("dla_heads", analysis.head_attribution)):
                    res = fn(model, task, task, ci=ci)
                    results[name] = res.to_dict()
                    figures[name] = res.plot(kind="bar", k=16) if name == "dla_layers" else res.plot()
                    out.sections[name] = res
        if not base["does_task"]:
            results["circuit"] = {"heads": [], "roles": {}, "faithfulness": None,
                                  "skipped": "the model does not do this task (clean metric not above corrupted)"}
            return out
        with steps("activation patching"):
            from circuitscope.circuit.experiments import task_metrics

            metric = task_metrics(model, task)[0]  # one clean and one corrupted run for every sweep
            results["patching"] = {}
            for what, by in SWEEPS:
                try:
                    check_patchable(model, what)
                except ValueError:
                    continue  # e.g. mlp_out on an attention-only model
                res = patching.sweep(model, task, what, by=by, metric=metric, per_prompt=True,
                                     progress=options.progress)
                name = f"patch_{what}_{by}"
                results["patching"][name] = res.to_dict()
                figures[name] = res.plot()
                out.sections[name] = res
        with steps("circuit sketch"):
            circuit = sketch_circuit(model, task, sketch_cfg, progress=options.progress)
            out.circuit = circuit
            for name, res in circuit.results.items():
                figures[f"sketch_{name}"] = res.plot()
            figures["circuit_diagram"] = circuit.diagram()
        with steps("attention views"):
            if circuit.heads:
                figures["attention_circuit"] = _attention(model, task, circuit.heads, options.attention_prompts)
        with steps("circuit evaluation"):
            if circuit.heads:
                ranking = circuit.ranking()
                evaluation = evaluate_circuit(model, task, circuit.heads, method=options.ablation, ranking=ranking,
                                              ci=ci, seed=options.seed, progress=options.progress)
                out.evaluation = evaluation
                for name, fig in evaluation.figures().items():
                    figures[f"evaluation_{name}"] = fig
                out.sections["faithfulness_by_method"] = _by_method(model, task, circuit.heads, ci, options)
        with steps("results"):
            results["circuit"] = circuit.to_dict()
            truth = _ground_truth(model_name)
            if truth is not None:
                from circuitscope.circuit.ground_truth import discovery_scores

                results["circuit"]["ground_truth"] = discovery_scores(circuit.heads, circuit.roles, truth)
            if out.evaluation is not None:
                ev = out.evaluation.to_dict()
                results["circuit"]["evaluation"] = ev
                results["circuit"]["faithfulness"] = out.evaluation.faithfulness.to_dict()
                results["circuit"]["faithfulness_by_method"] = {
                    k: v.to_dict() for k, v in out.sections["faithfulness_by_method"].items()}
            else:
                results["circuit"]["faithfulness"] = None
    finally:
        steps.bar.close()
        results["timings"] = {**steps.timings, "total": round(time.perf_counter() - t0, 3)}
    return out


def _by_method(model, task: Task, heads, ci: Bootstrap, options: AnalysisOptions) -> dict[str, Estimate]:
    """The circuit's faithfulness under every ablation method (template means when the task has
    template ids): how much the verdict depends on what "removing" a head means."""
    from circuitscope.circuit.evaluate import faithfulness

    methods = ["mean", "template_mean", "zero", "resample"] if task.groups is not None else ["mean", "zero", "resample"]
    return {m: faithfulness(model, task, heads, method=m, ci=ci, seed=options.seed) for m in methods}


def _ground_truth(model_name: str):
    """The model's ``ground_truth.json`` (planted circuits), if it ships one."""
    from circuitscope.circuit.ground_truth import load_ground_truth

    try:
        return load_ground_truth(model_name) if model_name else None
    except (OSError, ValueError) as err:
        logger.warning("ignoring the ground truth of %s: %s", model_name, err)
        return None


def _attention(model, task: Task, heads, n: int):
    """An attention view of ``heads`` on the first ``n`` clean prompts."""
    from circuitscope.plot import attention_from_cache

    n = min(n, len(task))
    idx = list(range(n))
    lengths = [int(task.answer_pos[i]) + 1 for i in idx]
    tokens = task.clean_tokens[:n, : max(lengths)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    tok = getattr(model, "tokenizer", None)
    show = (lambda t: tok.decode([t])) if tok is not None else (lambda t: f"#{t}")  # ids when there is no tokenizer
    str_tokens = [[show(t) for t in tokens[i, : lengths[i]].tolist()] for i in idx]
    return attention_from_cache(cache, heads, str_tokens, title="Attention of the circuit's heads")
