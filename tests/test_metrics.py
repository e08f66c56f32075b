"""Metrics: logit difference, the normalised patching metric, KL to clean, span log-probability."""

from __future__ import annotations

import pytest
import torch

from circuitscope.tasks import (
    NormalizedMetric,
    induction_task,
    kl_to_clean,
    logit_diff,
    simple_ioi_task,
    span_log_prob,
    span_loss,
    task_logit_diff,
)


def random_logits(batch=4, pos=6, vocab=11, seed=0):
    return torch.randn(batch, pos, vocab, generator=torch.Generator().manual_seed(seed))


ANSWERS = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])


def test_logit_diff_by_hand():
    logits = torch.zeros(2, 3, 5)
    logits[0, 2, 1], logits[0, 2, 3] = 4.0, 1.0
    logits[1, 1, 0], logits[1, 1, 4] = 2.0, 5.0
    answers = torch.tensor([[1, 3], [0, 4]])
    pos = torch.tensor([2, 1])
    per = logit_diff(logits, answers, pos, per_prompt=True)
    assert per.tolist() == [3.0, -3.0]
    assert logit_diff(logits, answers, pos).item() == 0.0


def test_logit_diff_reads_answer_pos_not_padding():
    logits = random_logits()
    pos = torch.tensor([5, 2, 3, 5])
    expected = torch.stack([logits[i, p, ANSWERS[i, 0]] - logits[i, p, ANSWERS[i, 1]] for i, p in enumerate(pos)])
    torch.testing.assert_close(logit_diff(logits, ANSWERS, pos, per_prompt=True), expected)
    last = logit_diff(logits, ANSWERS, per_prompt=True)  # no answer_pos: last position
    assert not torch.allclose(last, expected)


def test_logit_diff_accepts_answer_position_only_logits():
    logits = random_logits()
    pos = torch.tensor([5, 2, 3, 1])
    full = logit_diff(logits, ANSWERS, pos, per_prompt=True)
    at = logits[torch.arange(4), pos]  # [batch, vocab]
    torch.testing.assert_close(logit_diff(at, ANSWERS, per_prompt=True), full)
    torch.testing.assert_close(logit_diff(at[:, None], ANSWERS, pos, per_prompt=True), full)


def test_logit_diff_shared_answers_and_shape_errors():
    logits = random_logits()
    shared = logit_diff(logits, torch.tensor([1, 2]), per_prompt=True)
    torch.testing.assert_close(shared, logits[:, -1, 1] - logits[:, -1, 2])
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        logit_diff(logits, torch.tensor([[1, 2, 3]] * 4))
    with pytest.raises(ValueError, match="beyond"):
        logit_diff(logits, ANSWERS, torch.tensor([9, 0, 0, 0]))


def _baseline_pair():
    clean, corrupted = random_logits(seed=1), random_logits(seed=2)
    pos = torch.tensor([5, 4, 3, 2])
    return clean, corrupted, pos


def test_normalized_metric_clean_one_corrupted_zero_midpoint_half():
    clean, corrupted, pos = _baseline_pair()
    metric = NormalizedMetric.from_logit_diff(ANSWERS, clean, corrupted, pos)
    assert metric(clean).item() == pytest.approx(1.0, abs=1e-5)
    assert metric(corrupted).item() == pytest.approx(0.0, abs=1e-5)
    assert metric((clean + corrupted) / 2).item() == pytest.approx(0.5, abs=1e-5)


def test_ioi_convention_clean_zero_corrupted_minus_one():
    clean, corrupted, pos = _baseline_pair()
    metric = NormalizedMetric.from_logit_diff(ANSWERS, clean, corrupted, pos, convention="ioi")
    assert metric(clean).item() == pytest.approx(0.0, abs=1e-5)
    assert metric(corrupted).item() == pytest.approx(-1.0, abs=1e-5)
    assert metric((clean + corrupted) / 2).item() == pytest.approx(-0.5, abs=1e-5)


def test_unknown_convention_raises():
    with pytest.raises(ValueError, match="convention"):
        NormalizedMetric(lambda x: x, 1.0, 0.0, convention="paper")


@pytest.mark.parametrize("clean,corrupted", [(-0.0286, -0.0286), (2.0, 2.0 * (1 + 1e-8)), (0.0, 0.0)])
def test_equal_baselines_raise_a_clear_error(clean, corrupted):
    with pytest.raises(ValueError) as err:
        NormalizedMetric(lambda x: x, clean, corrupted)
    message = str(err.value)
    assert "undefined" in message and "equal" in message and "corruption does not change" in message


def test_nan_baseline_raises():
    with pytest.raises(ValueError, match="finite"):
        NormalizedMetric(lambda x: x, float("nan"), 1.0)


