"""The small hand-written IOI set: 8 prompts in 4 pairs, corrupted by swapping neighbours.

Each pair uses one sentence frame and two names; the two prompts differ only in which name is
repeated (S2), so their answers are swapped. Using the neighbour as the corrupted prompt flips
the answer while keeping every other token, which makes the logit difference change sign: the
quickest sanity check that a model does IOI at all.
"""

from __future__ import annotations

from circuitscope.tasks.checks import check_flag
from circuitscope.tasks.task import Task, as_tokenizer, find_token
from circuitscope.tokens import to_single_token

__all__ = ["simple_ioi_task", "SIMPLE_IOI_FRAMES"]

# (frame, first name, second name); "{}" is where the repeated subject goes.
SIMPLE_IOI_FRAMES = [
    ("When Lisa and Mark went to the market,{} gave an apple to", "Lisa", "Mark"),
    ("After Tom and Emma arrived at the library,{} lent a book to", "Tom", "Emma"),
    ("While Sarah and Paul were at the beach,{} passed the bottle to", "Sarah", "Paul"),
    ("Once David and Anna reached the museum,{} showed the letter to", "David", "Anna"),
]


def simple_ioi_task(tokenizer_or_model, prepend_bos: bool = True) -> Task:
    """Eight IOI prompts with (IO, S) answers; prompt 2k and 2k+1 are each other's corruption.

    Positions: "IO", "S1", "S2" and "end" (the token before the answer).
    """
    tokenizer = as_tokenizer(tokenizer_or_model)
    prepend_bos = check_flag(prepend_bos, "prepend_bos")
    prompts, answers = [], []
    for frame, first, second in SIMPLE_IOI_FRAMES:
        for subject, io in ((second, first), (first, second)):
            prompts.append(frame.format(" " + subject))
            answers.append((" " + io, " " + subject))
    task = Task.from_prompts(
        tokenizer, prompts, answers, pairing="swap_adjacent", prepend_bos=prepend_bos, name="simple_ioi"
    )
    io_pos, s1_pos, s2_pos = [], [], []
    for i, (io, subject) in enumerate(answers):
        row = task.clean_tokens[i]
        io_id, s_id = to_single_token(tokenizer, io), to_single_token(tokenizer, subject)
        io_pos.append(find_token(row, io_id))
        s1_pos.append(find_token(row, s_id))
        s2_pos.append(find_token(row, s_id, s1_pos[-1] + 1))
    return task.add_positions({"IO": io_pos, "S1": s1_pos, "S2": s2_pos})
