"""ActivationCache methods TransformerLens notebooks use, and cache inputs that must raise.

Runs on the hand-built consistent cache of ``test_cache_unit`` (every identity holds exactly), so
neuron results can be checked against ``mlp_out`` and batch slices against the full cache.
"""

from __future__ import annotations

import pytest
import torch

from test_cache_unit import B, D, L, M, P, make_cache


@pytest.fixture
def cache():
    return make_cache()


def test_apply_slice_to_batch_dim(cache):
    two = cache.apply_slice_to_batch_dim([0, 2])
    assert two.has_batch_dim and two["resid_pre", 1].shape == (2, P, D)
    torch.testing.assert_close(two["resid_pre", 1][1], cache["resid_pre", 1][2])
    one = cache.apply_slice_to_batch_dim(1)
    assert not one.has_batch_dim and one["pattern", 0].shape == cache["pattern", 0].shape[1:]
    assert cache.apply_slice_to_batch_dim((0, 2))["embed"].shape[0] == 2  # a tuple is a slice
    assert len(cache.apply_slice_to_batch_dim(None)) == len(cache)
    with pytest.raises(IndexError, match=r"batch_slice prompt\(s\) \[3\] out of range"):
        cache.apply_slice_to_batch_dim([0, B])
    with pytest.raises(ValueError, match="no batch dimension"):
        one.apply_slice_to_batch_dim(0)


def test_neuron_results_sum_to_mlp_out(cache):
    results = cache.get_neuron_results(1)  # [batch, pos, neuron, d_model]
    assert results.shape == (B, P, M, D)
    torch.testing.assert_close(results.sum(-2) + cache.model.b_out[1], cache["mlp_out", 1])
    some = cache.get_neuron_results(0, neuron_slice=[1, 4], pos_slice=-1)
    torch.testing.assert_close(some, cache.get_neuron_results(0)[:, -1, [1, 4]])
    assert cache.get_neuron_results(-1, neuron_slice=2).shape == (B, P, D)


def test_stack_neuron_results_labels_and_remainder(cache):
    stack, labels = cache.stack_neuron_results(incl_remainder=True, pos_slice=-1, return_labels=True)
    assert stack.shape == (L * M + 1, B, D) and labels[:2] == ["L0N0", "L0N1"] and labels[-1] == "remainder"
    torch.testing.assert_close(stack.sum(0), cache["resid_post", -1][:, -1])
    picked, picked_labels = cache.stack_neuron_results(1, neuron_slice=3, return_labels=True)
    assert picked.shape == (1, B, P, D) and picked_labels == ["L0N3"]
    scaled = cache.stack_neuron_results(pos_slice=-1, apply_ln=True)
    assert scaled.shape == (L * M, B, D)


def test_toggle_autodiff_sets_global_grad_mode(cache):
    try:
        cache.toggle_autodiff(False)
        assert not torch.is_grad_enabled()
        cache.toggle_autodiff(True)
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


@pytest.mark.parametrize("pos_slice", [P, [P + 1], [-P - 1, 0], torch.tensor([0, 1, P])])
def test_out_of_range_positions_raise(cache, pos_slice):
    """Issue 7 #9: pos_slice=[T+1] used to wrap around to position 1."""
    with pytest.raises(IndexError, match="out of range"):
        cache.decompose_resid(pos_slice=pos_slice)


def test_tuple_pos_slice_is_a_slice_as_in_transformer_lens(cache):
    torch.testing.assert_close(
        cache.accumulated_resid(pos_slice=(1, 4)), cache.accumulated_resid(pos_slice=slice(1, 4))
    )
    assert cache.accumulated_resid(pos_slice=[-P, P - 1]).shape[-2] == 2  # both ends are valid


def test_apply_ln_to_stack_with_the_wrong_width_names_d_model(cache):
    z = cache["z", 0]  # [batch, pos, head, d_head]: not a residual-stream stack
    with pytest.raises(ValueError, match=f"d_model={D}"):
        cache.apply_ln_to_stack(z)


@pytest.mark.parametrize("layer", [1.0, "1", True])
def test_cache_layer_must_be_an_int(cache, layer):
    with pytest.raises(TypeError, match="must be an int"):
        cache["resid_pre", layer]
    with pytest.raises(TypeError, match="must be an int"):
        cache.accumulated_resid(layer=layer)
