"""The shipped organisms, loaded through the real loader, still show the behaviours they were
trained for (held-out IOI templates, day-of-week successor, induction)."""

import pytest
import torch

from circuitscope import HookedTransformer
from circuitscope.tasks import IOIDataset, day_of_week_task, induction_task, vocab


@pytest.fixture(scope="module")
def ioi_model():
    return HookedTransformer.from_pretrained("circuitscope/ioi", device="cpu")


@pytest.fixture(scope="module")
def attn_only():
    return HookedTransformer.from_pretrained("circuitscope/attn-only-2l", device="cpu")


def test_organism_loads_exactly_like_hf(ioi_model):
    from transformers import AutoModelForCausalLM

    from circuitscope.organisms import organism_path

    hf = AutoModelForCausalLM.from_pretrained(organism_path("circuitscope/ioi")).eval()
    raw = HookedTransformer.from_pretrained_no_processing("circuitscope/ioi", device="cpu")
    tokens = ioi_model.to_tokens(["When Mary and John went to the store, John gave a drink to"])
    with torch.no_grad():
        expected = hf(tokens).logits
        torch.testing.assert_close(raw(tokens), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(ioi_model(tokens).log_softmax(-1), expected.log_softmax(-1), atol=1e-4, rtol=0)


def test_every_name_is_a_single_token(ioi_model):
    for name in vocab.NAMES:
        ioi_model.to_single_token(" " + name)


def test_ioi_on_held_out_templates(ioi_model):
    """The eval templates (vocab.IOI_TEMPLATES) never occur in the training corpus."""
    ds = IOIDataset(prompt_type="mixed", N=300, tokenizer=ioi_model.tokenizer, prepend_bos=True, seed=123)
    with torch.no_grad():
        logits = ioi_model(ds.toks)
    end = logits[torch.arange(len(ds.sentences)), ds.word_idx["end"]]  # [batch, vocab]
    diff = end.gather(1, torch.tensor(ds.io_tokenIDs)[:, None]) - end.gather(1, torch.tensor(ds.s_tokenIDs)[:, None])
    assert diff.mean().item() >= 3.0
    assert (diff > 0).float().mean().item() >= 0.95


def test_day_of_week_successor(ioi_model):
    task = day_of_week_task(ioi_model)
    with torch.no_grad():
        logits = ioi_model(task.clean_tokens)
    final = logits[torch.arange(len(task)), task.answer_pos]
    day_ids = torch.tensor([ioi_model.to_single_token(" " + d) for d in vocab.DAYS])
    predicted = day_ids[final[:, day_ids].argmax(-1)]
    assert (predicted == task.answer_tokens[:, 0]).float().mean().item() >= 0.9


def test_attn_only_induction(attn_only):
    task = induction_task(attn_only, seq_len=20, batch=100, seed=7)
    with torch.no_grad():
        nll = attn_only(task.clean_tokens, return_type="loss", loss_per_token=True)  # [batch, pos - 1]
    first = task.positions["first_start"][0].item()
    second = task.positions["repeat_start"][0].item()
    # nll[:, i] is the loss of predicting token i + 1.
    first_repeat = nll[:, first: second - 1].mean().item()
    second_repeat = nll[:, second: nll.shape[1]].mean().item()
    assert first_repeat >= 3.0
    assert second_repeat <= 1.0


def test_attn_only_organism_is_plain_hf_and_matches(attn_only):
    from transformers import AutoModelForCausalLM

    from circuitscope.organisms import organism_path

    hf = AutoModelForCausalLM.from_pretrained(organism_path("circuitscope/attn-only-2l")).eval()
    raw = HookedTransformer.from_pretrained_no_processing("circuitscope/attn-only-2l", device="cpu")
    assert raw.cfg.attn_only
    tokens = torch.randint(1, raw.cfg.d_vocab, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(tokens).logits
        torch.testing.assert_close(raw(tokens), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(attn_only(tokens).log_softmax(-1), expected.log_softmax(-1), atol=1e-4, rtol=0)
