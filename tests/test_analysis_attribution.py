"""Direct logit attribution and the logit lens on the shipped organisms.

The decomposition identity is the check that matters: every component's direct effect, plus the
constant the unembedding adds, sums to the logit difference the model actually produces, on
every prompt. It must hold for processed and unprocessed weights, from a Task or a cache.
"""

import pytest
import torch

from circuitscope import HookedTransformer
from circuitscope.analysis import (
    Bootstrap,
    component_attribution,
    head_attribution,
    layer_attribution,
    logit_difference,
    logit_lens,
)
from circuitscope.tasks import ioi_task

ORGANISMS = ["circuitscope/ioi", "circuitscope/attn-only-2l"]


@pytest.fixture(scope="module", params=ORGANISMS)
def model(request):
    return HookedTransformer.from_pretrained(request.param)


@pytest.fixture(scope="module")
def task(model):
    return ioi_task(model, N=24, seed=3)


def _true_logit_diff(model, task):
    with torch.no_grad():
        return task.logit_diff(model(task.clean_tokens), per_prompt=True)  # [prompt]


def test_components_sum_to_the_logit_difference(model, task):
    truth = _true_logit_diff(model, task)
    for fn in (component_attribution, layer_attribution):
        result = fn(model, task, ci=False)
        assert result.labels[0][-1] == "unembed_bias"
        torch.testing.assert_close(result.per_prompt.sum(1), truth, atol=2e-3, rtol=1e-4)
    lens = logit_lens(model, task, ci=False)
    assert lens.labels[0][-1] == "final_post"
    torch.testing.assert_close(lens.per_prompt[:, -1], truth, atol=2e-3, rtol=1e-4)
    torch.testing.assert_close(logit_difference(model, task, ci=False).per_prompt[:, 0], truth, atol=1e-4, rtol=1e-5)


def test_heads_are_the_head_entries_of_the_full_decomposition(model, task):
    heads = head_attribution(model, task, ci=False)
    comp = component_attribution(model, task, ci=False)
    n = model.cfg.n_layers * model.cfg.n_heads
    assert comp.labels[0][:n] == [f"L{l}H{h}" for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    torch.testing.assert_close(heads.per_prompt.flatten(1), comp.per_prompt[:, :n])
    assert heads.axes == ("layer", "head") and heads.values.shape == (model.cfg.n_layers, model.cfg.n_heads)


def test_identity_holds_without_weight_processing():
    """Unprocessed weights keep the final norm's weight and bias: the direction and offset must include them."""
    raw = HookedTransformer.from_pretrained_no_processing("circuitscope/ioi")
    assert raw.cfg.normalization_type == "LN"
    task = ioi_task(raw, N=12, seed=5)
    comp = component_attribution(raw, task, ci=False)
    torch.testing.assert_close(comp.per_prompt.sum(1), _true_logit_diff(raw, task), atol=2e-3, rtol=1e-4)


def test_cache_and_task_give_the_same_numbers(model, task):
    _, cache = model.run_with_cache(task.clean_tokens)
    for fn in (head_attribution, layer_attribution, component_attribution, logit_lens, logit_difference):
        from_cache = fn(model, cache, task, ci=False)
        from_task = fn(model, task, ci=False, batch_size=5)  # five batches of uneven widths
        assert from_cache.labels == from_task.labels
        torch.testing.assert_close(from_cache.per_prompt, from_task.per_prompt, atol=1e-4, rtol=1e-4)
    few = task.subset(slice(0, 6))
    tiny_budget = head_attribution(model, few, ci=False, max_memory_mb=0.01)  # one prompt per batch
    whole = head_attribution(model, cache, task, ci=False).per_prompt[:6]
    torch.testing.assert_close(tiny_budget.per_prompt, whole, atol=1e-4, rtol=1e-4)


def test_logit_lens_mid_points(model, task):
    plain = logit_lens(model, task, ci=False)
    mid = logit_lens(model, task, incl_mid=True, ci=False)
    assert plain.labels[0] == [f"{l}_pre" for l in range(model.cfg.n_layers)] + ["final_post"]
    if model.cfg.attn_only:  # no resid_mid in an attention-only block
        assert mid.labels == plain.labels
    else:
        assert len(mid.labels[0]) == 2 * model.cfg.n_layers + 1 and "0_mid" in mid.labels[0]
        torch.testing.assert_close(mid.values[::2], plain.values)


def test_results_carry_intervals(model, task):
    result = head_attribution(model, task, ci=Bootstrap(n_resamples=400, generator=torch.Generator().manual_seed(0)))
    low, high = result.ci
    assert (low <= result.values + 1e-6).all() and (result.values <= high + 1e-6).all()
    assert result.per_prompt.shape == (len(task), model.cfg.n_layers, model.cfg.n_heads)
    assert result.meta["task"] == task.name and result.meta["n_prompts"] == len(task)
    assert "95% interval" in str(result)


def test_a_cache_needs_its_task(model, task):
    _, cache = model.run_with_cache(task.clean_tokens[:4])
    with pytest.raises(ValueError, match="task"):
        head_attribution(model, cache)
    with pytest.raises(ValueError, match="prompts"):
        head_attribution(model, cache, task)
    with pytest.raises(TypeError):
        head_attribution(model, task.clean_tokens)
