"""The day-of-week successor task: "Today it is Monday so tomorrow it is" -> " Tuesday".

Clean prompts fill ``vocab.DAY_TEMPLATES`` with each day; the correct answer is the next day and
the wrong answer is the day named in the prompt (the model's most tempting mistake: copying).
The corrupted prompt names a different day. With ``corruption="previous"`` it names the day
before, so the corrupted prompt's right answer is exactly the clean wrong answer and the logit
difference flips sign; ``"random"`` picks any other day (seeded).
"""

from __future__ import annotations

import random
from typing import Sequence

from circuitscope.tasks import vocab
from circuitscope.tasks.checks import check_flag, check_words
from circuitscope.tasks.task import Task, as_tokenizer, find_token
from circuitscope.tokens import to_single_token

__all__ = ["day_of_week_task"]


def day_of_week_task(
    tokenizer_or_model,
    templates: Sequence[str] | None = None,
    days: Sequence[str] | None = None,
    corruption: str = "previous",
    seed: int = 0,
    prepend_bos: bool = True,
) -> Task:
    """One prompt per (template, day); answers (next day, same day); positions "DAY" and "end".

    ``templates`` contain ``[DAY]`` and ``days`` are in cyclic order (default: Monday..Sunday).
    """
    tokenizer = as_tokenizer(tokenizer_or_model)
    templates = check_words(templates, "templates", vocab.DAY_TEMPLATES)
    days = check_words(days, "days", vocab.DAYS, minimum=3)
    prepend_bos = check_flag(prepend_bos, "prepend_bos")
    if corruption not in ("previous", "random"):
        raise ValueError(f"corruption must be 'previous' or 'random', got {corruption!r}")
    repeated = sorted({d for d in days if days.count(d) > 1})
    if repeated:
        raise ValueError(f"days must be distinct (a cycle), but {repeated} appear more than once")
    missing = [t for t in templates if "[DAY]" not in t]
    if missing:
        raise ValueError(f"every day template must contain the [DAY] slot; these do not: {missing}")
    rng = random.Random(seed)
    prompts, corrupted, answers, day_words = [], [], [], []
    for template in templates:
        for k, day in enumerate(days):
            nxt = days[(k + 1) % len(days)]
            if corruption == "previous":
                other = days[k - 1]
            else:
                other = rng.choice([d for d in days if d != day])
            prompts.append(template.replace("[DAY]", day))
            corrupted.append(template.replace("[DAY]", other))
            answers.append((" " + nxt, " " + day))
            day_words.append(" " + day)
    task = Task.from_prompts(
        tokenizer, prompts, answers, corrupted_prompts=corrupted, prepend_bos=prepend_bos, name="day_of_week"
    )
    day_pos = [find_token(task.clean_tokens[i], to_single_token(tokenizer, w)) for i, w in enumerate(day_words)]
    return task.add_positions({"DAY": day_pos})
