"""CLI commands around the circuit report: ``analyze``, ``models`` and ``tasks``.

``circuitscope analyze`` (no arguments: the IOI task on the shipped ``circuitscope/ioi``
organism) runs the whole walk and writes ``report.html``, ``results.json`` and
``figures/*.png`` into ``--out``; ``models`` and ``tasks`` list what it can run on.
"""

from __future__ import annotations

import argparse
import json

from pathlib import Path

from circuitscope.cli import CLIError, _table, check_device, command, positive_float, positive_int


def _analyze_arguments(p: argparse.ArgumentParser) -> None:
    from circuitscope.tasks.registry import TASKS

    p.add_argument("--task", default="ioi",
                   help=f"one of {', '.join(TASKS)}, or a .jsonl/.csv task file (default: ioi)")
    p.add_argument("--model", default=None,
                   help="organism, local HF folder or hub name (default: the task's shipped organism; "
                        "see `circuitscope models`)")
    p.add_argument("--out", default="circuitscope-report", help="output folder (default: ./circuitscope-report)")
    p.add_argument("--prompts", type=positive_int, default=None, help="number of prompts (default: per task)")
    p.add_argument("--seed", type=int, default=0, help="seed for prompts and bootstrap intervals")
    p.add_argument("--fast", action="store_true", help="few prompts and resamples: a quick look (and the tests)")
    p.add_argument("--ablation", choices=("mean", "template_mean", "zero", "resample"), default="mean",
                   help="how the evaluation removes heads outside the circuit (default: mean over corrupted prompts, "
                        "per position; template_mean: the same per template, for tasks with template ids such as ioi)")
    p.add_argument("--direct-threshold", type=positive_float, default=0.05,
                   help="smallest |direct-path effect| of a direct head, as a fraction of the clean-corrupted gap (0.05)")
    p.add_argument("--path-threshold", type=positive_float, default=0.05,
                   help="smallest |path-patching effect| into a circuit head's q/k/v (0.05)")
    p.add_argument("--detector-threshold", type=positive_float, default=0.5,
                   help="detector score that names a role (previous token, duplicate token, induction; 0.5)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: where the model loads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


@command("analyze", "the whole circuit walk on a task, written as report.html + results.json + PNGs", _analyze_arguments)
def analyze(args: argparse.Namespace) -> dict:
    from circuitscope import HookedTransformer
    from circuitscope.circuit.roles import SketchConfig
    from circuitscope.report.pipeline import AnalysisOptions, analyze as run_analysis
    from circuitscope.tasks.registry import TASKS, build_task

    device = check_device(args.device)
    _check_out_folder(args.out)
    spec = TASKS.get(args.task)
    if spec is None:
        if Path(args.task).is_dir():
            raise CLIError(f"--task {args.task!r} is a folder; give a task name ({', '.join(TASKS)}) or a "
                           f".jsonl/.csv task file")
        if not Path(args.task).is_file():
            raise CLIError(f"--task {args.task!r}: not one of {', '.join(TASKS)} and no such task file "
                           f"(see `circuitscope tasks`)")
    model_name = args.model or (spec.default_model if spec else "circuitscope/ioi")
    try:
        sketch = SketchConfig(direct_threshold=args.direct_threshold, path_threshold=args.path_threshold,
                              detector_threshold=args.detector_threshold)
    except ValueError as err:
        raise CLIError(str(err)) from None
    model = HookedTransformer.from_pretrained(model_name, device=device)
    task = build_task(args.task, model, n_prompts=args.prompts, seed=args.seed, fast=args.fast).to(model.cfg.device)
    options = AnalysisOptions(fast=args.fast, seed=args.seed, ablation=args.ablation, sketch=sketch,
                              progress=not args.no_progress)
    result = run_analysis(model, task, model_name, options)
    paths = result.write(args.out, progress=not args.no_progress)
    circuit = result.results.get("circuit") or {}
    print(f"{task.name} on {model_name}: {len(task)} prompts, {result.results['timings']['total']:.1f} s")
    if circuit.get("heads"):
        print(_table([(k, v) for k, v in circuit["roles"].items()], ("head", "role")))
        faith = circuit.get("faithfulness") or {}
        if faith.get("value") is not None:
            lo, hi = faith.get("ci") or (None, None)
            interval = f" [{lo:.1%}, {hi:.1%}]" if lo is not None and hi is not None else ""
            print(f"faithfulness {faith['value']:.1%}{interval} ({args.ablation} ablation outside the circuit)")
    elif circuit.get("skipped"):
        print(circuit["skipped"])
    print(f"wrote {paths['report']}")
    return result.results


def _check_out_folder(out: str) -> None:
    """``--out`` must be a folder (existing or not) where report.html can be written."""
    from circuitscope.io import check_writable

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {out} is a file; give a folder for report.html, results.json and figures/")
    try:
        check_writable(path / "report.html")
    except OSError as err:
        raise CLIError(f"--out: {err}") from None


def _no_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@command("models", "the shipped model organisms (any local HF folder or hub name works too)", _no_arguments)
def models(args: argparse.Namespace) -> list:
    from circuitscope.organisms import ORGANISMS, organism_path

    rows = []
    for name in ORGANISMS:
        try:
            folder = organism_path(name)
            cfg = json.loads((folder / "config.json").read_text())
            shape = f"{cfg.get('n_layer')} layers x {cfg.get('n_head')} heads, d_model {cfg.get('n_embd')}"
            card = (folder / "MODEL_CARD.md").read_text().split("\n\n")[1].replace("\n", " ") if (folder / "MODEL_CARD.md").exists() else ""
        except (OSError, ValueError, IndexError) as err:
            shape, card = f"unavailable: {err}", ""
        rows.append({"name": name, "shape": shape, "about": card[:100]})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table([(r["name"], r["shape"]) for r in rows], ("model", "architecture")))
        print("\nAlso: any local Hugging Face folder (config.json + weights) or hub name (when online).")
    return rows


@command("tasks", "the named tasks analyze runs (or give a .jsonl/.csv task file)", _no_arguments)
def tasks(args: argparse.Namespace) -> list:
    from circuitscope.tasks.registry import TASKS

    rows = [{"name": s.name, "default_model": s.default_model, "prompts": s.n_prompts, "about": s.description}
            for s in TASKS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table([(r["name"], r["default_model"], r["prompts"], r["about"]) for r in rows],
                     ("task", "default model", "prompts", "what")))
        print("\nAlso: a task file, one prompt per line: JSONL {\"prompt\", \"answer\", \"wrong_answer\", "
              "\"corrupted_prompt\"?} or CSV with those columns.")
    return rows
