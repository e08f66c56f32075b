"""Text-facing model API on a random model with the tiny test tokenizer."""

import pytest
import torch

from circuitscope import HookedTransformer, TransformerConfig
from circuitscope.utils import PromptTest, test_prompt


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    torch.manual_seed(0)
    cfg = TransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_vocab=len(tiny_tokenizer), n_ctx=64, d_mlp=64)
    return HookedTransformer(cfg, tokenizer=tiny_tokenizer)


def test_random_init_is_finite_and_nontrivial(model):
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.W_Q.std() > 0.01


def test_to_tokens_pads_right_and_prepends_bos(model, tiny_tokenizer):
    tokens, mask = model.to_tokens(["When Mary and John", "Then, Tom"], return_mask=True)
    assert tokens.shape == mask.shape and tokens.shape[0] == 2
    assert (tokens[:, 0] == tiny_tokenizer.bos_token_id).all()
    assert mask[0].all() and not mask[1].all()  # the shorter prompt is padded on the right
    assert model.to_str_tokens("When Mary and John")[:3] == ["<|endoftext|>", "When", " Mary"]
    no_bos = model.to_tokens("When Mary", prepend_bos=False)
    assert no_bos[0, 0] != tiny_tokenizer.bos_token_id
    assert model.to_string(no_bos[0]) == "When Mary"
    assert model.to_string(torch.cat([no_bos, no_bos])) == ["When Mary", "When Mary"]


def test_text_input_runs_like_tokens(model):
    prompts = ["When Mary and John went to the store", "Then, Tom"]
    tokens, mask = model.to_tokens(prompts, return_mask=True)
    real = mask.bool()  # padding positions may differ; real tokens must not
    torch.testing.assert_close(model(prompts)[real], model(tokens)[real])


def test_to_single_token_errors_show_the_split(model):
    assert model.to_single_token(" Mary") == model.to_tokens(" Mary", prepend_bos=False)[0, 0]
    with pytest.raises(ValueError, match="not a single token.*splits into"):
        model.to_single_token(" Zyzzyva")


def test_tokens_to_residual_directions(model):
    ids = torch.tensor([[3, 4], [5, 6]])
    dirs = model.tokens_to_residual_directions(ids)
    assert dirs.shape == (2, 2, model.cfg.d_model)
    torch.testing.assert_close(dirs[1, 0], model.W_U[:, 5])
    torch.testing.assert_close(model.tokens_to_residual_directions(" Mary"), model.W_U[:, model.to_single_token(" Mary")])


def test_test_prompt_reports_rank_and_top_k(model):
    result = test_prompt("When Mary and John went to the store, John gave a drink to", " Mary", model, top_k=5,
                         print_details=False)
    assert isinstance(result, PromptTest)
    logits = model(model.to_tokens("When Mary and John went to the store, John gave a drink to"))[0, -1]
    target = model.to_single_token(" Mary")
    assert result.rank == int((logits > logits[target]).sum())
    assert len(result.top_k[0]) == 5 and result.top_k[0][0][0] == model.to_string(int(logits.argmax()))
    text = str(result)
    assert "rank" in text and "' Mary'" in text and "<table>" in result._repr_html_()


def test_prompt_longer_than_context_errors(model):
    with pytest.raises(ValueError, match="context is 64 tokens"):
        model.to_tokens(" Mary" * 80)


def test_generate_greedy_matches_argmax(model):
    tokens = model.to_tokens("When Mary and John")
    out = model.generate(tokens, max_new_tokens=3)
    assert out.shape == (1, tokens.shape[1] + 3)
    first = model(tokens)[0, -1].argmax()
    assert out[0, tokens.shape[1]] == first


def test_attention_only_config_like_transformerlens(tiny_tokenizer):
    from circuitscope import HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_vocab=50, n_ctx=16,
                                  d_mlp=64, attn_only=True)
    model = HookedTransformer(cfg)
    assert cfg.d_mlp is None and not any("mlp" in name for name in model.hook_dict)
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 50)
