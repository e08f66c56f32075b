"""The seed notebooks' hand-written steps, in the API they use, with answers we can check
independently (a patch of everything must reproduce the run it was taken from, etc.)."""

from functools import partial

import pytest
import torch

from circuitscope import HookedTransformer, TransformerConfig, utils
from circuitscope.tasks import IOIDataset


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    torch.manual_seed(1)
    cfg = TransformerConfig(n_layers=3, d_model=48, n_heads=4, d_head=12, d_vocab=len(tiny_tokenizer), n_ctx=64, d_mlp=96)
    return HookedTransformer(cfg, tokenizer=tiny_tokenizer)


@pytest.fixture(scope="module")
def datasets(model):
    ioi = IOIDataset(prompt_type="mixed", N=12, tokenizer=model.tokenizer, prepend_bos=False, seed=1)
    return ioi, ioi.gen_flipped_prompts("ABB->XYZ, BAB->XYZ")


def test_residual_patch_at_every_position_restores_clean(model, datasets):
    ioi, abc = datasets
    clean_logits, clean_cache = model.run_with_cache(ioi.toks)

    def patch_residual(resid, hook, pos=None):
        resid[:, pos] = clean_cache[hook.name][:, pos]
        return resid

    name = utils.get_act_name("resid_pre", 1)
    all_pos = list(range(ioi.toks.shape[1]))
    patched = model.run_with_hooks(abc.toks, fwd_hooks=[(name, partial(patch_residual, pos=all_pos))])
    torch.testing.assert_close(patched, clean_logits, atol=1e-5, rtol=0)


def test_unembed_of_cached_final_residual(model, datasets):
    ioi, _ = datasets
    last = utils.get_act_name("resid_post", model.cfg.n_layers - 1)
    logits = model(ioi.toks)
    _, cache = model.run_with_cache(ioi.toks, names_filter=lambda n: n == last, return_type=None)
    assert set(cache.keys()) == {last}
    torch.testing.assert_close(model.unembed(model.ln_final(cache[last])), logits, atol=1e-5, rtol=0)


def test_path_patching_step_two_freezes_heads(model, datasets):
    """Seed 004's step 2: freeze every head's z to the original run and patch one sender from the
    new run; with the sender frozen too, the result is the original run again."""
    ioi, abc = datasets
    z_filter = lambda name: name.endswith("z")  # noqa: E731
    _, orig_cache = model.run_with_cache(ioi.toks, names_filter=z_filter, return_type=None)
    _, new_cache = model.run_with_cache(abc.toks, names_filter=z_filter, return_type=None)
    last = utils.get_act_name("resid_post", model.cfg.n_layers - 1)

    def patch_or_freeze(z, hook, sender=None):
        z[...] = orig_cache[hook.name][...]
        if sender is not None and hook.layer() == sender[0]:
            z[:, :, sender[1]] = new_cache[hook.name][:, :, sender[1]]
        return z

    _, reference = model.run_with_cache(ioi.toks, names_filter=last, return_type=None)
    model.add_hook(z_filter, partial(patch_or_freeze, sender=None), level=1)
    _, frozen = model.run_with_cache(ioi.toks, names_filter=last, return_type=None)
    torch.testing.assert_close(frozen[last], reference[last], atol=1e-5, rtol=0)
    assert not any(hp.active for hp in model.hook_dict.values())  # the level-1 hook went with the run

    model.add_hook(z_filter, partial(patch_or_freeze, sender=(0, 2)))
    try:
        _, patched = model.run_with_cache(ioi.toks, names_filter=last, return_type=None)
    finally:
        model.reset_hooks()  # a hook added without level=1 stays until reset (TransformerLens 2.x)
    assert not torch.allclose(patched[last], reference[last], atol=1e-4)


def test_head_ablation_then_dla_like_seed_000(model, datasets):
    ioi, _ = datasets

    def ablate(z, hook, head_idx=0):
        z[:, -1, head_idx, :] = 0
        return z

    clean_logits, clean_cache = model.run_with_cache(ioi.toks)
    model.blocks[2].attn.hook_z.add_hook(partial(ablate, head_idx=1))
    try:
        ablated_logits, ablated_cache = model.run_with_cache(ioi.toks)
    finally:
        model.reset_hooks()  # the ablation hook would otherwise stay (TransformerLens 2.x)
    assert not torch.allclose(ablated_logits[:, -1], clean_logits[:, -1], atol=1e-5)
    heads, labels = ablated_cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    assert heads[labels.index("L2H1")].abs().max() == 0  # the ablated head writes nothing at the last position
