"""Forward-pass inputs that used to give silently wrong results or unhelpful errors.

Layer slices read negative indices Python-style; token tensors carry their padding mask; bad
token tensors, masks and generation requests raise errors that name their cause.
"""

import pytest
import torch

from circuitscope import HookedTransformer, TransformerConfig
from hf_models import make_hf_model, random_tokens


@pytest.fixture(scope="module")
def gpt2():
    return HookedTransformer.from_pretrained("gpt2-tiny", hf_model=make_hf_model("gpt2"), device="cpu")


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    """Four layers, so negative layer indices have room to go wrong."""
    torch.manual_seed(0)
    cfg = TransformerConfig(n_layers=4, d_model=32, n_heads=4, d_head=8, d_vocab=len(tiny_tokenizer), n_ctx=64, d_mlp=64)
    return HookedTransformer(cfg, tokenizer=tiny_tokenizer)


PROMPTS = ["When Mary and John went to the store, John gave a drink to", "Then, Tom", "The day after Monday is"]


# ------------------------------------------------------------------ layer slices
def _blocks_run(model, **kwargs):
    ran = []
    hooks = [(f"blocks.{layer}.hook_resid_pre", lambda x, hook: ran.append(hook.name)) for layer in range(4)]
    tokens = random_tokens(batch=2, pos=6)
    if "start_at_layer" in kwargs:
        tokens = torch.randn(2, 6, model.cfg.d_model)
    model.run_with_hooks(tokens, fwd_hooks=hooks, **kwargs)
    return [int(name.split(".")[1]) for name in ran]


def test_negative_stop_at_layer_runs_all_but_the_last_blocks(model):
    tokens = random_tokens(batch=2, pos=6)
    assert _blocks_run(model, stop_at_layer=-1) == [0, 1, 2]
    torch.testing.assert_close(model(tokens, stop_at_layer=-1), model(tokens, stop_at_layer=3))
    torch.testing.assert_close(model(tokens, stop_at_layer=-4), model(tokens, stop_at_layer=0))


def test_negative_start_at_layer_runs_only_the_last_blocks(model):
    assert _blocks_run(model, start_at_layer=-1) == [3]
    assert _blocks_run(model, start_at_layer=-3, stop_at_layer=-1) == [1, 2]
    resid = torch.randn(2, 6, model.cfg.d_model)
    torch.testing.assert_close(model(resid, start_at_layer=-1), model(resid, start_at_layer=3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(start_at_layer=3, stop_at_layer=1), "start_at_layer.*after stop_at_layer"),
    (dict(start_at_layer=-1, stop_at_layer=-2), "start_at_layer.*after stop_at_layer"),
    (dict(stop_at_layer=5), "stop_at_layer=5 is out of range"),
    (dict(stop_at_layer=-5), "stop_at_layer=-5 is out of range"),
    (dict(start_at_layer=5), "start_at_layer=5 is out of range"),
    (dict(start_at_layer=-5), "start_at_layer=-5 is out of range"),
    (dict(start_at_layer=1.0), "start_at_layer must be an int"),
    (dict(stop_at_layer=True), "stop_at_layer must be an int"),
])
def test_bad_layer_ranges_raise(model, kwargs, match):
    x = torch.randn(2, 6, model.cfg.d_model) if "start_at_layer" in kwargs else random_tokens(batch=2, pos=6)
    with pytest.raises((ValueError, TypeError), match=match):
        model(x, **kwargs)


def test_layer_range_edges_are_valid(model):
    tokens = random_tokens(batch=2, pos=6)
    full = model(tokens)
    final_resid = model(tokens, stop_at_layer=4)
    torch.testing.assert_close(model(final_resid, start_at_layer=4), full, atol=1e-5, rtol=0)
    mid = model(tokens, stop_at_layer=2)
    torch.testing.assert_close(model(mid, start_at_layer=2, stop_at_layer=2), mid)


