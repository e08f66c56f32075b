"""Ablation (zero / mean / resample of heads and MLPs) against hand-written hooks."""

import pytest
import torch

from circuitscope.analysis import head_attribution
from circuitscope.patching.ablation import Ablation, ablate, ablated, backup_heads
from circuitscope.tasks import ioi_task

HEADS = [(1, 2), (0, 1), (1, 0)]


def dla(model, cache, task):
    out = head_attribution(model, cache, task)
    return out if isinstance(out, torch.Tensor) else out.values  # a Result in newer versions


@pytest.fixture(scope="module")
def model(small_random_model):
    return small_random_model


@pytest.fixture(scope="module")
def toks(model):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (6, 9), generator=gen)  # [batch, pos]
    reference = torch.randint(0, model.cfg.d_vocab, (8, 9), generator=gen)  # [ref_batch, pos]
    return tokens, reference


def by_hand(model, tokens, value_fn, heads=HEADS, mlps=(0,), positions=slice(None)):
    """Reference implementation: overwrite z[:, positions, h] / mlp_out[:, positions] with value_fn(name)
    (a tensor of positions: z[b, positions[b], h] only)."""
    rows = slice(None)
    if isinstance(positions, torch.Tensor):
        rows = torch.arange(len(positions))

    def z_hook(z, hook):
        layer = int(hook.name.split(".")[1])
        z = z.clone()
        for l, h in heads:
            if l == layer:
                z[rows, positions, h] = value_fn(hook.name)[rows, positions, h]
        return z

    def mlp_hook(out, hook):
        out = out.clone()
        out[rows, positions] = value_fn(hook.name)[rows, positions]
        return out

    hooks = [(f"blocks.{l}.attn.hook_z", z_hook) for l in sorted({l for l, _ in heads})]
    hooks += [(f"blocks.{l}.hook_mlp_out", mlp_hook) for l in mlps]
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def ref_cache(model, reference):
    return model.run_with_cache(reference)[1]


def test_zero_ablation_matches_hand_hook(model, toks):
    tokens, _ = toks
    cache = ref_cache(model, tokens)
    expected = by_hand(model, tokens, lambda n: torch.zeros_like(cache[n]))
    got = ablate(model, tokens, heads=HEADS, mlps=[0], method="zero")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(got, model(tokens), atol=1e-3)  # the ablation did something


def test_mean_ablation_over_batch_and_positions(model, toks):
    tokens, reference = toks
    cache = ref_cache(model, reference)
    expected = by_hand(model, tokens, lambda n: cache[n].mean((0, 1), keepdim=True).expand(6, 9, *cache[n].shape[2:]))
    got = ablate(model, tokens, heads=HEADS, mlps=[0], method="mean", reference=reference)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_mean_ablation_per_position_and_weighted(model, toks):
    tokens, reference = toks
    cache = ref_cache(model, reference)
    expected = by_hand(model, tokens, lambda n: cache[n].mean(0, keepdim=True).expand(6, *cache[n].shape[1:]))
    got = ablate(model, tokens, heads=HEADS, mlps=[0], reference=reference, per_position=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # a mask that keeps only the first 5 positions of every reference prompt
    mask = torch.zeros(8, 9)
    mask[:, :5] = 1
    expected = by_hand(model, tokens, lambda n: cache[n][:, :5].mean((0, 1), keepdim=True).expand(6, 9, *cache[n].shape[2:]))
    got = ablate(model, tokens, heads=HEADS, mlps=[0], reference=reference, reference_mask=mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_mean_ablation_per_template(model, toks):
    tokens, reference = toks
    cache = ref_cache(model, reference)
    groups = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])
    target = torch.tensor([2, 0, 1, 1, 0, 2])

    def value(n):
        means = torch.stack([cache[n][groups == g].mean(0) for g in range(3)])  # [group, pos, ...]
        return means[target]

    expected = by_hand(model, tokens, value)
    got = ablate(model, tokens, heads=HEADS, mlps=[0], reference=reference, per_position=True,
                          groups=groups, target_groups=target)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_resample_ablation(model, toks):
    tokens, reference = toks
    cache = ref_cache(model, reference)
    with ablated(model, heads=HEADS, mlps=[0], method="resample", reference=reference, generator=7) as plan:
        got = model(tokens)
        again = model(tokens)
    idx = plan.resample_indices(6)
    assert (idx != torch.arange(6)).all() and idx.max() < 8
    torch.testing.assert_close(again, got)  # drawn once per batch size
    expected = by_hand(model, tokens, lambda n: cache[n][idx])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    other = ablated(model, heads=HEADS, method="resample", reference=reference, generator=8)
    with other as plan2:
        assert not torch.equal(plan2.resample_indices(64), Ablation(
            model, HEADS, method="resample", reference=reference, generator=7).resample_indices(64))


