"""Head detectors: hand-built attention patterns, then the shipped attention-only organism."""

import pytest
import torch

from circuitscope.analysis import (
    detect_heads,
    detector_targets,
    duplicate_token_score,
    induction_score,
    previous_token_score,
    repeated_random_tokens,
)

SEQ = 6


def _repeated(batch=3, seq=SEQ, seed=0):
    """[BOS] A A with A drawn without repeats inside one copy: [batch, 1 + 2 * seq]."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.stack([torch.randperm(50, generator=gen)[:seq] + 1 for _ in range(batch)])  # [batch, seq]
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), a, a], dim=1)


def _causal_uniform(batch, n):
    p = torch.tril(torch.ones(n, n))
    return (p / p.sum(-1, keepdim=True)).expand(batch, 1, n, n).clone()  # [batch, head, q, k]


def _one_hot_pattern(batch, n, key_of_query):
    """Each query q attends fully to key_of_query(q) (which must be <= q)."""
    p = torch.zeros(batch, 1, n, n)
    for q in range(n):
        p[:, 0, q, key_of_query(q)] = 1.0
    return p


def test_a_perfect_previous_token_head_scores_one_and_a_uniform_head_low():
    n = 1 + 2 * SEQ
    perfect = _one_hot_pattern(2, n, lambda q: max(q - 1, 0))
    assert torch.allclose(previous_token_score(perfect), torch.ones(2, 1))
    uniform = previous_token_score(_causal_uniform(2, n))
    expected = torch.tensor([1.0 / (q + 1) for q in range(1, n)]).mean()  # 1/(q+1) per scored query
    assert torch.allclose(uniform, expected.expand(2, 1))
    assert uniform.max() < 0.3
    bos = previous_token_score(_one_hot_pattern(2, n, lambda q: 0))  # a head parked on BOS
    assert bos.max() < 0.1


def test_an_induction_pattern_is_found_on_repeated_tokens():
    tokens = _repeated()
    n = tokens.shape[1]
    # second-copy queries look at the token after their first occurrence; first copy parks on BOS
    induction = _one_hot_pattern(3, n, lambda q: q - SEQ + 1 if q > SEQ else 0)
    duplicate = _one_hot_pattern(3, n, lambda q: q - SEQ if q > SEQ else 0)
    assert torch.allclose(induction_score(induction, tokens), torch.ones(3, 1))
    assert torch.allclose(duplicate_token_score(duplicate, tokens), torch.ones(3, 1))
    assert duplicate_token_score(induction, tokens).max() < 0.05  # each detector sees its own kind only
    assert induction_score(duplicate, tokens).max() < 0.05
    assert previous_token_score(induction).max() < 0.2
    assert induction_score(_causal_uniform(3, n), tokens).max() < 0.15


def test_targets_need_a_repeat_and_respect_padding():
    tokens = torch.tensor([[0, 5, 6, 5, 6, 0, 0]])  # the trailing zeros are padding (and equal BOS)
    valid = torch.tensor([[True] * 5 + [False] * 2])
    dup = detector_targets("duplicate_token", tokens, valid=valid)[0]
    ind = detector_targets("induction", tokens, valid=valid)[0]
    assert dup.nonzero().tolist() == [[3, 1], [4, 2]]
    assert ind.nonzero().tolist() == [[3, 2], [4, 3]]  # the token after each earlier occurrence
    assert detector_targets("duplicate_token", tokens)[0, 5:].any()  # unmasked, padding would match BOS
    no_repeat = torch.tensor([[0, 1, 2, 3]])
    score = induction_score(_causal_uniform(1, 4), no_repeat)
    assert torch.isnan(score).all()  # nothing to score: NaN, not 0


def test_repeated_random_tokens_are_seeded_and_leave_global_rng_alone(tiny_tokenizer):
    class M:  # a model-like object: the tokenizer is all it needs
        tokenizer = tiny_tokenizer

    state = torch.get_rng_state()
    a = repeated_random_tokens(M, 4, 10, torch.Generator().manual_seed(3))
    b = repeated_random_tokens(M, 4, 10, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == (4, 21)
    assert torch.equal(a[:, 1:11], a[:, 11:])
    assert (a[:, 0] == tiny_tokenizer.bos_token_id).all()
    assert not torch.isin(a[:, 1:], torch.tensor(tiny_tokenizer.all_special_ids)).any()
    with pytest.raises(TypeError):
        repeated_random_tokens(M, 4, 10, 3)


@pytest.fixture(scope="module")
def attn_only():
    from circuitscope import HookedTransformer

    return HookedTransformer.from_pretrained("circuitscope/attn-only-2l")


def test_attn_only_organism_has_induction_heads_in_layer_1(attn_only):
    scores = detect_heads(attn_only, generator=torch.Generator().manual_seed(0), n_prompts=60, seq_len=20)
    induction, prev = scores["induction"], scores["previous_token"]
    assert induction.values.shape == (2, attn_only.cfg.n_heads)
    assert induction.per_prompt.shape == (60, 2, attn_only.cfg.n_heads)
    assert induction.values[1].max() > 0.7 > induction.values[0].max()
    assert prev.values[0].max() > 0.7  # the previous-token head induction composes with
    low, high = induction.ci
    assert (low <= induction.values).all() and (induction.values <= high).all()


def test_cache_tokens_and_batches_agree(attn_only):
    tokens = repeated_random_tokens(attn_only, 10, 8, torch.Generator().manual_seed(1))
    whole = detect_heads(attn_only, tokens, ci=False)
    batched = detect_heads(attn_only, tokens, ci=False, batch_size=3)
    _, cache = attn_only.run_with_cache(tokens)
    cached = detect_heads(attn_only, cache, tokens=tokens, ci=False)
    for kind in whole:
        torch.testing.assert_close(whole[kind].per_prompt, batched[kind].per_prompt)
        torch.testing.assert_close(whole[kind].per_prompt, cached[kind].per_prompt)
    with pytest.raises(ValueError, match="tokens"):
        detect_heads(attn_only, cache)
