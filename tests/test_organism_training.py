"""End-to-end test of the organism training script at toy size (a few seconds on 2 cores)."""

from __future__ import annotations

import json

import pytest
import torch

from circuitscope.organisms import ORGANISMS, organism_path
from circuitscope.organisms.batches import make_batch
from circuitscope.organisms.corpus import matches_eval_template
from circuitscope.organisms.recipes import RECIPES
from circuitscope.organisms.train import main, train
from circuitscope.tasks.vocab import DAYS, NAMES, OBJECTS, PLACES


@pytest.fixture(scope="module")
def ioi_run(tmp_path_factory):
    """A 20-step toy ``ioi`` run through the CLI; returns (work dir, exported folder)."""
    work = tmp_path_factory.mktemp("ioi_run")
    export = work / "export"
    main(["--organism", "ioi", "--out", str(work), "--export", str(export), "--tiny", "20",
          "--threads", "2"])
    return work, export


def test_export_loads_with_auto_classes(ioi_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, export = ioi_run
    model = AutoModelForCausalLM.from_pretrained(export)
    tok = AutoTokenizer.from_pretrained(export)
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == 0
    ids = tok("Then, Mary and John went to the store", return_tensors="pt")["input_ids"]
    logits = model(ids).logits  # [1, pos, vocab]
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert (export / "MODEL_CARD.md").read_text().startswith("# circuitscope/ioi")
    assert not list(export.parent.glob(".export.tmp-*"))  # the atomic write cleaned up


def test_vocab_words_are_single_tokens_with_leading_space(ioi_run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ioi_run[1])
    for word in NAMES + DAYS + PLACES + OBJECTS:
        ids = tok(" " + word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, word
        assert tok.convert_ids_to_tokens(ids)[0] == "Ġ" + word  # GPT-2's spelling of " Mary"


def test_training_batches_never_contain_an_eval_frame(ioi_run):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ioi_run[0] / "tokenizer" / "tokenizer.json"))
    for step in range(5):
        batch = make_batch(tok, RECIPES["ioi"].mix, seed=0, step=step, batch_size=16, seq_len=128)
        for row in batch.tolist():
            assert not matches_eval_template(tok.decode(row))


def test_resume_continues_from_the_saved_step(ioi_run, tmp_path):
    work, _ = ioi_run
    saved = json.loads((work / "metrics.json").read_text())
    assert saved["step"] == 20
    info = train("ioi", work, steps=30, resume=True, tiny_steps=20, export=tmp_path / "hf")
    assert info["step"] == 30
    assert [h["step"] for h in info["history"]] == [10, 20, 30]  # steps 1-20 were not redone
    with pytest.raises(FileExistsError):
        train("ioi", work, tiny_steps=20)  # refusing to clobber a run without --resume


def test_attention_only_organism_runs_in_plain_hf(tmp_path):
    from transformers import AutoModelForCausalLM

    from circuitscope import HookedTransformer

    export = tmp_path / "hf"
    train("attn-only-2l", tmp_path / "work", tiny_steps=4, export=export)
    model = AutoModelForCausalLM.from_pretrained(export).eval()
    assert model.config.attn_only and model.config.n_layer == 2
    for block in model.transformer.h:  # the MLPs stayed exactly zero through training
        assert all(torch.all(p == 0) for p in block.mlp.parameters())
    tokens = torch.tensor([[0, 5, 6, 5]])
    ours = HookedTransformer.from_pretrained_no_processing(str(export), device="cpu")
    assert ours.cfg.attn_only and "blocks.0.hook_mlp_out" not in ours.hook_dict
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), model(tokens).logits, atol=1e-4, rtol=0)


def test_organism_path_errors_are_clear():
    with pytest.raises(ValueError, match="known organisms"):
        organism_path("circuitscope/nope")
    for name in ORGANISMS:
        try:
            assert (organism_path(name) / "config.json").is_file()
        except FileNotFoundError as err:  # not trained yet in this checkout
            assert "no trained weights" in str(err)
