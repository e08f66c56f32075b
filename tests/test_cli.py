"""The command line on a local HF folder (a random GPT-2 with the tiny test tokenizer)."""

import json

import pytest
import torch
import transformers as tf

from circuitscope.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("cli_model")
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(tiny_tokenizer), n_positions=64)
    tf.GPT2LMHeadModel(cfg).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_demo_reports_and_writes_json(folder, tmp_path, capsys):
    out = tmp_path / "res" / "demo.json"
    assert main(["demo", "--model", str(folder), "--prompts", "12", "--top", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "clean logit diff" in text and "Logit lens" in text and "L" in text
    data = json.loads(out.read_text())
    assert data["prompts"] == 12 and len(data["head_attribution"]) == 2
    assert abs(data["logit_lens"]["final_post"] - data["clean_logit_diff"]) < 1e-3  # no unembed bias here
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_demo_bad_model_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing")]) == 2
    assert "not a local folder" in capsys.readouterr().err


def test_demo_leaves_grad_mode_alone(folder):
    assert torch.is_grad_enabled()
    main(["demo", "--model", str(folder), "--prompts", "4", "--top", "1"])
    assert torch.is_grad_enabled()
