"""ActivationCache on a hand-built, internally consistent cache for a fake 2-layer model.

The fake residual stream is built the way a real transformer builds it: resid_pre[0] = embed +
pos_embed, attn_out = sum over heads of z @ W_O + b_O, mlp_out = post @ W_out + b_out, and each
layer-norm scale is computed from the residual it reads. So every identity the cache relies on
holds exactly, and each test checks the cache's answer against a direct computation.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from circuitscope.cache import ActivationCache, CacheKeyError
from circuitscope.names import all_hook_names

B, P, D, H, DH, L, V, M = (
    3,
    5,
    8,
    2,
    4,
    2,
    11,
    6,
)  # batch, pos, d_model, heads, d_head, layers, vocab, d_mlp
EPS = 1e-5


def _scale(x: torch.Tensor, norm: str) -> torch.Tensor:
    """What a norm's hook_scale records for input x [..., d_model] -> [..., 1]."""
    if norm in ("LN", "LNPre"):
        x = x - x.mean(-1, keepdim=True)
    return (x.pow(2).mean(-1, keepdim=True) + EPS).sqrt()


def make_cache(
    norm: str = "LN", parallel: bool = False, batch: int = B, seed: int = 0
) -> ActivationCache:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    cfg = SimpleNamespace(
        n_layers=L,
        n_heads=H,
        d_model=D,
        d_head=DH,
        d_vocab=V,
        normalization_type=norm,
        positional_embedding_type="standard",
        parallel_attn_mlp=parallel,
        attn_only=False,
    )
    W_U = rand(D, V)
    model = SimpleNamespace(
        cfg=cfg,
        W_O=rand(L, H, DH, D),
        b_O=rand(L, D),
        W_out=rand(L, M, D),
        b_out=rand(L, D),
        W_U=W_U,
        b_U=rand(V),
        tokens_to_residual_directions=lambda t: W_U[:, t].movedim(0, -1),
    )
    c: dict[str, torch.Tensor] = {
        "hook_embed": rand(batch, P, D),
        "hook_pos_embed": rand(batch, P, D),
    }
    resid = c["hook_embed"] + c["hook_pos_embed"]
    for l in range(L):
        c[f"blocks.{l}.hook_resid_pre"] = resid
        c[f"blocks.{l}.ln1.hook_scale"] = _scale(resid, norm)
        c[f"blocks.{l}.attn.hook_pattern"] = torch.softmax(rand(batch, H, P, P), -1)
        z = c[f"blocks.{l}.attn.hook_z"] = rand(batch, P, H, DH)
        attn_out = c[f"blocks.{l}.hook_attn_out"] = (
            torch.einsum("bphd,hdm->bpm", z, model.W_O[l]) + model.b_O[l]
        )
        mlp_in = resid if parallel else resid + attn_out
        if not parallel:
            c[f"blocks.{l}.hook_resid_mid"] = mlp_in
        c[f"blocks.{l}.ln2.hook_scale"] = _scale(mlp_in, norm)
        post = c[f"blocks.{l}.mlp.hook_post"] = rand(batch, P, M)
        mlp_out = c[f"blocks.{l}.hook_mlp_out"] = post @ model.W_out[l] + model.b_out[l]
        resid = c[f"blocks.{l}.hook_resid_post"] = resid + attn_out + mlp_out
    c["ln_final.hook_scale"] = _scale(resid, norm)
    return ActivationCache(c, model)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (D,), eps=EPS)


@pytest.fixture
def cache() -> ActivationCache:
    return make_cache()


def test_tuple_and_shorthand_indexing(cache):
    d = cache.cache_dict
    assert cache["resid_post", -1] is d["blocks.1.hook_resid_post"]
    assert cache["resid_pre", 0] is d["blocks.0.hook_resid_pre"]
    assert cache["pattern", 1] is d["blocks.1.attn.hook_pattern"]
    assert cache["attn", -2, "attn"] is d["blocks.0.attn.hook_pattern"]
    assert cache["scale", 1, "ln2"] is d["blocks.1.ln2.hook_scale"]
    assert cache[("scale",)] is d["ln_final.hook_scale"] and cache["embed"] is d["hook_embed"]
    assert (
        ("z", -1) in cache and "blocks.0.attn.hook_q" not in cache and ("resid_pre", 9) not in cache
    )
    assert len(cache) == len(d) and list(cache) == list(d.keys()) == list(cache.keys())
    assert dict(cache.items()) == d


def test_unknown_key_suggests_and_explains(cache):
    with pytest.raises(CacheKeyError, match="did you mean 'blocks.1.attn.hook_z'"):
        cache["blocks.1.attn.hook_zz"]
    with pytest.raises(KeyError, match="out of range"):
        cache["resid_pre", -3]
    with pytest.raises(KeyError, match="filtered out by names_filter"):
        cache["blocks.0.attn.hook_q"]
    cache.model.hook_dict = {n: None for n in all_hook_names(L) if "rot_" not in n}
    with pytest.raises(KeyError, match="hook of this model .*filtered out.*hook_z"):
        cache["result", 0]
    with pytest.raises(KeyError, match="did you mean 'blocks.0.attn.hook_q'"):
        cache["blocks.0.attn.hook_rot_q"]