# ------------------------------------------------------------------ padding and the loss
def test_left_padded_tokens_without_mask_match_unpadded(model):
    """to_tokens(padding_side='left') fed back as tokens alone: the mask travels with them."""
    left = model.to_tokens(PROMPTS, padding_side="left")
    logits = model(left)
    for i, prompt in enumerate(PROMPTS):
        alone = model(model.to_tokens(prompt))[0]
        torch.testing.assert_close(logits[i, -alone.shape[0]:], alone, atol=1e-5, rtol=0)


def test_left_padding_is_detected_from_the_pad_token(model, tiny_tokenizer):
    """Tokens built elsewhere (here: sliced, which drops any attached mask) are read as
    TransformerLens reads them: leading pad tokens are padding, the last one doubles as BOS."""
    left = model.to_tokens(PROMPTS, padding_side="left")
    sliced = left[:, :].clone()
    logits = model(sliced)
    for i, prompt in enumerate(PROMPTS):
        alone = model(model.to_tokens(prompt))[0]
        torch.testing.assert_close(logits[i, -alone.shape[0]:], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_text_and_token_paths_give_the_same_loss(model, side):
    text_loss = model(PROMPTS, return_type="loss", padding_side=side)
    token_loss = model(model.to_tokens(PROMPTS, padding_side=side), return_type="loss")
    torch.testing.assert_close(token_loss, text_loss)


@pytest.mark.parametrize("side", ["left", "right"])
def test_loss_never_scores_padding(model, side):
    """The batch loss is the token-weighted mean of each prompt's loss on its own."""
    total, count = 0.0, 0
    for prompt in PROMPTS:
        tokens = model.to_tokens(prompt)
        total += float(model(tokens, return_type="loss")) * (tokens.shape[1] - 1)
        count += tokens.shape[1] - 1
    for batch_loss in (model(PROMPTS, return_type="loss", padding_side=side),
                       model(model.to_tokens(PROMPTS, padding_side=side), return_type="loss")):
        assert float(batch_loss) == pytest.approx(total / count, abs=1e-5)


def test_per_token_loss_is_zero_at_padding(model):
    tokens, mask = model.to_tokens(PROMPTS, padding_side="left", return_mask=True)
    per_token = model(tokens, return_type="loss", loss_per_token=True)  # [batch, pos - 1]
    scored = mask[:, :-1].bool() & mask[:, 1:].bool()
    assert (per_token[~scored] == 0).all() and (per_token[scored] > 0).all()


def test_unpadded_input_keeps_the_fused_causal_path(model, monkeypatch):
    """No padding -> no mask is built, so attention gets is_causal (the fastest kernel)."""
    seen = []
    orig = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("attn_mask"))
        return orig(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model(model.to_tokens(PROMPTS[0]))
    model(model.to_tokens(PROMPTS))  # right padding: real positions never see the pads
    model(PROMPTS)
    model(random_tokens(batch=2, pos=6).clamp(min=1))
    assert len(seen) == 4 * model.cfg.n_layers and all(m is None for m in seen)


def test_right_padded_tokens_keep_real_positions_exact(model):
    tokens = model.to_tokens(PROMPTS)
    logits = model(tokens)
    for i, prompt in enumerate(PROMPTS):
        alone = model(model.to_tokens(prompt))[0]
        assert torch.equal(logits[i, : alone.shape[0]], alone) or torch.allclose(logits[i, : alone.shape[0]], alone, atol=1e-6)


# ------------------------------------------------------------------ token tensors and masks
@pytest.mark.parametrize("bad, match", [
    (torch.tensor(5), "0-d"),
    (torch.zeros(2, 3, 4, dtype=torch.long), "3-d"),
    (torch.zeros(2, 0, dtype=torch.long), "empty"),
    (torch.zeros(0, 4, dtype=torch.long), "empty"),
    (torch.randn(2, 6, 64), "start_at_layer"),
    ([], "empty"),
])
def test_bad_token_tensors_name_the_problem(gpt2, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gpt2(bad)


def test_float_attention_mask_is_rejected(gpt2):
    tokens = random_tokens(batch=2, pos=6)
    with pytest.raises(TypeError, match="attention_mask.*integer or bool.*float"):
        gpt2(tokens, attention_mask=torch.ones(2, 6))
    with pytest.raises(ValueError, match="attention_mask.*shape"):
        gpt2(tokens, attention_mask=torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask.*0 and 1"):
        gpt2(tokens, attention_mask=torch.full((2, 6), 2))


def test_list_of_token_ids_is_accepted(gpt2):
    tokens = random_tokens(batch=2, pos=6)
    torch.testing.assert_close(gpt2(tokens.tolist()), gpt2(tokens))


# ------------------------------------------------------------------ generate and decoding
def test_generate_errors(model):
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        model.generate("When Mary", max_new_tokens=-1)
    with pytest.raises(ValueError, match="context of 64 tokens"):
        model.generate("When Mary", max_new_tokens=70)
    with pytest.raises(TypeError, match="one prompt"):
        model.generate(["When Mary", "Then, Tom"])
    assert model.generate("When Mary", max_new_tokens=0) == "<|endoftext|>When Mary"


def test_to_string_out_of_range_ids(model):
    vocab = len(model.tokenizer)
    with pytest.raises(ValueError, match=f"{vocab + 5}.*vocabulary of {vocab}"):
        model.to_string([1, vocab + 5])
    with pytest.raises(ValueError, match="-1"):
        model.to_string(torch.tensor([[1, -1]]))


def test_attention_mask_for_reports_what_attention_applies(model):
    """Right padding runs the plain causal mask (None); left padding gets the padding mask."""
    assert model.attention_mask_for(model.to_tokens(PROMPTS)) is None
    left, mask = model.to_tokens(PROMPTS, padding_side="left", return_mask=True)
    assert torch.equal(model.attention_mask_for(left), mask)
    assert torch.equal(model.attention_mask_for(left.clone()), mask)  # read off the pad token


def test_text_options_are_checked(model):
    with pytest.raises(TypeError, match="prepend_bos must be True, False or None.*'no'"):
        model.to_tokens("When Mary", prepend_bos="no")  # a truthy string used to mean True
    with pytest.raises(TypeError, match="prepend_bos"):
        model(["When Mary"], prepend_bos="no")
    with pytest.raises(TypeError, match="string or a list of strings"):
        model.to_tokens(12)
    with pytest.raises(ValueError, match="vocabulary"):
        model.to_str_tokens([1, len(model.tokenizer)])


def test_get_token_position_takes_one_prompt(model):
    tokens = model.to_tokens(["When Mary and John", "When John and Mary"])
    with pytest.raises(ValueError, match="one prompt"):
        model.get_token_position(" John", tokens)  # used to index the flattened batch
    with pytest.raises(ValueError, match="mode"):
        model.get_token_position(" John", tokens[:1], mode="middle")
    assert model.get_token_position(" John", tokens[1:]) == 2


def test_logit_positions_and_short_loss_inputs(model):
    tokens = model.to_tokens(PROMPTS)
    with pytest.raises(ValueError, match="logit_positions.*within"):
        model(tokens, logit_positions=torch.tensor([0, 1, tokens.shape[1]]))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        model(tokens[:, :1], return_type="loss")


def test_generate_on_left_padded_prompts_matches_one_by_one(model):
    """The route generate's error message suggests for several prompts really works."""
    left = model.to_tokens(PROMPTS, padding_side="left")
    out = model.generate(left, max_new_tokens=4)  # [batch, pos + 4]
    for i, prompt in enumerate(PROMPTS):
        alone = model.generate(model.to_tokens(prompt), max_new_tokens=4)[0]
        assert torch.equal(out[i, -alone.shape[0]:], alone)
