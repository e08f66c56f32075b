"""Forward-pass behaviour: layer slicing, padding, hooks and their cleanup, input errors."""

import pytest
import torch

from circuitscope import HookedTransformer, get_act_name
from hf_models import make_hf_model, random_tokens


@pytest.fixture(scope="module")
def gpt2():
    return HookedTransformer.from_pretrained("gpt2-tiny", hf_model=make_hf_model("gpt2"), device="cpu")


@pytest.fixture(scope="module")
def neox():
    return HookedTransformer.from_pretrained("neox-tiny", hf_model=make_hf_model("neox"), device="cpu")


@pytest.mark.parametrize("which", ["gpt2", "neox"])
def test_stop_then_start_reproduces_forward(which, request):
    model = request.getfixturevalue(which)
    tokens = random_tokens()
    full = model(tokens)
    for layer in range(model.cfg.n_layers + 1):
        resid = model(tokens, stop_at_layer=layer)
        assert resid.shape == (*tokens.shape, model.cfg.d_model)
        torch.testing.assert_close(model(resid, start_at_layer=layer), full, atol=1e-5, rtol=0)


def test_stop_at_layer_equals_cached_resid_pre(gpt2):
    tokens = random_tokens()
    _, cache = gpt2.run_with_cache(tokens)
    torch.testing.assert_close(gpt2(tokens, stop_at_layer=1), cache["blocks.1.hook_resid_pre"])


@pytest.mark.parametrize("which", ["gpt2", "neox"])
def test_padded_batch_equals_one_by_one(which, request):
    model = request.getfixturevalue(which)
    g = torch.Generator().manual_seed(3)
    lengths = [5, 9, 7]
    seqs = [torch.randint(0, 97, (n,), generator=g) for n in lengths]
    right = torch.zeros(3, 9, dtype=torch.long)
    left = torch.zeros(3, 9, dtype=torch.long)
    left_mask = torch.zeros(3, 9, dtype=torch.long)
    for i, s in enumerate(seqs):
        right[i, : len(s)] = s
        left[i, 9 - len(s):] = s
        left_mask[i, 9 - len(s):] = 1
    right_logits = model(right)
    left_logits = model(left, attention_mask=left_mask)
    for i, s in enumerate(seqs):
        alone = model(s[None])[0]
        torch.testing.assert_close(right_logits[i, : len(s)], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(left_logits[i, 9 - len(s):], alone, atol=1e-5, rtol=0)


def test_kv_cache_generation_matches_full_forward(neox):
    from circuitscope.model.kv_cache import KVCache

    tokens = random_tokens(batch=2, pos=10)
    full = neox(tokens)
    cache = KVCache.empty(neox.cfg.n_layers)
    first = neox(tokens[:, :6], past_kv_cache=cache)
    rest = neox(tokens[:, 6:], past_kv_cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=0)


def test_hook_replacement_changes_output(gpt2):
    tokens = random_tokens()
    clean = gpt2(tokens)

    def zero_head(z, hook):
        z[:, :, 1] = 0.0
        return z

    patched = gpt2.run_with_hooks(tokens, fwd_hooks=[(get_act_name("z", 0), zero_head)])
    assert not torch.allclose(patched, clean, atol=1e-4)
    torch.testing.assert_close(gpt2(tokens), clean)  # hook gone afterwards


def test_hooks_removed_even_when_hook_raises(gpt2):
    tokens = random_tokens()

    def boom(x, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        gpt2.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", boom)])
    assert not any(hp.active for hp in gpt2.hook_dict.values())


def test_hook_lifetimes(gpt2):
    """TransformerLens 2.x lifetimes: add_hook hooks outlive run_with_cache until reset_hooks()."""
    tokens = random_tokens()
    calls = {"loose": 0, "perm": 0}
    gpt2.add_hook("blocks.0.hook_resid_pre", lambda x, hook: calls.__setitem__("loose", calls["loose"] + 1))
    gpt2.add_hook("blocks.0.hook_resid_post", lambda x, hook: calls.__setitem__("perm", calls["perm"] + 1),
                  is_permanent=True)
    gpt2(tokens)
    gpt2.run_with_cache(tokens)  # the loose hook runs here too, and stays
    gpt2.reset_hooks()
    gpt2(tokens)
    assert calls == {"loose": 2, "perm": 3}
    with gpt2.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: None)]):
        gpt2.run_with_cache(tokens)
        assert gpt2.hook_dict["blocks.1.hook_resid_pre"].active  # an inner run keeps the outer context
    assert not gpt2.hook_dict["blocks.1.hook_resid_pre"].active
    gpt2.reset_hooks(including_permanent=True)
    assert not any(hp.active for hp in gpt2.hook_dict.values())


