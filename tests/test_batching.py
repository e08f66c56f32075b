"""Long work in batches: same numbers as one batch, batches bounded by the memory budget, a progress bar.

The demo used to run every prompt through ``run_with_cache`` in one batch (100,000 prompts were
killed by the OS at 23 GB); these tests fail on that code.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf

from circuitscope import HookedTransformer
from circuitscope.cli import main
from circuitscope.tasks import Task, ioi_task
from circuitscope.tasks.batching import iter_batches, prompts_per_batch
from circuitscope.tasks.summary import summarize_task


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("batch_model")
    torch.manual_seed(1)
    cfg = tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(tiny_tokenizer), n_positions=64)
    tf.GPT2LMHeadModel(cfg).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(folder):
    return HookedTransformer.from_pretrained(str(folder))


def test_batches_give_the_same_numbers_as_one_batch(model):
    task = ioi_task(model, N=13, seed=2)
    one = summarize_task(model, task, batch_size=13)
    many = summarize_task(model, task, batch_size=4)
    assert (one.n_batches, many.n_batches) == (1, 4)
    for name in ("clean", "corrupted", "lens", "heads"):
        torch.testing.assert_close(getattr(many, name), getattr(one, name), atol=1e-4, rtol=1e-4)
    assert many.lens_labels == one.lens_labels and many.lens_labels[-1] == "final_post"
    # and the one-batch numbers are the plain, unbatched computation
    logits = model(task.clean_tokens)
    torch.testing.assert_close(one.clean, task.logit_diff(logits, per_prompt=True), atol=1e-4, rtol=1e-4)


def test_run_with_cache_never_sees_more_than_a_batch(folder, monkeypatch, tmp_path):
    seen = []
    original = HookedTransformer.run_with_cache

    def spy(self, tokens, *args, **kwargs):
        seen.append(tokens.shape[0])
        return original(self, tokens, *args, **kwargs)

    monkeypatch.setattr(HookedTransformer, "run_with_cache", spy)
    out = tmp_path / "r.json"
    argv = ["demo", "--model", str(folder), "--prompts", "22", "--batch-size", "5", "--patch-prompts", "0", "--out", str(out)]
    assert main(argv) == 0  # (the patching walk runs its own small task; it is not batched)
    assert seen == [5, 5, 5, 5, 2]
    assert json.loads(out.read_text())["prompts"] == 22


def test_budget_sets_the_batch_size(model):
    task = ioi_task(model, N=40, seed=0)
    small, large = prompts_per_batch(model, task, 0, 0.05), prompts_per_batch(model, task, 0, 50)
    assert 1 <= small < large
    assert prompts_per_batch(model, task, 10_000, 50) < large  # caching more per token -> fewer prompts
    assert prompts_per_batch(model, task, 0, 1e-6) == 1  # never zero
    with pytest.raises(ValueError, match="positive"):
        prompts_per_batch(model, task, 0, 0)
    tight = summarize_task(model, task, max_memory_mb=0.05)
    assert tight.batch_size == small and tight.n_batches == -(-40 // small)


def test_iter_batches_keeps_order_and_cuts_to_the_longest_prompt(tiny_tokenizer):
    prompts = ["When Mary and John went to the store, John gave a bag to", "Then Tom gave a bag to",
               "When Mary and John went to the store, Mary gave a bag to", "Then Alice gave a bag to"]
    task = Task.from_prompts(tiny_tokenizer, prompts, [(" Mary", " John"), (" Tom", " Mary"), (" John", " Mary"), (" Tom", " Alice")],
                             pairing="roll", require_equal_lengths=False)
    subs = list(iter_batches(task, 2))
    assert [s.prompts for s in subs] == [prompts[:2], prompts[2:]]
    for s in subs:
        assert s.clean_tokens.shape[1] == int(torch.maximum(s.answer_pos, s.corrupted_answer_pos).max()) + 1
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(iter_batches(task, 0))


def test_progress_bar_goes_to_stderr(model, capsys):
    task = ioi_task(model, N=6, seed=0)
    assert len(list(iter_batches(task, 2, progress=True, desc="testing"))) == 3
    captured = capsys.readouterr()
    assert "testing" in captured.err and "/6 " in captured.err and captured.out == ""
    list(iter_batches(task, 2))  # the library default draws nothing
    assert capsys.readouterr().err == ""