def test_decompose_resid_sums_to_residual(cache):
    comps, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    torch.testing.assert_close(comps.sum(0), cache["resid_post", -1])
    torch.testing.assert_close(cache.decompose_resid(layer=1).sum(0), cache["resid_pre", 1])
    comps, labels = cache.decompose_resid(layer=1, mlp_input=True, return_labels=True)
    assert labels[-1] == "1_attn_out"
    torch.testing.assert_close(comps.sum(0), cache["resid_mid", 1])
    attn, attn_labels = cache.decompose_resid(mode="attn", incl_embeds=False, return_labels=True)
    assert attn_labels == ["0_attn_out", "1_attn_out"] and attn.shape == (2, B, P, D)


def test_accumulated_resid(cache):
    stack, labels = cache.accumulated_resid(return_labels=True)
    assert labels == ["0_pre", "1_pre", "final_post"]
    torch.testing.assert_close(stack[1], cache["resid_pre", 1])
    torch.testing.assert_close(stack[2], cache["resid_post", 1])
    stack, labels = cache.accumulated_resid(
        layer=-1, incl_mid=True, pos_slice=-1, return_labels=True
    )
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"] and stack.shape == (5, B, D)
    torch.testing.assert_close(stack[3], cache["resid_mid", 1][:, -1])
    _, labels = cache.accumulated_resid(layer=1, mlp_input=True, return_labels=True)
    assert labels == ["0_pre", "1_pre", "1_mid"]


def test_stack_head_results_sum_to_attn_out(cache, caplog):
    with caplog.at_level(logging.INFO, logger="circuitscope.cache_decompose"):
        heads, labels = cache.stack_head_results(return_labels=True)
    assert "computed head results from hook_z" in caplog.text
    assert labels == ["L0H0", "L0H1", "L1H0", "L1H1"] and heads.shape == (L * H, B, P, D)
    per_layer = heads.reshape(L, H, B, P, D).sum(1)
    for l in range(L):
        torch.testing.assert_close(per_layer[l] + cache.model.b_O[l], cache["attn_out", l])
    comps, labels = cache.stack_head_results(layer=1, incl_remainder=True, return_labels=True)
    assert labels == ["L0H0", "L0H1", "remainder"]
    torch.testing.assert_close(comps.sum(0), cache["resid_pre", 1])
    assert cache.stack_head_results(layer=0).shape == (0, B, P, D)


def test_compute_head_results_matches_on_the_fly(cache):
    on_the_fly = cache.stack_head_results(pos_slice=[0, 3])
    cache.compute_head_results()
    assert cache["result", 1].shape == (B, P, H, D)
    torch.testing.assert_close(cache.stack_head_results(pos_slice=[0, 3]), on_the_fly)


@pytest.mark.parametrize("pos_slice", [None, -1, [1, 3], slice(1, 4)])
def test_apply_ln_to_stack_matches_layer_norm(cache, pos_slice):
    def cut(x):
        return x if pos_slice is None else x[:, pos_slice]

    comps = cache.decompose_resid(pos_slice=pos_slice, apply_ln=True)
    torch.testing.assert_close(comps.sum(0), cut(layer_norm(cache["resid_post", 1])))
    comps = cache.decompose_resid(layer=1, pos_slice=pos_slice, apply_ln=True)
    torch.testing.assert_close(comps.sum(0), cut(layer_norm(cache["resid_pre", 1])))
    comps = cache.decompose_resid(layer=0, mlp_input=True, pos_slice=pos_slice, apply_ln=True)
    torch.testing.assert_close(comps.sum(0), cut(layer_norm(cache["resid_mid", 0])))
    heads = cache.get_full_resid_decomposition(pos_slice=pos_slice, apply_ln=True)
    torch.testing.assert_close(heads.sum(0), cut(layer_norm(cache["resid_post", 1])))


def test_apply_ln_seed_notebook_pattern(cache):
    final_token = cache["resid_post", -1][:, -1, :]  # [batch, d_model]
    scaled = cache.apply_ln_to_stack(final_token, layer=-1, pos_slice=-1)
    torch.testing.assert_close(scaled, layer_norm(cache["resid_post", -1])[:, -1])


def test_apply_ln_batch_slice_cut_or_uncut(cache):
    want = layer_norm(cache["resid_post", 1])[1:]
    full = cache["resid_post", 1]
    torch.testing.assert_close(cache.apply_ln_to_stack(full, batch_slice=slice(1, None)), want)
    torch.testing.assert_close(cache.apply_ln_to_stack(full[1:], batch_slice=slice(1, None)), want)
    torch.testing.assert_close(cache.apply_ln_to_stack(full, batch_slice=2), want[1])


def test_rms_does_not_centre_and_no_norm_is_identity():
    rms = make_cache("RMS")
    resid = rms["resid_post", 1]
    want = resid / (resid.pow(2).mean(-1, keepdim=True) + EPS).sqrt()
    torch.testing.assert_close(rms.decompose_resid(apply_ln=True).sum(0), want)
    none = make_cache(None)
    stack = none.decompose_resid()
    assert none.apply_ln_to_stack(stack) is stack


