"""Task builders given bad arguments: each raises an error that names the argument.

Before these checks each case below built a task that looked fine and measured the wrong thing
(``prepend_bos="no"`` prepended BOS; ``names="MaryJohnTom"`` used one-letter names; ``names=[]``
used the default names; ``answers=["ab", "cd"]`` read 'a' vs 'b'), or failed deep inside with an
unrelated message. Each test fails on that code.
"""

from __future__ import annotations

import logging

import pytest
import torch

from circuitscope.tasks import (
    IOIDataset,
    Task,
    TaskError,
    day_of_week_task,
    induction_task,
    ioi_task,
    simple_ioi_task,
    speaker_task,
)

PROMPTS = [
    "When Mary and John went to the store, John gave a bag to",
    "When Mary and John went to the store, Mary gave a bag to",
]
ANSWERS = [(" Mary", " John"), (" John", " Mary")]


# ------------------------------------------------------------------ prepend_bos must be a bool


@pytest.mark.parametrize(
    "build",
    [
        lambda tok, bos: IOIDataset("mixed", 4, tok, prepend_bos=bos),
        lambda tok, bos: ioi_task(tok, N=4, prepend_bos=bos),
        lambda tok, bos: Task.from_prompts(tok, PROMPTS, ANSWERS, prepend_bos=bos),
        lambda tok, bos: day_of_week_task(tok, prepend_bos=bos),
        lambda tok, bos: induction_task(tok, prepend_bos=bos),
        lambda tok, bos: speaker_task(tok, N=2, prepend_bos=bos),
        lambda tok, bos: simple_ioi_task(tok, prepend_bos=bos),
    ],
    ids=["IOIDataset", "ioi_task", "from_prompts", "days", "induction", "speaker", "simple_ioi"],
)
@pytest.mark.parametrize("bos", ["no", "False", 0, None])
def test_prepend_bos_must_be_a_bool(tiny_tokenizer, build, bos):
    with pytest.raises(TypeError, match=r"prepend_bos must be True or False, got"):
        build(tiny_tokenizer, bos)


# ------------------------------------------------------------------ word lists


def test_names_as_one_string_is_refused(tiny_tokenizer):
    with pytest.raises(TypeError, match=r"names must be a list of strings, got the single string 'MaryJohnTom'.*one character"):
        IOIDataset("mixed", 4, tiny_tokenizer, names="MaryJohnTom")


@pytest.mark.parametrize("arg", ["names", "places", "objects", "templates"])
def test_empty_word_list_is_not_replaced_by_defaults(tiny_tokenizer, arg):
    with pytest.raises(ValueError, match=rf"{arg} is empty.*{arg}=None to use the defaults"):
        IOIDataset("mixed", 4, tiny_tokenizer, **{arg: []})


def test_string_places_and_non_string_names(tiny_tokenizer):
    with pytest.raises(TypeError, match="places must be a list of strings"):
        IOIDataset("mixed", 4, tiny_tokenizer, places="park")
    with pytest.raises(TypeError, match=r"names must hold non-empty strings, got \[3\]"):
        IOIDataset("mixed", 4, tiny_tokenizer, names=["Mary", "John", 3])


def test_given_names_that_are_not_single_tokens_are_named_in_a_warning(tiny_tokenizer, caplog):
    names = ["Mary", "John", "Tom", "Alice", "Bob", "Sarah", "David", "Paul", "Mark", "Emma", "Zyzzyva"]
    with caplog.at_level(logging.WARNING):
        ds = IOIDataset("mixed", 8, tiny_tokenizer, names=names)
    assert "Zyzzyva" in caplog.text and "Zyzzyva" not in ds.names


@pytest.mark.parametrize("n, err", [(10.5, TypeError), (True, TypeError), (0, ValueError), ("8", TypeError)])
def test_prompt_counts_are_checked(tiny_tokenizer, n, err):
    with pytest.raises(err, match="N must be"):
        IOIDataset("mixed", n, tiny_tokenizer)
    with pytest.raises(err, match="N must be"):
        speaker_task(tiny_tokenizer, N=n)


def test_day_of_week_word_lists(tiny_tokenizer):
    with pytest.raises(ValueError, match="days is empty"):
        day_of_week_task(tiny_tokenizer, days=[])
    with pytest.raises(TypeError, match="days must be a list of strings, got the single string"):
        day_of_week_task(tiny_tokenizer, days="MondayTuesdayWednesday")
    with pytest.raises(TypeError, match="templates must be a list of strings"):
        day_of_week_task(tiny_tokenizer, templates="Today it is [DAY] so tomorrow it is")
    with pytest.raises(ValueError, match=r"days must be distinct.*\['Monday'\]"):
        day_of_week_task(tiny_tokenizer, days=["Monday", "Tuesday", "Monday", "Friday"])


def test_speaker_questions_and_names(tiny_tokenizer):
    with pytest.raises(TypeError, match="questions must be a list of strings, got the single string 'asker'"):
        speaker_task(tiny_tokenizer, questions="asker")
    assert len(speaker_task(tiny_tokenizer, N=2, questions=["asker"])) == 2
    with pytest.raises(ValueError, match="names is empty"):
        speaker_task(tiny_tokenizer, names=[])


