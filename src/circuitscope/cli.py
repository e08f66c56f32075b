"""Command line: ``circuitscope demo`` runs the IOI analysis on a model (the shipped organism by default).

Layout, so that a new subcommand is a few lines: each command is one function ``name(args)``
registered with ``@command("name", help, add_arguments)``; :func:`main` parses the arguments,
runs the command inside :func:`run_command`, which turns every failure into one line on stderr
and a non-zero exit code (never a traceback; ``-v`` adds it for bug reports). Checks that can
fail without doing any work (``--device``, ``--out``, numeric ranges) run before the model is
loaded, so a typo costs seconds, not a whole run.

Exit codes: 0 success, 1 an unexpected internal error, 2 a bad input (arguments, model, files),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import sys
import traceback
from typing import Callable

import torch

DEFAULT_MODEL = "circuitscope/ioi"
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], object]]] = {}
logger = logging.getLogger("circuitscope.cli")


class CLIError(Exception):
    """A failure whose message is already written for the user (exit code 2)."""


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn(args)`` as the subcommand ``name``."""
    def register(fn):
        COMMANDS[name] = (help, add_arguments, fn)
        return fn
    return register


# ----------------------------------------------------------------------------- argument checks


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def check_device(name: str | None) -> str | None:
    """``name`` if torch can use that device here; otherwise a CLIError saying why."""
    if name is None:
        return None
    from circuitscope.model.load_options import resolve_device

    try:
        device = resolve_device(name)  # the same check loading does, before any loading
    except (ValueError, RuntimeError) as err:
        raise CLIError(f"--device {name}: {err}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise CLIError(f"--device {name}: circuitscope runs on cpu, cuda or mps")
    return name


def check_out(path: str | None) -> None:
    if path is not None:
        from circuitscope.io import check_writable

        try:
            check_writable(path)
        except OSError as err:
            raise CLIError(f"--out: {err}") from None


# ----------------------------------------------------------------------------- commands


def _table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def _demo_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--model", default=DEFAULT_MODEL, help="organism, local HF folder or hub name")
    d.add_argument("--prompts", type=positive_int, default=100, help="number of IOI prompts")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--top", type=positive_int, default=10, help="heads to list (at least 1)")
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: where the model loads)")
    d.add_argument("--out", default=None, help="also write the results as JSON here (checked before the run)")
    d.add_argument("--max-memory-mb", type=positive_float, default=256,
                   help="memory budget in MiB for one batch's activations (default 256); batches are sized to fit")
    d.add_argument("--batch-size", type=positive_int, default=None, help="prompts per batch (default: from the budget)")
    d.add_argument("--patch-prompts", type=non_negative_int, default=20,
                   help="prompts for the activation- and path-patching walk (0 skips it; default 20)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)")


@command("demo", "IOI analysis: logit diffs, logit lens, head attribution", _demo_arguments)
def demo(args: argparse.Namespace) -> dict:
    """Load the model, build the IOI task, measure it in memory-bounded batches and report."""
    from circuitscope import HookedTransformer
    from circuitscope.tasks import ioi_task
    from circuitscope.tasks.summary import summarize_task
    from circuitscope.utils import test_prompt

    device = check_device(args.device)
    check_out(args.out)
    model = HookedTransformer.from_pretrained(args.model, device=device)
    print(model)
    task = ioi_task(model, N=args.prompts, seed=args.seed)
    example = task.prompts[0]
    answer = model.to_string(int(task.answer_tokens[0, 0]))
    print(f"\nExample prompt: {example!r} -> expected {answer!r}")
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # test_prompt may print too; show it once
        shown = test_prompt(example, answer, model, top_k=5, prepend_space_to_answer=False)
    print(shown)

    m = summarize_task(model, task, max_memory_mb=args.max_memory_mb, batch_size=args.batch_size,
                    progress=None if not args.no_progress else False)
    print(f"\nIOI task: {len(task)} prompts (held-out templates), corruption ABB->XYZ, BAB->XYZ"
          f" ({m.n_batches} batch{'es' if m.n_batches > 1 else ''} of up to {m.batch_size})")
    print(f"  clean logit diff (IO - S):     {m.clean_logit_diff:7.3f}")
    print(f"  corrupted logit diff:          {m.corrupted_logit_diff:7.3f}")
    print(f"  IO ranked above S:             {m.io_over_s:7.1%}")
    print("\nLogit lens (logit diff read from the residual stream after each layer):")
    print(_table([(lab, f"{v:.3f}") for lab, v in zip(m.lens_labels, m.logit_lens.tolist())], ("residual", "logit diff")))

    heads = m.head_attribution
    order = heads.flatten().abs().argsort(descending=True)[: args.top]
    rows = [(f"L{i // model.cfg.n_heads}H{i % model.cfg.n_heads}", f"{heads.flatten()[i].item():+.3f}") for i in order.tolist()]
    print(f"\nTop {len(rows)} heads by direct logit attribution (positive: pushes IO over S):")
    print(_table(rows, ("head", "logit diff")))
    result = {"model": args.model, **m.to_dict()}
    if args.patch_prompts:
        result["patching"] = _demo_patching(model, args, heads)
    if args.out:
        from circuitscope.io import write_json_atomic

        print(f"\nwrote {write_json_atomic(args.out, result)}")
    return result


