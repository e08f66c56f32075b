"""The named tasks ``circuitscope analyze --task NAME`` knows, and how each is built.

Each entry says which shipped model it runs on by default (no shipped organism does the speaker
task: ``analyze`` then reports that and stops), how many prompts a full and a fast run use, and
builds the :class:`Task` for a model and seed. Any other value of ``--task`` is read as a
task file (JSONL or CSV, see ``task_file.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from circuitscope.tasks.task import Task

__all__ = ["TaskSpec", "TASKS", "build_task", "task_names"]


@dataclass(frozen=True)
class TaskSpec:
    """How to build one named task: ``build(model, n_prompts, seed) -> Task``."""

    name: str
    description: str
    default_model: str
    n_prompts: int
    fast_prompts: int
    build: Callable[..., Task]


def _ioi(model, n: int, seed: int) -> Task:
    from circuitscope.tasks.ioi import ioi_task

    return ioi_task(model, N=n, seed=seed)


def _days(model, n: int, seed: int) -> Task:
    from circuitscope.tasks.days import day_of_week_task

    task = day_of_week_task(model, seed=seed)
    return task if n >= len(task) else task.subset(list(range(n)))


def _induction(model, n: int, seed: int) -> Task:
    from circuitscope.tasks.induction import induction_task

    # "BA" changes the first copy, so keys, values and previous-token information all differ
    # between the runs: path patching can see previous-token heads feeding induction heads' keys.
    return induction_task(model, seq_len=20, batch=n, corruption="BA", seed=seed)


def _speaker(model, n: int, seed: int) -> Task:
    from circuitscope.tasks.speaker import speaker_task

    return speaker_task(model, N=n, seed=seed)


TASKS: dict[str, TaskSpec] = {
    "ioi": TaskSpec("ioi", "indirect object identification: 'When Mary and John ..., John gave a drink to' -> ' Mary' "
                    "(ABC corruption: all three names replaced)", "circuitscope/ioi", 100, 24, _ioi),
    "days": TaskSpec("days", "day-of-week successor: 'The day after Monday is' -> ' Tuesday' "
                     "(corruption: the previous day)", "circuitscope/ioi", 14, 14, _days),
    "induction": TaskSpec("induction", "repeated random tokens [BOS] A A, scored on the second copy "
                          "(corruption BA: the first copy replaced)", "circuitscope/attn-only-2l", 64, 16, _induction),
    "speaker": TaskSpec("speaker", "speaker tracking in short dialogs: who asked / who replied",
                        "circuitscope/ioi", 32, 12, _speaker),
}


def task_names() -> list[str]:
    return list(TASKS)


def build_task(name_or_path: str, model, n_prompts: int | None = None, seed: int = 0, fast: bool = False) -> Task:
    """The named task (``TASKS``) or a task file, built for ``model``.

    ``n_prompts`` overrides the task's default size (``fast`` picks the small one). A task file
    keeps all its rows unless ``n_prompts`` is given.
    """
    spec = TASKS.get(name_or_path)
    if spec is not None:
        n = n_prompts or (spec.fast_prompts if fast else spec.n_prompts)
        return spec.build(model, n, seed)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"unknown task {name_or_path!r}: not one of {', '.join(TASKS)} and no such task file; "
            f"give a task name or a .jsonl/.csv task file (see `circuitscope tasks`)"
        )
    if path.is_dir():
        raise IsADirectoryError(f"task {name_or_path!r} is a folder; give a .jsonl or .csv task file")
    task = Task.from_file(path, model)
    if n_prompts is not None and n_prompts < len(task):
        task = task.subset(list(range(n_prompts)))
    return task