@pytest.mark.parametrize("positions", [3, [1, 4], torch.tensor([0, 8, 2, 2, 5, 1])])
def test_positions(model, toks, positions):
    tokens, reference = toks
    cache = ref_cache(model, reference)
    mean = lambda n: cache[n].mean((0, 1), keepdim=True).expand(6, 9, *cache[n].shape[2:])
    expected = by_hand(model, tokens, mean, positions=positions)
    got = ablate(model, tokens, heads=HEADS, mlps=[0], reference=reference, positions=positions)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_hooks_removed_even_on_error_and_user_hooks_kept(model, toks):
    tokens, reference = toks
    clean = model(tokens)
    calls = []
    model.add_hook("blocks.0.hook_resid_pre", lambda x, hook: calls.append(1))
    with pytest.raises(RuntimeError):
        with ablated(model, heads=HEADS, mlps=[1], method="mean", reference=reference):
            assert model.hook_dict["blocks.1.attn.hook_z"].fwd_hooks
            raise RuntimeError("boom")
    assert not model.hook_dict["blocks.1.attn.hook_z"].fwd_hooks
    assert not model.hook_dict["blocks.1.hook_mlp_out"].fwd_hooks
    assert len(model.hook_dict["blocks.0.hook_resid_pre"].fwd_hooks) == 1  # the user's loose hook
    model.reset_hooks()
    torch.testing.assert_close(model(tokens), clean)


def test_metric_and_clear_errors(model, toks):
    tokens, reference = toks
    logits = ablate(model, tokens, heads=HEADS, method="zero")
    value = ablate(model, tokens, heads=HEADS, method="zero", metric=lambda l: l[:, -1, 0].mean())
    assert torch.isclose(value, logits[:, -1, 0].mean())
    with pytest.raises(ValueError, match="out of range"):
        ablate(model, tokens, heads=[(0, 4)], method="zero")
    with pytest.raises(ValueError, match="out of range"):
        ablate(model, tokens, mlps=[2], method="zero")
    with pytest.raises(ValueError, match="unknown ablation method"):
        ablate(model, tokens, heads=HEADS, method="median", reference=reference)
    with pytest.raises(ValueError, match="needs reference"):
        ablate(model, tokens, heads=HEADS, method="mean")
    with pytest.raises(ValueError, match="width"):
        ablate(model, tokens, heads=HEADS, reference=reference[:, :7], per_position=True)
    with pytest.raises(ValueError, match="at least 2"):
        ablate(model, tokens, heads=HEADS, method="resample", reference=reference[:1])
    with pytest.raises(ValueError, match="one position per prompt"):
        ablate(model, tokens, heads=HEADS, method="zero", positions=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="nothing to ablate"):
        ablate(model, tokens, method="zero")
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())


def test_backup_heads(model):
    task = ioi_task(model, N=8, seed=1)
    knocked = [(1, 3), (0, 2)]
    res = backup_heads(model, task, knocked, method="zero", positions="end")
    assert res.values.shape == (3, 2, 4) and res.axes == ("which", "layer", "head")
    _, cache = model.run_with_cache(task.clean_tokens)
    torch.testing.assert_close(res.values[0], dla(model, cache, task), atol=1e-5, rtol=0)
    rows = torch.arange(len(task))

    def knock(z, hook):
        z = z.clone()
        for l, h in knocked:
            if hook.name == f"blocks.{l}.attn.hook_z":
                z[rows, task.answer_pos, h] = 0
        return z

    with model.hooks(fwd_hooks=[(lambda n: n.endswith("hook_z"), knock)]):
        _, cache = model.run_with_cache(task.clean_tokens)
    after = dla(model, cache, task)
    torch.testing.assert_close(res.values[1], after, atol=1e-5, rtol=0)
    torch.testing.assert_close(res.values[2], after - res.values[0], atol=1e-5, rtol=0)
    assert res.values[1, 1, 3] == 0 and res.values[0, 1, 3] != 0
    assert res.label_of((2, 1, 3)) == "difference/L1H3"
