"""IOIDataset: seeded generation, word_idx, name filtering, flipped datasets, conversion to a Task."""

from __future__ import annotations

import logging

import pytest
import torch

from circuitscope.tasks import NAMES, IOIDataset, Task, ioi_task
from circuitscope.tasks import vocab

NAME_KEYS = ("IO", "S1", "S2")


def make(tok, **kw):
    args = dict(prompt_type="mixed", N=24, tokenizer=tok, prepend_bos=False, seed=1)
    args.update(kw)
    return IOIDataset(**args)


def test_seed_call_signature_with_a_model(fake_model):
    ds = IOIDataset(prompt_type="mixed", N=25, tokenizer=fake_model.tokenizer, prepend_bos=False, seed=1)
    assert len(ds) == 25 and len(ds.sentences) == 25
    assert ds.toks.shape[0] == 25
    assert len(ds.io_tokenIDs) == len(ds.s_tokenIDs) == 25
    assert set(ds.word_idx) >= {"IO", "S1", "S1+1", "S2", "end"}
    # a model object works wherever a tokenizer does
    assert IOIDataset("mixed", 25, fake_model, seed=1).sentences == ds.sentences


def test_same_seed_same_dataset_other_seed_differs(tiny_tokenizer):
    a, b, c = make(tiny_tokenizer, seed=3), make(tiny_tokenizer, seed=3), make(tiny_tokenizer, seed=4)
    assert a.sentences == b.sentences
    assert torch.equal(a.toks, b.toks)
    assert a.sentences != c.sentences


def test_uses_many_templates_places_and_objects(tiny_tokenizer):
    assert len(vocab.IOI_TEMPLATES) >= 15
    ds = make(tiny_tokenizer, N=200)
    assert len({p.template_idx for p in ds.prompts}) >= 15
    assert len({p.place for p in ds.prompts}) > 5 and len({p.obj for p in ds.prompts}) > 5


@pytest.mark.parametrize("prepend_bos", [False, True])
def test_word_idx_points_at_the_right_tokens(tiny_tokenizer, prepend_bos):
    ds = make(tiny_tokenizer, N=40, prepend_bos=prepend_bos)
    pad = tiny_tokenizer.pad_token_id
    for i in range(len(ds)):
        io, s = ds.io_tokenIDs[i], ds.s_tokenIDs[i]
        assert io != s
        assert ds.toks[i, ds.word_idx["IO"][i]] == io
        assert ds.toks[i, ds.word_idx["S1"][i]] == s
        assert ds.toks[i, ds.word_idx["S2"][i]] == s
        assert ds.word_idx["S1+1"][i] == ds.word_idx["S1"][i] + 1
        assert ds.word_idx["S2"][i] > max(ds.word_idx["IO"][i], ds.word_idx["S1"][i])
        end = int(ds.word_idx["end"][i])
        text = tiny_tokenizer.decode(ds.toks[i, int(prepend_bos) : end + 1].tolist())
        assert text == ds.sentences[i]
        assert (ds.toks[i, end + 1 :] == pad).all()
    assert not ds.sentences[0].endswith(" " + tiny_tokenizer.decode([ds.io_tokenIDs[0]]).strip())


@pytest.mark.parametrize("prompt_type", ["ABBA", "BABA"])
def test_prompt_type_sets_name_order(tiny_tokenizer, prompt_type):
    ds = make(tiny_tokenizer, prompt_type=prompt_type)
    io_first = ds.word_idx["IO"] < ds.word_idx["S1"]
    assert io_first.all() if prompt_type == "ABBA" else (~io_first).all()


def test_mixed_is_balanced(tiny_tokenizer):
    ds = make(tiny_tokenizer, N=30)
    orders = [p.order for p in ds.prompts]
    assert orders.count("ABBA") == orders.count("BABA") == 15
    assert orders != sorted(orders)  # shuffled: neither all ABBA then all BABA ...
    assert orders != [("ABBA", "BABA")[i % 2] for i in range(30)]  # ... nor strictly alternating


def test_bad_prompt_type_raises(tiny_tokenizer):
    with pytest.raises(ValueError, match="prompt_type"):
        make(tiny_tokenizer, prompt_type="ABAB")


def test_names_are_filtered_to_single_tokens(tiny_tokenizer):
    names = NAMES[:12] + ["Zyzzyva", "Qwxplor"]
    ds = make(tiny_tokenizer, names=names, N=60)
    assert "Zyzzyva" not in ds.names and "Qwxplor" not in ds.names
    assert set(ds.names) == set(NAMES[:12])
    used = {p.io for p in ds.prompts} | {p.s for p in ds.prompts}
    assert used <= set(NAMES[:12])


def test_few_names_warn_and_too_few_raise(tiny_tokenizer, caplog):
    with caplog.at_level(logging.WARNING):
        make(tiny_tokenizer, names=["Mary", "John", "Tom", "Zyzzyva"])
    assert "single tokens" in caplog.text
    with pytest.raises(ValueError, match="at least 3"):
        make(tiny_tokenizer, names=["Mary", "John", "Zyzzyva"])


