"""Attention between labelled positions, the attention-vs-effect scatter, and backup heads."""

import pytest
import torch

from circuitscope import HookedTransformer
from circuitscope.analysis import (
    HeadScatter,
    attention_between,
    attention_vs_effect,
    backup_heads,
    head_attribution,
)
from circuitscope.tasks import ioi_task


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained("circuitscope/ioi")


@pytest.fixture(scope="module")
def task(model):
    return ioi_task(model, N=20, seed=4)


def test_attention_between_reads_the_pattern_at_the_labelled_positions(model, task):
    _, cache = model.run_with_cache(task.clean_tokens)
    result = attention_between(model, cache, task, query="end", keys=("IO", "S1", "S2"), ci=False)
    assert result.axes == ("key", "layer", "head") and result.labels[0] == ["end->IO", "end->S1", "end->S2"]
    b, layer, head = 7, 3, 1
    pattern = cache["pattern", layer][b, head]  # [q, k]
    end = int(task.positions["end"][b])
    for i, key in enumerate(("IO", "S1", "S2")):
        assert result.per_prompt[b, i, layer, head] == pattern[end, int(task.positions[key][b])]
    batched = attention_between(model, task, keys=("IO", "S1", "S2"), ci=False, batch_size=6)
    torch.testing.assert_close(batched.per_prompt, result.per_prompt)
    with pytest.raises(ValueError, match="positions"):
        attention_between(model, task, keys=("nope",))


def test_scatter_pairs_attention_with_direct_effect(model, task, monkeypatch):
    scatter = attention_vs_effect(model, task, key="S2")
    assert isinstance(scatter, HeadScatter)
    torch.testing.assert_close(scatter.x.values, attention_between(model, task, keys=("S2",), ci=False).values[0])
    torch.testing.assert_close(scatter.y.values, head_attribution(model, task, ci=False).values, atol=1e-5, rtol=1e-5)
    assert scatter.x.ci is not None and scatter.y.ci is not None
    assert scatter.names[:2] == ["L0H0", "L0H1"] and len(scatter.names) == model.cfg.n_layers * model.cfg.n_heads

    calls = {}

    def fake_scatter(x, y, **kwargs):
        calls.update(x=x, y=y, **kwargs)
        return "figure"

    import circuitscope.plot

    monkeypatch.setattr(circuitscope.plot, "scatter", fake_scatter)
    assert scatter.plot(title="mine") == "figure"
    assert calls["names"] == scatter.names and calls["title"] == "mine"
    assert torch.equal(torch.as_tensor(calls["color"]), torch.arange(model.cfg.n_layers).repeat_interleave(model.cfg.n_heads))
    assert torch.equal(calls["y"], scatter.y.values.flatten())
    assert "L3H" in str(scatter)


def test_backup_heads_zero_ablation(model, task):
    pytest.importorskip("circuitscope.patching.ablation")
    knocked = [(3, 3)]
    result = backup_heads(model, task, knocked, method="zero", ci=False, batch_size=7)
    assert result.labels[0] == ["before", "after", "difference"]
    before, after, diff = result.per_prompt.unbind(1)  # each [prompt, layer, head]
    torch.testing.assert_close(diff, after - before)
    assert torch.all(after[:, 3, 3] == 0)  # a zeroed head writes nothing
    torch.testing.assert_close(before, head_attribution(model, task, ci=False).per_prompt, atol=1e-5, rtol=1e-5)
    assert result.meta["logit_diff_after"] < result.meta["logit_diff_before"]
    # heads before the ablated layer write the same vectors; only the final norm's scale moved,
    # by one factor per prompt
    ratio = after[:, :3] / before[:, :3]  # [prompt, 3, head]
    torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-3, rtol=1e-3)
    assert (ratio[:, 0, 0] - 1).abs().max() > 1e-3  # and it did move


def test_backup_heads_at_a_labelled_position_with_intervals(model, task):
    pytest.importorskip("circuitscope.patching.ablation")
    per_batch = backup_heads(model, task, [(3, 3)], method="mean", positions="end", batch_size=7)
    one = backup_heads(model, task, [(3, 3)], method="mean", positions="end")
    torch.testing.assert_close(per_batch.per_prompt, one.per_prompt, atol=1e-4, rtol=1e-4)
    assert per_batch.ci is not None and per_batch.ci[0].shape == (3, model.cfg.n_layers, model.cfg.n_heads)
    with pytest.raises(ValueError, match="label"):
        backup_heads(model, task, [(3, 3)], positions="nowhere")