def test_nearly_equal_but_distinct_baselines_are_fine():
    metric = NormalizedMetric(lambda x: x, 1.0, 1.0 - 1e-3)
    assert metric(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=1e-3)
    assert metric(torch.tensor(1.0 - 1e-3)).item() == pytest.approx(0.0, abs=1e-3)


def test_task_whose_corruption_changes_nothing_raises(bigram_model, fake_model):
    # The bigram model only sees the last token (" to" in both runs): the seed's NaN case.
    task = simple_ioi_task(bigram_model)
    with pytest.raises(ValueError, match="undefined"):
        task.patching_metric(bigram_model)
    metric = task.patching_metric(fake_model)  # a model that reads the context is fine
    assert metric(task.run(fake_model)).item() == pytest.approx(1.0, abs=1e-5)
    assert metric(task.run(fake_model, corrupted=True)).item() == pytest.approx(0.0, abs=1e-5)


def test_metrics_are_differentiable():
    clean, corrupted, pos = _baseline_pair()
    logits = corrupted.clone().requires_grad_(True)
    NormalizedMetric.from_logit_diff(ANSWERS, clean, corrupted, pos)(logits).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    for fn in (lambda x: kl_to_clean(x, clean), lambda x: span_loss(x, torch.randint(0, 11, (4, 6)), 1, 6)):
        x = corrupted.clone().requires_grad_(True)
        fn(x).backward()
        assert x.grad.abs().sum() > 0


def test_kl_to_clean():
    clean, corrupted, pos = _baseline_pair()
    assert kl_to_clean(clean, clean).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_clean(corrupted, clean).item() > 0
    p = clean[0, 3].softmax(-1)
    q = corrupted[0, 3].softmax(-1)
    by_hand = (p * (p.log() - q.log())).sum()
    got = kl_to_clean(corrupted, clean, positions=torch.tensor([3, 0, 0, 0]), per_prompt=True)[0]
    torch.testing.assert_close(got, by_hand)
    # answer-position-only logits against full clean logits
    at = corrupted[torch.arange(4), pos]
    torch.testing.assert_close(kl_to_clean(at, clean, positions=pos), kl_to_clean(corrupted, clean, positions=pos))


def test_kl_mask_ignores_padding():
    clean, corrupted, _ = _baseline_pair()
    mask = torch.ones(4, 6)
    mask[:, 3:] = 0
    masked = kl_to_clean(corrupted, clean, mask=mask)
    torch.testing.assert_close(masked, kl_to_clean(corrupted[:, :3], clean[:, :3]))


def test_span_log_prob_by_hand_and_sliced_logits():
    logits = random_logits(batch=2, pos=5, vocab=7)
    tokens = torch.tensor([[0, 1, 2, 3, 4], [6, 5, 4, 3, 2]])
    log_probs = logits.log_softmax(-1)
    by_hand = torch.stack([log_probs[b, t - 1, tokens[b, t]] for b in range(2) for t in (2, 3)]).mean()
    torch.testing.assert_close(span_log_prob(logits, tokens, 2, 4), by_hand)
    torch.testing.assert_close(span_log_prob(logits[:, 1:3], tokens, 2, 4), by_hand)
    torch.testing.assert_close(span_loss(logits, tokens, 2, 4), -by_hand)
    with pytest.raises(ValueError, match="start"):
        span_log_prob(logits, tokens, 0, 4)
    with pytest.raises(ValueError, match="positions"):
        span_log_prob(logits[:, :3], tokens, 2, 4)


def test_induction_span_metric_normalises(fake_model):
    task = induction_task(fake_model, seq_len=8, batch=3, corruption="BC")
    metric = NormalizedMetric.from_task(task, task.run(fake_model), task.run(fake_model, corrupted=True))
    assert metric(task.run(fake_model)).item() == pytest.approx(1.0, abs=1e-4)
    assert metric(task.run(fake_model, corrupted=True)).item() == pytest.approx(0.0, abs=1e-4)


def test_task_logit_diff_uses_corrupted_answer_pos():
    class Stub:
        answer_tokens = torch.tensor([[1, 2]] * 4)
        answer_pos = torch.tensor([5, 5, 5, 5])
        corrupted_answer_pos = torch.tensor([1, 1, 1, 1])

    logits = random_logits()
    torch.testing.assert_close(task_logit_diff(logits, Stub(), corrupted=True), (logits[:, 1, 1] - logits[:, 1, 2]).mean())
    torch.testing.assert_close(task_logit_diff(logits, Stub()), (logits[:, 5, 1] - logits[:, 5, 2]).mean())
