"""Bootstrap intervals over prompts: coverage, vectorisation, seeding, NaN handling, Results."""

import pytest
import torch

from circuitscope.analysis.bootstrap import (
    Bootstrap,
    bootstrap_ci,
    bootstrap_means,
    percentile_interval,
    resample_counts,
    summarize,
    with_ci,
)


def test_intervals_cover_the_true_mean_at_the_nominal_rate():
    """1,000 seeded trials of 200 normal draws each: the 95% interval holds the true mean 92-98% of
    the time. The trials are the entries of one [prompt, trial] tensor, so this is one vectorised call."""
    gen = torch.Generator().manual_seed(1234)
    true_mean = 3.0
    data = true_mean + 2.0 * torch.randn(200, 1000, generator=gen)  # [prompt, trial]
    low, high = bootstrap_ci(data, n_resamples=1000, confidence=0.95, generator=torch.Generator().manual_seed(7))
    coverage = ((low <= true_mean) & (true_mean <= high)).float().mean().item()
    assert 0.92 <= coverage <= 0.98, coverage
    # a narrower level covers less, as it must
    low80, high80 = bootstrap_ci(data, n_resamples=1000, confidence=0.80, generator=torch.Generator().manual_seed(7))
    coverage80 = ((low80 <= true_mean) & (true_mean <= high80)).float().mean().item()
    assert 0.76 <= coverage80 <= 0.84, coverage80


def test_resampled_means_equal_an_explicit_resample_of_the_prompts():
    x = torch.randn(30, 4, 5, generator=torch.Generator().manual_seed(0))
    means = bootstrap_means(x, n_resamples=50, generator=torch.Generator().manual_seed(3))  # [resample, 4, 5]
    idx = torch.randint(30, (50, 30), generator=torch.Generator().manual_seed(3))  # the same draw
    explicit = x[idx].mean(1)  # [resample, 4, 5]
    assert means.shape == (50, 4, 5)
    torch.testing.assert_close(means, explicit, atol=1e-5, rtol=1e-5)


def test_counts_rows_sum_to_the_number_of_prompts():
    counts = resample_counts(17, 40, torch.Generator().manual_seed(0))
    assert counts.shape == (40, 17)
    assert torch.all(counts.sum(1) == 17)


def test_percentile_interval_matches_torch_quantile():
    samples = torch.randn(999, 6, generator=torch.Generator().manual_seed(5))
    low, high = percentile_interval(samples, 0.9)
    torch.testing.assert_close(low, torch.quantile(samples, 0.05, dim=0))
    torch.testing.assert_close(high, torch.quantile(samples, 0.95, dim=0))


def test_seeded_and_never_touches_the_global_rng():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a = bootstrap_ci(x, generator=torch.Generator().manual_seed(11))
    b = bootstrap_ci(x, generator=torch.Generator().manual_seed(11))
    c = bootstrap_ci(x, generator=torch.Generator().manual_seed(12))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_nan_scores_are_left_out():
    x = torch.randn(60, 2, generator=torch.Generator().manual_seed(0))
    x[::3, 1] = float("nan")  # a third of the prompts have no score for entry 1
    result = summarize(x, ("entry",), ci=Bootstrap(n_resamples=500, seed=1))
    kept = x[~torch.isnan(x[:, 1]), 1]
    assert result.values[1].item() == pytest.approx(kept.mean().item(), abs=1e-6)
    low, high = result.ci
    assert torch.isfinite(low).all() and torch.isfinite(high).all()
    assert (low <= result.values).all() and (result.values <= high).all()
    # the entry with fewer prompts gets the wider interval (same spread)
    assert (high[1] - low[1]) > (high[0] - low[0]) * 0.9


def test_summarize_builds_a_result_with_interval_and_per_prompt():
    x = 1.0 + torch.randn(80, 2, 3, generator=torch.Generator().manual_seed(2))
    r = summarize(x, ("layer", "head"), title="t", ci=Bootstrap(n_resamples=300, generator=torch.Generator().manual_seed(0)))
    assert r.values.shape == (2, 3) and r.per_prompt.shape == (80, 2, 3)
    assert r.ci[0].shape == (2, 3) and (r.ci[0] < r.values).all() and (r.values < r.ci[1]).all()
    assert r.meta["n_prompts"] == 80 and "bootstrap" in r.meta["ci"]
    assert "95% interval" in str(r) and "[" in str(r)
    assert summarize(x, ("layer", "head"), ci=False).ci is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Bootstrap(confidence=1.5)
    with pytest.raises(ValueError):
        Bootstrap(n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap_means(torch.zeros(0, 3))
    with pytest.raises(TypeError):
        summarize(torch.zeros(3, 2), ("a",), ci="yes")


def test_with_ci_adds_an_interval_to_any_per_prompt_result():
    from circuitscope.patching import PatchResult

    per_prompt = torch.randn(50, 3, 4, generator=torch.Generator().manual_seed(0)) + 2.0
    plain = PatchResult(per_prompt.mean(0), ("layer", "pos"), meta={"what": "resid_pre"}, per_prompt=per_prompt)
    assert plain.ci is None
    out = with_ci(plain, Bootstrap(n_resamples=400, seed=3))
    assert type(out) is PatchResult and out.what == "resid_pre" and torch.equal(out.values, plain.values)
    assert (out.ci[0] < out.values).all() and (out.values < out.ci[1]).all()
    with pytest.raises(ValueError, match="per_prompt"):
        with_ci(PatchResult(per_prompt.mean(0), ("layer", "pos")))
