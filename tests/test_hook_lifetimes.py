"""Hook lifetimes as in TransformerLens 2.x, the stale-hook warning, and backward hooks.

Each rule is checked by counting how often a hook runs, and gradients are checked against
``torch.autograd.grad`` on the same computation without hooks.
"""

from __future__ import annotations

import logging
from unittest import mock

import pytest
import torch

from circuitscope import HookedTransformer, TransformerConfig

STALE = "circuitscope.hooks"


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


def counter():
    calls = []

    def hook(x, hook):
        calls.append(hook.name)

    return hook, calls


def stale_warnings(caplog):
    return [r for r in caplog.records if r.name == STALE and "still apply" in r.getMessage()]


def test_add_hook_outlives_run_with_cache_and_run_with_hooks(model, tokens):
    hook, calls = counter()
    model.add_hook("blocks.0.hook_resid_pre", hook)
    model.run_with_cache(tokens)
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: None)])
    model(tokens)
    assert len(calls) == 3  # TransformerLens 2.x: only reset_hooks() removes it
    model.reset_hooks()
    model(tokens)
    assert len(calls) == 3


def test_level_one_hook_goes_with_the_next_top_level_run(model, tokens):
    """The seed notebooks' ``add_hook(..., level=1)`` trick: the next context (level 1) removes it."""
    hook, calls = counter()
    model.add_hook("blocks.0.attn.hook_z", hook, level=1)
    model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    model(tokens)
    assert calls == ["blocks.0.attn.hook_z"]


def test_reset_hooks_end_false_keeps_context_hooks_and_permanent_hooks_survive_reset(model, tokens):
    kept, kept_calls = counter()
    perm, perm_calls = counter()
    model.add_hook("hook_embed", perm, is_permanent=True)
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", kept)], reset_hooks_end=False)
    model(tokens)
    model.reset_hooks()
    model(tokens)
    assert len(kept_calls) == 2 and len(perm_calls) == 3
    model.reset_hooks(including_permanent=True)
    assert not any(hp.active for hp in model.hook_dict.values())


def test_nested_contexts_remove_only_their_own_level(model, tokens):
    outer, outer_calls = counter()
    with model.hooks(fwd_hooks=[("hook_embed", outer)]):
        model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_pre")
        assert model.context_level == 1 and model.hook_dict["hook_embed"].active
        model(tokens)
    assert model.context_level == 0 and not model.hook_dict["hook_embed"].active
    assert len(outer_calls) == 2


def test_stale_hook_warning_names_left_over_hooks_once(model, tokens, caplog):
    """Seed 004's mistake: add_hook in a loop without a reset stacks the hooks up."""

    def patch_sender(z, hook):
        return z

    caplog.set_level(logging.WARNING, logger=STALE)
    model.add_hook("blocks.0.attn.hook_z", patch_sender)
    model.run_with_cache(tokens)  # its first run: intended, no warning
    assert not stale_warnings(caplog)
    model.add_hook("blocks.1.attn.hook_z", patch_sender)
    model.run_with_cache(tokens)  # the first hook is now left over
    (record,) = stale_warnings(caplog)
    assert "blocks.0.attn.hook_z: patch_sender" in record.getMessage()
    assert "blocks.1.attn.hook_z" not in record.getMessage()
    assert "reset_hooks" in record.getMessage() and "warn_stale_hooks" in record.getMessage()
    model(tokens)  # now the second is left over too; the first is not named again
    assert len(stale_warnings(caplog)) == 2
    assert "blocks.0.attn.hook_z" not in stale_warnings(caplog)[1].getMessage()


def test_no_stale_warning_for_context_permanent_or_silenced_hooks(model, tokens, caplog):
    caplog.set_level(logging.WARNING, logger=STALE)
    with model.hooks(fwd_hooks=[("hook_embed", lambda x, hook: None)]):
        model(tokens)
        model(tokens)  # the block's own hooks apply to every call inside it
    model.add_hook("hook_embed", lambda x, hook: None, is_permanent=True)
    model(tokens)
    model(tokens)
    assert not stale_warnings(caplog)
    model.add_hook("blocks.0.hook_resid_pre", lambda x, hook: None)
    model.warn_stale_hooks = False
    model(tokens)
    model(tokens)
    assert not stale_warnings(caplog)