def test_hook_point_add_hook_like_seed(gpt2):
    """``model.blocks[L].attn.hook_z.add_hook(fn)`` works and stays until ``reset_hooks()``."""
    tokens = random_tokens()
    clean = gpt2(tokens)
    gpt2.blocks[1].attn.hook_z.add_hook(lambda z, hook: torch.zeros_like(z))
    try:
        ablated, _ = gpt2.run_with_cache(tokens)
        assert not torch.allclose(ablated, clean, atol=1e-4)
        torch.testing.assert_close(gpt2(tokens), ablated)
    finally:
        gpt2.reset_hooks()
    torch.testing.assert_close(gpt2(tokens), clean)


def test_backward_hooks_receive_gradients(gpt2):
    tokens = random_tokens()
    grads = {}
    gpt2.add_hook("blocks.1.hook_resid_pre", lambda g, hook: grads.__setitem__(hook.name, g.clone()), dir="bwd")
    try:
        with torch.enable_grad():
            resid = gpt2(tokens, stop_at_layer=1).detach().requires_grad_(True)
            logits = gpt2.run_with_hooks(resid, start_at_layer=1, reset_hooks_end=False)
            logits[:, -1, 3].sum().backward()
    finally:
        gpt2.reset_hooks()
    torch.testing.assert_close(grads["blocks.1.hook_resid_pre"], resid.grad)


def test_opt_in_hooks(gpt2):
    tokens = random_tokens()
    _, cache = gpt2.run_with_cache(tokens)
    assert "blocks.0.attn.hook_result" not in cache.keys()
    assert "blocks.0.hook_q_input" not in cache.keys()
    logits, cache = gpt2.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_result", "blocks.0.hook_q_input",
                                                             "blocks.0.hook_attn_out"])
    result = cache["blocks.0.attn.hook_result"]
    assert result.shape == (*tokens.shape, gpt2.cfg.n_heads, gpt2.cfg.d_model)
    torch.testing.assert_close(result.sum(2) + gpt2.b_O[0], cache["blocks.0.hook_attn_out"], atol=1e-5, rtol=0)
    assert cache["blocks.0.hook_q_input"].shape == (*tokens.shape, gpt2.cfg.n_heads, gpt2.cfg.d_model)
    torch.testing.assert_close(logits, gpt2(tokens), atol=1e-5, rtol=0)


def test_names_filter_caches_only_requested(gpt2):
    _, cache = gpt2.run_with_cache(random_tokens(), names_filter=lambda n: n.endswith("hook_z"), return_type=None)
    assert set(cache.keys()) == {f"blocks.{l}.attn.hook_z" for l in range(gpt2.cfg.n_layers)}


def test_unknown_hook_name_suggests(gpt2):
    with pytest.raises(KeyError, match="blocks.1.attn.hook_z"):
        gpt2.run_with_hooks(random_tokens(), fwd_hooks=[("blocks.1.attn.hook_zz", lambda x, hook: None)])


def test_tokens_longer_than_context(gpt2):
    too_long = torch.zeros(1, gpt2.cfg.n_ctx + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="context of 64 tokens"):
        gpt2(too_long)


def test_unsupported_architecture(tmp_path):
    import transformers as tf

    cfg = tf.BertConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32, vocab_size=50)
    tf.BertForMaskedLM(cfg).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unsupported architecture.*GPT2LMHeadModel.*LlamaForCausalLM"):
        HookedTransformer.from_pretrained(str(tmp_path), device="cpu")


def test_offline_hub_name_error():
    with pytest.raises(OSError, match="not a local folder"):
        HookedTransformer.from_pretrained("no-such-org/no-such-model-xyz", device="cpu")


def test_weight_views_shapes(gpt2):
    c = gpt2.cfg
    assert gpt2.W_Q.shape == (c.n_layers, c.n_heads, c.d_model, c.d_head)
    assert gpt2.W_O.shape == (c.n_layers, c.n_heads, c.d_head, c.d_model)
    qk = gpt2.QK
    assert qk.shape == (c.n_layers, c.n_heads, c.d_model, c.d_model)
    torch.testing.assert_close(qk.AB[1, 2], gpt2.W_Q[1, 2] @ gpt2.W_K[1, 2].T)
    torch.testing.assert_close(gpt2.OV.AB[0, 3], gpt2.W_V[0, 3] @ gpt2.W_O[0, 3])


