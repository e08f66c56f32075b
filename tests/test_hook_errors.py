"""Hooks that cannot do what was asked fail loudly, naming the hook and the cause; hooks that
can (hook_attn_in beside split q/k/v inputs, hook_tokens) do it."""

from __future__ import annotations

import pytest
import torch

from circuitscope import HookedTransformer, TransformerConfig


@pytest.fixture()
def model():
    torch.manual_seed(0)
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_vocab=50, n_ctx=32, d_mlp=32)
    m = HookedTransformer(cfg)
    yield m
    m.reset_hooks(including_permanent=True)


@pytest.fixture()
def tokens():
    return torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(1))


def idle(x, hook):
    return None


def test_wrong_dtype_names_the_hook_and_the_expected_dtype(model, tokens):
    def to_half(z, hook):
        return z.half()

    with pytest.raises(TypeError, match=r"blocks\.0\.attn\.hook_z: to_half.*float16.*torch\.float32"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", to_half)])
    assert not any(hp.active for hp in model.hook_dict.values())


def test_wrong_shape_and_non_tensor_returns_name_the_hook(model, tokens):
    with pytest.raises(ValueError, match=r"hook_resid_pre: <lambda> returned shape \(3, 16\)"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: x[:, 0])])
    with pytest.raises(TypeError, match="returned list"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: [x])])


@pytest.mark.parametrize(
    "specs, message",
    [
        (("blocks.0.attn.hook_z", idle), r"single \(target, hook\) pair.*fwd_hooks=\[\('blocks\.0\.attn\.hook_z', idle\)\]"),
        ([idle], r"fwd_hooks\[0\] is the function 'idle' on its own"),
        ({"blocks.0.attn.hook_z": idle}, "got a dict"),
        ([(idle, "blocks.0.attn.hook_z")], "wrong way round"),
        ([("blocks.0.attn.hook_z", idle, 3)], r"fwd_hooks\[0\] must be a .* pair"),
        ([("blocks.0.attn.hook_z", "idle")], "must be a function"),
        (idle, "got function 'idle'"),
    ],
)
def test_malformed_fwd_hooks_are_explained(model, tokens, specs, message):
    with pytest.raises(TypeError, match=message):
        model.run_with_hooks(tokens, fwd_hooks=specs)
    assert not any(hp.active for hp in model.hook_dict.values())


def test_unknown_name_attaches_nothing(model, tokens):
    with pytest.raises(KeyError, match="did you mean"):
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", idle), ("blocks.0.attn.hook_zz", idle)])
    assert not model.hook_dict["hook_embed"].active


@pytest.mark.parametrize("split", ["config", "hook"])
def test_hook_attn_in_acts_with_split_qkv_inputs(model, tokens, split):
    """Issue 7 #3: with split inputs on, an ablation at hook_attn_in used to change nothing."""

    def zero(x, hook):
        return torch.zeros_like(x)

    ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_attn_in", zero)])
    q_seen = []
    fwd = [("blocks.1.hook_attn_in", zero), ("blocks.1.hook_q_input", lambda x, hook: q_seen.append(x.clone()))]
    if split == "config":
        model.set_use_split_qkv_input(True)
        fwd = fwd[:1]
    try:
        with_split = model.run_with_hooks(tokens, fwd_hooks=fwd)
    finally:
        model.set_use_split_qkv_input(False)
    torch.testing.assert_close(with_split, ablated)
    assert not torch.allclose(ablated, model(tokens), atol=1e-4)
    if split == "hook":
        assert q_seen[0].shape == (3, 6, 2, 16) and q_seen[0].abs().max() == 0


def test_split_input_hooks_may_edit_in_place(model, tokens):
    """Each head's input is its own copy: zeroing head 0's query input leaves head 1's alone."""
    model.set_use_split_qkv_input(True)
    try:
        _, clean = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_q")

        def zero_head0(x, hook):
            x[:, :, 0] = 0
            return x

        with model.hooks(fwd_hooks=[("blocks.1.hook_q_input", zero_head0)]):
            _, patched = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_q")
    finally:
        model.set_use_split_qkv_input(False)
    q0, q1 = clean["blocks.1.attn.hook_q"], patched["blocks.1.attn.hook_q"]
    torch.testing.assert_close(q1[:, :, 1], q0[:, :, 1])
    assert not torch.allclose(q1[:, :, 0], q0[:, :, 0])


def test_remove_batch_dim_with_a_batch_raises(model, tokens):
    """Issue 7 #8: run_with_cache(remove_batch_dim=True) used to keep prompt 0 silently."""
    with pytest.raises(ValueError, match="batch of exactly 1.*has shape \\(3, "):
        model.run_with_cache(tokens, remove_batch_dim=True)
    assert not any(hp.active for hp in model.hook_dict.values())
    _, cache = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    assert not cache.has_batch_dim and cache["resid_pre", 0].shape == (6, 16)


def test_hook_tokens_is_opt_in_and_can_replace_tokens(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert "hook_tokens" not in cache  # opt-in: the catch-all cache skips it
    other = torch.randint(0, 50, tokens.shape, generator=torch.Generator().manual_seed(2))
    swapped = model.run_with_hooks(tokens, fwd_hooks=[("hook_tokens", lambda t, hook: other.clone())])
    torch.testing.assert_close(swapped, model(other))
    model.cfg.use_hook_tokens = True
    try:
        _, cache = model.run_with_cache(tokens)
    finally:
        model.cfg.use_hook_tokens = False
    assert torch.equal(cache["hook_tokens"], tokens)