def test_plain_forward_without_hooks_skips_the_stale_check(model, tokens):
    """The check costs one attribute test when nothing is attached: the scan never runs."""
    with mock.patch.object(HookedTransformer, "_warn_stale_hooks") as scan:
        model(tokens)
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda x, hook: None)])
    assert scan.call_count == 1  # only the call that had hooks attached
    assert not model._hook_registry.live


def test_bwd_hooks_of_run_with_hooks_fire_on_backward_after_return(model, tokens):
    """Issue 7 #2: they used to be removed before backward() could reach them."""
    seen = {}

    def grab(grad, hook):
        seen[hook.name] = grad.clone()

    with torch.enable_grad():
        resid = model(tokens, stop_at_layer=1).detach().requires_grad_(True)
        out = model.run_with_hooks(resid, start_at_layer=1, bwd_hooks=[("blocks.1.hook_resid_pre", grab)])
        assert not model.hook_dict["blocks.1.hook_resid_pre"].active  # removed as the call ended
        out[:, -1, 7].sum().backward()
        (expected,) = torch.autograd.grad(model(resid, start_at_layer=1)[:, -1, 7].sum(), resid)
    torch.testing.assert_close(seen["blocks.1.hook_resid_pre"], expected)


def test_bwd_hook_on_a_branch_sees_that_branch_only(model, tokens):
    """hook_attn_in is the attention input: its gradient excludes the residual skip path."""
    seen = {}
    with torch.enable_grad():
        resid = model(tokens, stop_at_layer=1).detach().requires_grad_(True)
        out = model.run_with_hooks(
            resid, start_at_layer=1,
            bwd_hooks=[("blocks.1.hook_attn_in", lambda g, hook: seen.__setitem__("in", g.clone()))],
        )
        out[:, -1, 3].sum().backward()
        # Reference: feed the attention input from a separate leaf, so autograd splits the paths.
        attn_input = resid.detach().requires_grad_(True)
        with model.hooks(fwd_hooks=[("blocks.1.hook_attn_in", lambda x, hook: attn_input * 1)]):
            logits = model(resid.detach(), start_at_layer=1)
        (expected,) = torch.autograd.grad(logits[:, -1, 3].sum(), attn_input)
    torch.testing.assert_close(seen["in"], expected)
    assert not torch.allclose(expected, resid.grad)  # the full gradient differs: the test can fail


def test_run_with_cache_incl_bwd_backprops_a_scalar_like_transformer_lens(model, tokens):
    with torch.enable_grad():
        loss, cache = model.run_with_cache(tokens, return_type="loss", incl_bwd=True,
                                           names_filter="blocks.0.hook_resid_post")
        resid = model(tokens, stop_at_layer=1).detach().requires_grad_(True)
        (expected,) = torch.autograd.grad(model(resid, start_at_layer=1, tokens=tokens, return_type="loss"), resid)
    torch.testing.assert_close(cache["blocks.0.hook_resid_post_grad"], expected)
    assert not any(hp.active for hp in model.hook_dict.values())


def test_incl_bwd_without_autograd_is_an_error(model, tokens):
    with torch.no_grad(), pytest.raises(RuntimeError, match="needs autograd"):
        model.run_with_cache(tokens, incl_bwd=True)


def test_add_caching_hooks_fills_the_dict_until_reset(model, tokens):
    store = model.add_caching_hooks(names_filter=["blocks.0.hook_resid_post"])
    assert store == {} and model.is_caching
    model(tokens)
    first = store["blocks.0.hook_resid_post"]
    model(tokens[:1])
    assert store["blocks.0.hook_resid_post"].shape[0] == 1  # overwritten by the later call
    torch.testing.assert_close(store["blocks.0.hook_resid_post"], first[:1])
    model.reset_hooks()
    assert not model.is_caching and not any(hp.active for hp in model.hook_dict.values())
