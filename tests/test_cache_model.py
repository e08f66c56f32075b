"""ActivationCache on real models: the residual decompositions add up to what the model computes."""

import pytest
import torch

from circuitscope import HookedTransformer
from hf_models import make_hf_model, random_tokens

ANSWERS = torch.tensor([[5, 7], [11, 2], [40, 41]])  # (correct, incorrect) per prompt


@pytest.fixture(scope="module", params=["gpt2", "neox", "llama"])
def model(request):
    return HookedTransformer.from_pretrained(request.param, hf_model=make_hf_model(request.param), device="cpu")


def _logit_diff(model, logits):
    final = logits[:, -1]
    return final.gather(1, ANSWERS[:, :1])[:, 0] - final.gather(1, ANSWERS[:, 1:])[:, 0]


def test_decompose_resid_projects_to_logit_diff(model):
    """Seed 001's check: per-component DLA (after freezing the final norm's scale) sums to the
    model's logit difference, once the unembedding bias (which folding gives the final LN's
    bias) is added back."""
    tokens = random_tokens()
    logits, cache = model.run_with_cache(tokens)
    directions = model.tokens_to_residual_directions(ANSWERS)  # [batch, 2, d_model]
    diff_dir = directions[:, 0] - directions[:, 1]  # [batch, d_model]
    stack, labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    assert labels[0] == "embed" and labels[-1].endswith("mlp_out")
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)  # [component, batch, d_model]
    per_component = (scaled * diff_dir).sum(-1)  # [component, batch]
    bias = model.b_U[ANSWERS[:, 0]] - model.b_U[ANSWERS[:, 1]]
    torch.testing.assert_close(per_component.sum(0) + bias, _logit_diff(model, logits), atol=1e-4, rtol=0)


def test_accumulated_resid_final_equals_logits(model):
    tokens = random_tokens()
    logits, cache = model.run_with_cache(tokens)
    acc, labels = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1, return_labels=True)
    assert labels[-1] == "final_post" and len(acc) == len(labels)
    final = cache.apply_ln_to_stack(acc[-1:], layer=-1, pos_slice=-1)[0]
    torch.testing.assert_close(final @ model.W_U + model.b_U, logits[:, -1], atol=1e-4, rtol=0)


def test_stack_head_results_match_attention_output(model):
    tokens = random_tokens()
    _, cache = model.run_with_cache(tokens)
    heads, labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    assert labels[:2] == ["L0H0", "L0H1"] and len(labels) == model.cfg.n_layers * model.cfg.n_heads
    per_layer = heads.reshape(model.cfg.n_layers, model.cfg.n_heads, *heads.shape[1:]).sum(1)
    for layer in range(model.cfg.n_layers):
        expected = cache["attn_out", layer][:, -1] - model.b_O[layer]
        torch.testing.assert_close(per_layer[layer], expected, atol=1e-5, rtol=0)


def test_tuple_keys_and_pattern(model):
    tokens = random_tokens()
    _, cache = model.run_with_cache(tokens)
    assert cache["resid_post", -1] is cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    pattern = cache["pattern", 0]
    assert pattern.shape == (tokens.shape[0], model.cfg.n_heads, tokens.shape[1], tokens.shape[1])
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert torch.all(pattern.triu(1) == 0)