# ------------------------------------------------------------------ Task.from_prompts


def test_from_prompts_refuses_strings_where_lists_belong(tiny_tokenizer):
    with pytest.raises(TypeError, match="prompts must be a list, got the single string"):
        Task.from_prompts(tiny_tokenizer, "ab", [(" Mary", " John"), (" John", " Mary")])
    with pytest.raises(ValueError, match=r"prompt 0: answers must be \(correct, incorrect\) pairs"):
        Task.from_prompts(tiny_tokenizer, PROMPTS, ["ab", "cd"])


@pytest.mark.parametrize("bad", [True, 2.0, None])
def test_from_prompts_answer_types(tiny_tokenizer, bad):
    with pytest.raises(TaskError, match="prompt 0: answer must be a string .* or a token id"):
        Task.from_prompts(tiny_tokenizer, PROMPTS, [(bad, " John"), ANSWERS[1]])


def test_from_prompts_non_string_prompt_is_named_as_such(tiny_tokenizer):
    with pytest.raises(TaskError, match=r"prompt 1: the prompt must be a string, got 42"):
        Task.from_prompts(tiny_tokenizer, [PROMPTS[0], 42], ANSWERS)
    with pytest.raises(TaskError, match=r"prompt 0: the corrupted_prompt must be a string"):
        Task.from_prompts(tiny_tokenizer, PROMPTS, ANSWERS, corrupted_prompts=[7, PROMPTS[0]])


def test_fractional_positions_are_refused(tiny_tokenizer):
    with pytest.raises(TaskError, match=r"positions\['X'\] must hold whole token indices"):
        Task.from_prompts(tiny_tokenizer, PROMPTS, ANSWERS, positions={"X": [1.5, 2]})


# ------------------------------------------------------------------ induction pools


def test_induction_pool_with_one_token_is_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match="token_pool has 1 distinct token.*always be the same token"):
        induction_task(tiny_tokenizer, token_pool=[100, 100, 100])


def test_induction_answers_always_differ_even_with_a_tiny_pool(tiny_tokenizer):
    task = induction_task(tiny_tokenizer, seq_len=4, batch=64, token_pool=[100, 101], corruption="BC")
    assert (task.answer_tokens[:, 0] != task.answer_tokens[:, 1]).all()
    off = 1
    assert torch.equal(task.clean_tokens[:, off + 3], task.answer_tokens[:, 1])  # A's last token is still in place
    assert torch.equal(task.clean_tokens[:, -1], task.answer_tokens[:, 1])


def test_induction_corruption_equal_to_clean_is_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match="identical to the clean one"):
        induction_task(tiny_tokenizer, seq_len=2, batch=64, token_pool=[100, 101], corruption="AB")


@pytest.mark.parametrize("kw, match", [({"token_pool": [1.5, 2.5]}, "integer token ids"), ({"token_pool": "abc"}, "not a string"),
                                       ({"seq_len": 4.0}, "seq_len must be an integer"), ({"corruption": 3}, "corruption must be a string")])
def test_induction_argument_types(tiny_tokenizer, kw, match):
    with pytest.raises(TypeError, match=match):
        induction_task(tiny_tokenizer, **kw)


def test_induction_default_pool_unchanged_for_usual_seeds(tiny_tokenizer):
    """Redrawing only touches rows whose answers coincide, so ordinary draws are as before."""
    gen = torch.Generator().manual_seed(0)
    from circuitscope.tasks import default_token_pool

    pool = default_token_pool(tiny_tokenizer)
    a = pool[torch.randint(len(pool), (8, 20), generator=gen)]
    assert (a[:, 0] != a[:, -1]).all()
    assert torch.equal(induction_task(tiny_tokenizer, seed=0).clean_tokens[:, 1:21], a)


# ------------------------------------------------------------------ Task and metric inputs


def test_task_refuses_float_tokens_and_answer_positions_outside_the_batch():
    clean = torch.tensor([[0, 5, 6, 7], [0, 8, 9, 0]])
    answers = torch.tensor([[1, 2], [3, 4]])
    with pytest.raises(TypeError, match="answer_tokens must hold integers"):
        Task(clean, clean, answers.float(), torch.tensor([3, 2]))
    with pytest.raises(TypeError, match="clean_tokens must hold integers"):
        Task(clean.float(), clean.float(), answers, torch.tensor([3, 2]))
    with pytest.raises(ValueError, match=r"answer_pos must lie in \[0, 4\)"):
        Task(clean, clean, answers, torch.tensor([4, 2]))
    with pytest.raises(ValueError, match=r"answer_pos must lie in \[0, 4\)"):
        Task(clean, clean, answers, torch.tensor([-1, 2]))


def test_metrics_refuse_negative_positions_and_float_answers():
    from circuitscope.tasks import logit_diff

    logits = torch.randn(2, 4, 10)
    with pytest.raises(ValueError, match="answer position -1 is negative"):
        logit_diff(logits, torch.tensor([[1, 2], [3, 4]]), torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match="answer_tokens must be integer token ids"):
        logit_diff(logits, torch.tensor([[1.7, 2.0], [3.0, 4.0]]), torch.tensor([3, 2]))
