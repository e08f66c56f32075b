"""Speaker attribution: read a short dialog, then name who asked (or who answered).

Each prompt is a three-turn exchange between [A] (asks a question) and [B] (replies), followed by
"Question: Who asked about the <topic>? Answer:" (correct: A, wrong: B) or "Who answered the
question about the <topic>?" (correct: B, wrong: A). The corrupted prompt swaps the two speakers'
names everywhere, so it has the same tokens in other places, the same length, and the opposite
correct answer: clean and corrupted baselines differ for any model that tracks speakers. (A
corruption that leaves the answer unchanged makes the normalised metric undefined, and
``NormalizedMetric`` says so.)
"""

from __future__ import annotations

import random
from typing import Sequence

from circuitscope.tasks import vocab
from circuitscope.tasks.checks import check_count, check_flag, check_words
from circuitscope.tasks.checks import filter_names
from circuitscope.tasks.task import Task, as_tokenizer, find_token
from circuitscope.tokens import to_single_token

__all__ = ["speaker_task", "SPEAKER_DIALOGS"]

# (dialog with [A] asking and [B] replying, topic). Names always follow a space.
SPEAKER_DIALOGS = [
    ("In the chat, [A] asked: Did you see the game last night? [B] said: No, I was at the "
     "library. [A] said: You missed a great match.", "game"),
    ("At lunch, [A] asked: Have you finished the report? [B] said: Almost, I need one more "
     "day. [A] said: Send it when it is ready.", "report"),
    ("On the phone, [A] asked: Are you coming to the party? [B] said: Yes, I will bring a "
     "cake. [A] said: Great, see you there.", "party"),
    ("In the office, [A] asked: Where did you put the key? [B] said: It is in the top drawer. "
     "[A] said: Thanks, I found it.", "key"),
]
QUESTIONS = {
    "asker": " Question: Who asked about the {topic}? Answer:",
    "replier": " Question: Who answered the question about the {topic}? Answer:",
}


def _fill(dialog: str, a: str, b: str) -> str:
    return dialog.replace("[A]", a).replace("[B]", b)


def speaker_task(
    tokenizer_or_model,
    N: int = 8,
    seed: int = 0,
    names: Sequence[str] | None = None,
    questions: Sequence[str] = ("asker", "replier"),
    prepend_bos: bool = True,
) -> Task:
    """``N`` dialog prompts cycling through the dialogs and question kinds; names seeded.

    Positions: "asker" and "replier" (each speaker's first mention) and "end".
    """
    tokenizer = as_tokenizer(tokenizer_or_model)
    N = check_count(N, "N")
    prepend_bos = check_flag(prepend_bos, "prepend_bos")
    questions = check_words(questions, "questions", ())
    unknown = set(questions) - set(QUESTIONS)
    if unknown:
        raise ValueError(f"questions must be a non-empty subset of {sorted(QUESTIONS)}, got {list(questions)}")
    pool = filter_names(tokenizer, check_words(names, "names", vocab.NAMES, minimum=2), explicit=names is not None)
    rng = random.Random(seed)
    prompts, corrupted, answers, speakers = [], [], [], []
    for i in range(N):
        dialog, topic = SPEAKER_DIALOGS[i % len(SPEAKER_DIALOGS)]
        # alternate question kinds, shifted every round of dialogs so each dialog gets both
        kind = questions[(i + i // len(SPEAKER_DIALOGS)) % len(questions)]
        a, b = rng.sample(pool, 2)
        question = QUESTIONS[kind].format(topic=topic)
        prompts.append(_fill(dialog, a, b) + question)
        corrupted.append(_fill(dialog, b, a) + question)
        right, wrong = (a, b) if kind == "asker" else (b, a)
        answers.append((" " + right, " " + wrong))
        speakers.append((a, b))
    task = Task.from_prompts(
        tokenizer, prompts, answers, corrupted_prompts=corrupted, prepend_bos=prepend_bos, name="speaker"
    )
    asker, replier = [], []
    for i, (a, b) in enumerate(speakers):
        asker.append(find_token(task.clean_tokens[i], to_single_token(tokenizer, " " + a)))
        replier.append(find_token(task.clean_tokens[i], to_single_token(tokenizer, " " + b)))
    return task.add_positions({"asker": asker, "replier": replier})
