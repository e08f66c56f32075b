"""path_patch(per_prompt=True): each prompt's value equals the literal three-step path patch read
on that prompt alone, and the mean over prompts equals the ordinary result."""

import pytest
import torch

from circuitscope import HookedTransformer, patching
from circuitscope.patching.path import _receiver_rows
from circuitscope.patching.path_hooked import hooked_path_patch
from circuitscope.tasks import ioi_task


@pytest.fixture(scope="module")
def setup():
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    return model, ioi_task(model, N=10, seed=3)


@pytest.mark.parametrize("receivers,inp,pos", [("resid", "resid", None), ([(3, 3), (3, 0)], "q", "end"), ([(2, 1)], "v", None)])
def test_per_prompt_matches_literal_path_patch(setup, receivers, inp, pos):
    model, task = setup
    plain = patching.path_patch(model, task, receivers, inp, positions=pos, progress=False)
    per = patching.path_patch(model, task, receivers, inp, positions=pos, progress=False, per_prompt=True)
    assert per.per_prompt.shape == (len(task), model.cfg.n_layers, model.cfg.n_heads)
    torch.testing.assert_close(per.values, plain.values, atol=1e-5, rtol=0)
    lo, hi = per.ci
    assert bool((lo <= per.values + 1e-6).all() and (per.values <= hi + 1e-6).all())
    metric = task.patching_metric(model, convention="ioi")
    heads = [] if receivers == "resid" else receivers
    rows = _receiver_rows(task, pos, task.clean_tokens.shape[1], len(task))
    for i in (0, 7):
        def one_prompt(logits, i=i):
            sel = logits[torch.arange(len(task)), task.answer_pos].gather(1, task.answer_tokens)
            diff = (sel[:, 0] - sel[:, 1])[i]
            return (diff - metric.clean_baseline) / (metric.clean_baseline - metric.corrupted_baseline)
        ref, _ = hooked_path_patch(model, task.clean_tokens, task.corrupted_tokens, heads, inp, rows, True, one_prompt, False)
        torch.testing.assert_close(per.per_prompt[i], ref, atol=1e-5, rtol=0)


def test_per_prompt_needs_a_task_metric(setup):
    model, task = setup
    with pytest.raises(ValueError, match="scores prompts one by one"):
        patching.path_patch(model, task, metric=lambda logits: logits[:, -1, 0].mean(), per_prompt=True, progress=False)


def test_negative_receiver_positions_count_from_the_batch_end():
    from circuitscope.tasks import induction_task

    model = HookedTransformer.from_pretrained("circuitscope/attn-only-2l")
    task = induction_task(model, seq_len=8, batch=6, corruption="BA")
    last = patching.path_patch(model, task, [(1, 2)], "q", positions=-1, progress=False)
    end = patching.path_patch(model, task, [(1, 2)], "q", positions="end", progress=False)
    torch.testing.assert_close(last.values, end.values, atol=1e-6, rtol=0)
    width = task.clean_tokens.shape[1]
    early = patching.path_patch(model, task, [(1, 2)], "v", positions=3 - width, progress=False)
    same = patching.path_patch(model, task, [(1, 2)], "v", positions=3, progress=False)
    torch.testing.assert_close(early.values, same.values, atol=1e-6, rtol=0)
    assert early.values.abs().max() > 1e-3


def test_receiver_positions_in_the_padding_are_refused(setup):
    model, task = setup  # IOI prompts of different lengths, right-padded
    with pytest.raises(ValueError, match="outside its .* real tokens.*positions='end'"):
        patching.path_patch(model, task, [(3, 3)], "q", positions=-1, progress=False)