def test_bad_template_is_rejected(tiny_tokenizer):
    with pytest.raises(ValueError, match="BABA"):
        make(tiny_tokenizer, templates=["Then, [A] and [B] went home. [B] gave it to [A]"])
    with pytest.raises(ValueError, match="end with"):
        make(tiny_tokenizer, templates=["Then, [B] and [A] went home. [B] gave it to"])


def _name_positions(ds, i):
    return {int(ds.word_idx[k][i]) for k in NAME_KEYS}


def test_abc_flip_changes_exactly_the_name_slots(tiny_tokenizer):
    ds = make(tiny_tokenizer, N=30)
    abc = ds.gen_flipped_prompts("ABB->XYZ, BAB->XYZ")
    assert abc.toks.shape == ds.toks.shape
    for k in ("IO", "S1", "S1+1", "S2", "end"):
        assert torch.equal(abc.word_idx[k], ds.word_idx[k])
    assert abc.io_tokenIDs == ds.io_tokenIDs and abc.s_tokenIDs == ds.s_tokenIDs
    for i in range(len(ds)):
        slots = _name_positions(ds, i)
        changed = set((abc.toks[i] != ds.toks[i]).nonzero().flatten().tolist())
        assert changed == slots
        new_names = [int(abc.toks[i, p]) for p in sorted(slots)]
        assert len(set(new_names)) == 3  # X, Y, Z are distinct
        assert not set(new_names) & {ds.io_tokenIDs[i], ds.s_tokenIDs[i]}
        assert abc.prompts[i].template_idx == ds.prompts[i].template_idx


def test_abb_to_bab_swaps_first_two_names_of_abba_prompts_only(tiny_tokenizer):
    ds = make(tiny_tokenizer, N=30)
    flipped = ds.gen_flipped_prompts("ABB->BAB")
    for i, p in enumerate(ds.prompts):
        io_pos, s1_pos, s2_pos = (int(ds.word_idx[k][i]) for k in NAME_KEYS)
        if p.order == "BABA":
            assert torch.equal(flipped.toks[i], ds.toks[i])
            continue
        assert flipped.toks[i, io_pos] == ds.s_tokenIDs[i]
        assert flipped.toks[i, s1_pos] == ds.io_tokenIDs[i]
        assert flipped.toks[i, s2_pos] == ds.toks[i, s2_pos]
        changed = set((flipped.toks[i] != ds.toks[i]).nonzero().flatten().tolist())
        assert changed == {io_pos, s1_pos}


def test_flips_are_deterministic(tiny_tokenizer):
    ds = make(tiny_tokenizer)
    spec = "ABB->XYZ, BAB->XYZ"
    assert ds.gen_flipped_prompts(spec).sentences == ds.gen_flipped_prompts(spec).sentences
    assert make(tiny_tokenizer).gen_flipped_prompts(spec).sentences == ds.gen_flipped_prompts(spec).sentences
    assert ds.gen_flipped_prompts(spec, seed=5).sentences != ds.gen_flipped_prompts(spec, seed=6).sentences


@pytest.mark.parametrize("spec", ["AAB->XYZ", "ABB->XY", "ABB", "ABB->XYZ, ABB->BAB", ""])
def test_bad_flip_specs_raise(tiny_tokenizer, spec):
    with pytest.raises(ValueError):
        make(tiny_tokenizer, N=4).gen_flipped_prompts(spec)


def test_to_task_pairs_clean_with_flipped(tiny_tokenizer, fake_model):
    ds = make(tiny_tokenizer, N=12)
    task = ds.to_task("ABB->XYZ, BAB->XYZ")
    assert isinstance(task, Task) and len(task) == 12
    assert torch.equal(task.clean_tokens, ds.toks)
    assert torch.equal(task.corrupted_tokens, ds.gen_flipped_prompts("ABB->XYZ, BAB->XYZ").toks)
    assert task.answer_tokens[:, 0].tolist() == ds.io_tokenIDs
    assert task.answer_tokens[:, 1].tolist() == ds.s_tokenIDs
    assert torch.equal(task.answer_pos, ds.word_idx["end"])
    assert torch.equal(task.positions["S2"], ds.word_idx["S2"])
    assert task.equal_lengths
    clean, corrupted = task.baselines(fake_model)
    assert clean != corrupted


def test_to_task_with_a_dataset_of_other_lengths_raises(tiny_tokenizer):
    ds = make(tiny_tokenizer, N=6, seed=1)
    other = make(tiny_tokenizer, N=6, seed=2)
    with pytest.raises(ValueError, match="token length"):
        ds.to_task(other)


def test_ioi_task_shortcut(fake_model):
    task = ioi_task(fake_model, N=10, seed=2)
    assert len(task) == 10 and task.name == "ioi"
    assert (task.clean_tokens[:, 0] == fake_model.tokenizer.bos_token_id).all()