def _demo_patching(model, args: argparse.Namespace, dla: torch.Tensor) -> dict:
    """The seed notebooks' patching walk on a few prompts: every activation-patching sweep, then
    path patching into the logits and into the queries of the heads with the largest direct effect."""
    import time

    from circuitscope import patching
    from circuitscope.tasks import ioi_task

    task = ioi_task(model, N=args.patch_prompts, seed=args.seed + 1)
    progress = False if args.no_progress else None
    print(f"\nActivation patching (denoising: clean activations into the corrupted run; 1 = clean "
          f"behaviour restored, 0 = none) on {len(task)} prompts:")
    out, t0 = {}, time.perf_counter()
    for what, by in (("resid_pre", "pos"), ("attn_out", "pos"), ("mlp_out", "pos"), ("z", "all"), ("z", "pos"),
                     ("q", "all"), ("k", "all"), ("v", "all"), ("pattern", "all")):
        r = patching.sweep(model, task, what, by=by, progress=progress)
        top = r.top(3)
        out[f"{what}_{by}"] = r.to_dict()
        print(f"  {what:>9} {'by position' if by == 'pos' else 'all positions':<14}"
              + "  ".join(f"{label} {value:+.2f}" for label, value, _ in top))
    n_heads = model.cfg.n_heads
    movers = [divmod(i, n_heads) for i in dla.flatten().abs().argsort(descending=True)[:2].tolist()]
    direct = patching.path_patch(model, task, "resid", progress=progress)
    into_q = patching.path_patch(model, task, movers, "q", positions="end", progress=progress)
    names = ", ".join(f"L{a}H{b}" for a, b in movers)
    print("\nPath patching (IOI convention: 0 = clean, -1 = corrupted; sender heads' output from the "
          "corrupted run):")
    for title, r in (("into the logits", direct), (f"into the queries of {names} at END", into_q)):
        print(f"  {title:<40}" + "  ".join(f"{label} {value:+.3f}" for label, value, _ in r.top(3)))
    out["path_direct"], out["path_into_queries"] = direct.to_dict(), into_q.to_dict()
    print(f"  (all patching above: {time.perf_counter() - t0:.1f} s)")
    return out


# ----------------------------------------------------------------------------- entry point

from circuitscope import cli_report  # noqa: E402,F401  (registers analyze, models, tasks)



class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help) instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="circuitscope", description="Find and verify circuits in transformer language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level; show tracebacks")
    sub = parser.add_subparsers(dest="command")
    for name, (help, add_arguments, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help)
        add_arguments(p)
        p.set_defaults(func=fn)
    return parser


def _one_line(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # some libraries colour their messages
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    return text or type(err).__name__


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func(args)``; a failure becomes one line on stderr and an exit code."""
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("circuitscope: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, KeyError, OSError, ImportError) as err:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"circuitscope: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the CLI's promise: no traceback unless asked for
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"circuitscope: error: {type(err).__name__}: {_one_line(err)} (rerun with -v for details)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not any(a in COMMANDS for a in argv) and not any(a in ("-h", "--help") for a in argv):
        argv = [*[a for a in argv if a in ("-v", "--verbose")], "demo", *[a for a in argv if a not in ("-v", "--verbose")]]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