def test_per_prompt_pos_slice(cache):
    idx = torch.tensor([4, 2, 0])
    batch = torch.arange(B)
    comps, labels = cache.decompose_resid(pos_slice=idx, apply_ln=True, return_labels=True)
    assert comps.shape == (len(labels), B, D)
    torch.testing.assert_close(comps.sum(0), layer_norm(cache["resid_post", 1])[batch, idx])
    heads = cache.stack_head_results(pos_slice=idx)
    torch.testing.assert_close(heads, cache.stack_head_results()[:, batch, idx])
    acc = cache.accumulated_resid(pos_slice=idx)
    torch.testing.assert_close(acc[0], cache["resid_pre", 0][batch, idx])
    with pytest.raises(ValueError, match="one per prompt|2 entries but there are 3 prompts"):
        cache.decompose_resid(pos_slice=torch.tensor([1, 2]))


def test_logit_attrs(cache):
    tokens, wrong = torch.tensor([1, 5, 7]), torch.tensor([2, 2, 9])
    comps = cache.decompose_resid(pos_slice=-1)
    logits = layer_norm(cache["resid_post", 1])[:, -1] @ cache.model.W_U  # [batch, vocab], no b_U
    batch = torch.arange(B)
    attrs = cache.logit_attrs(comps, tokens, pos_slice=-1)
    assert attrs.shape == (comps.shape[0], B)
    torch.testing.assert_close(attrs.sum(0), logits[batch, tokens])
    diff = cache.logit_attrs(comps, tokens, incorrect_tokens=wrong, pos_slice=-1)
    torch.testing.assert_close(diff.sum(0), logits[batch, tokens] - logits[batch, wrong])
    with pytest.raises(ValueError, match="differ in shape"):
        cache.logit_attrs(comps, tokens, incorrect_tokens=torch.tensor([1, 2]), pos_slice=-1)


@pytest.mark.parametrize("expand_neurons", [False, True])
@pytest.mark.parametrize(
    "layer, mlp_input, resid",
    [(None, False, ("resid_post", 1)), (1, False, ("resid_pre", 1)), (1, True, ("resid_mid", 1))],
)
def test_full_resid_decomposition_sums(cache, expand_neurons, layer, mlp_input, resid):
    comps, labels = cache.get_full_resid_decomposition(
        layer, mlp_input, expand_neurons, return_labels=True
    )
    torch.testing.assert_close(comps.sum(0), cache[resid])
    assert labels[-3:] == ["embed", "pos_embed", "bias"] and len(labels) == comps.shape[0]
    assert ("L1N5" in labels) == (expand_neurons and layer is None)


def test_parallel_model_has_no_mid():
    par = make_cache(parallel=True)
    _, labels = par.accumulated_resid(incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "1_pre", "final_post"]
    comps, labels = par.decompose_resid(layer=1, mlp_input=True, return_labels=True)
    assert "1_attn_out" not in labels
    torch.testing.assert_close(comps.sum(0), par["resid_pre", 1])
    torch.testing.assert_close(
        par.get_full_resid_decomposition(1, mlp_input=True).sum(0), par["resid_pre", 1]
    )
    torch.testing.assert_close(
        par.decompose_resid(apply_ln=True).sum(0), layer_norm(par["resid_post", 1])
    )


def test_stack_activation(cache):
    stacked = cache.stack_activation("pattern")
    assert stacked.shape == (L, B, H, P, P)
    torch.testing.assert_close(stacked[1], cache["pattern", 1])


def test_remove_batch_dim():
    with pytest.raises(ValueError, match="batch of exactly 1"):
        make_cache().remove_batch_dim()
    single = make_cache(batch=1).remove_batch_dim()
    assert not single.has_batch_dim and single["resid_pre", 0].shape == (P, D)
    comps = single.decompose_resid(pos_slice=-1)
    scaled = single.apply_ln_to_stack(comps, pos_slice=-1, has_batch_dim=False)
    torch.testing.assert_close(scaled.sum(0), layer_norm(single["resid_post", 1])[-1])
    with pytest.raises(ValueError, match="batch dimension"):
        single.decompose_resid(pos_slice=torch.tensor([1]))


def test_argument_errors(cache):
    with pytest.raises(ValueError, match="mode must be"):
        cache.decompose_resid(mode="heads")
    with pytest.raises(ValueError, match="out of range"):
        cache.accumulated_resid(layer=3)
    with pytest.raises(ValueError, match="mlp_input=True needs the layer of a block"):
        cache.decompose_resid(layer=None, mlp_input=True)
    with pytest.raises(ValueError, match="does not line up"):
        cache.apply_ln_to_stack(cache.decompose_resid(pos_slice=-1))  # forgot pos_slice=-1


def test_to_and_repr(cache):
    assert cache.to("cpu") is cache
    text = repr(cache)
    assert text.startswith(f"ActivationCache({len(cache)} activations, batch dim: yes)")
    assert "hook_embed [3, 5, 8]" in text and "more)" in text