@pytest.mark.parametrize("which", ["gpt2", "neox"])
def test_block_keep_subset_of_positions(which, request):
    """Computing the last block only at chosen positions gives those rows of the full run."""
    model = request.getfixturevalue(which)
    tokens = random_tokens()
    last = model.cfg.n_layers - 1
    _, cache = model.run_with_cache(tokens)
    resid = cache["resid_pre", last]
    positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
    keep = torch.tensor([[11], [4], [7]])
    out = model.blocks[last](resid, positions, keep=keep)  # [batch, 1, d_model]
    expected = cache["resid_post", last].gather(1, keep[..., None].expand(-1, -1, model.cfg.d_model))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_block_reuses_prefix_keys_values(neox):
    """Starting a block mid-sequence with the prefix's cached keys/values reproduces the suffix."""
    from circuitscope.model.kv_cache import LayerKV

    tokens = random_tokens()
    _, cache = neox.run_with_cache(tokens)
    resid = cache["resid_pre", 1]
    positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
    split = 5
    past = LayerKV(cache["rot_k", 1][:, :split], cache["v", 1][:, :split], frozen=True)
    out = neox.blocks[1](resid[:, split:], positions[:, split:], past=past)
    torch.testing.assert_close(out, cache["resid_post", 1][:, split:], atol=1e-5, rtol=0)


def test_refactor_factored_attn_matrices_balances_qk_and_ov():
    hf = make_hf_model("gpt2")
    plain = HookedTransformer.from_pretrained("gpt2-tiny", hf_model=hf, device="cpu")
    refac = HookedTransformer.from_pretrained("gpt2-tiny", hf_model=hf, device="cpu", refactor_factored_attn_matrices=True)
    torch.testing.assert_close(refac.QK.AB, plain.QK.AB, atol=1e-5, rtol=0)
    torch.testing.assert_close(refac.OV.AB, plain.OV.AB, atol=1e-5, rtol=0)
    q = torch.cat([refac.W_Q[0, 0], refac.b_Q[0, 0][None]], dim=0)  # [d_model + 1, d_head]
    k = torch.cat([refac.W_K[0, 0], refac.b_K[0, 0][None]], dim=0)
    torch.testing.assert_close(q.pow(2).sum(0), k.pow(2).sum(0), atol=1e-5, rtol=1e-4)
    gram = q.T @ q
    torch.testing.assert_close(gram - torch.diag(gram.diag()), torch.zeros_like(gram), atol=1e-5, rtol=0)
    tokens = random_tokens()
    torch.testing.assert_close(refac(tokens), plain(tokens), atol=1e-4, rtol=0)


def test_predicates_skip_opt_in_hooks_unless_enabled(gpt2):
    tokens = random_tokens()
    _, everything = gpt2.run_with_cache(tokens, names_filter=lambda name: True)
    _, default = gpt2.run_with_cache(tokens)
    assert set(everything.keys()) == set(default.keys())
    gpt2.set_use_attn_result(True)
    try:
        _, with_result = gpt2.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_result"))
    finally:
        gpt2.set_use_attn_result(False)
    assert len(with_result.keys()) == gpt2.cfg.n_layers


def test_run_with_cache_incl_bwd_caches_gradients(gpt2):
    tokens = random_tokens()
    with torch.enable_grad():
        logits, cache = gpt2.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_pre", "blocks.0.attn.hook_z"],
                                            incl_bwd=True)
        logits[:, -1, 5].sum().backward()
    assert set(cache.keys()) == {"blocks.1.hook_resid_pre", "blocks.0.attn.hook_z",
                                 "blocks.1.hook_resid_pre_grad", "blocks.0.attn.hook_z_grad"}
    assert cache["blocks.0.attn.hook_z_grad"].shape == cache["blocks.0.attn.hook_z"].shape
    with torch.enable_grad():
        resid = gpt2(tokens, stop_at_layer=1).detach().requires_grad_(True)
        (expected,) = torch.autograd.grad(gpt2(resid, start_at_layer=1)[:, -1, 5].sum(), resid)
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre_grad"], expected)
    gpt2.reset_hooks()
    assert not any(hp.active for hp in gpt2.hook_dict.values())


def test_logit_positions_unembed_only_where_read(neox):
    tokens = random_tokens()
    full = neox(tokens)
    answer_pos = torch.tensor([11, 3, 7])
    picked = neox(tokens, logit_positions=answer_pos)
    assert picked.shape == (3, neox.cfg.d_vocab)
    torch.testing.assert_close(picked, full[torch.arange(3), answer_pos])
    torch.testing.assert_close(neox(tokens, logit_positions=-1), full[:, -1])
    with pytest.raises(ValueError, match="logit_positions"):
        neox(tokens, logit_positions=answer_pos, return_type="loss")
