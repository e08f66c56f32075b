"""Task construction from prompts and files (with their errors) and the built-in tasks."""

from __future__ import annotations

import json

import pytest
import torch

from circuitscope.tasks import (
    Task,
    TaskError,
    day_of_week_task,
    default_token_pool,
    induction_task,
    simple_ioi_task,
    speaker_task,
)
from circuitscope.tasks import vocab

PROMPTS = [
    "When Mary and John went to the store, John gave a bag to",
    "When Mary and John went to the store, Mary gave a bag to",
    "Then, Tom and Alice had a lot of fun at the park. Tom gave a ring to",
    "Then, Tom and Alice had a lot of fun at the park. Alice gave a ring to",
]
ANSWERS = [(" Mary", " John"), (" John", " Mary"), (" Alice", " Tom"), (" Tom", " Alice")]


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_from_prompts_swap_adjacent_and_right_padding(tiny_tokenizer):
    task = Task.from_prompts(tiny_tokenizer, PROMPTS, ANSWERS)
    assert len(task) == 4
    assert torch.equal(task.corrupted_tokens[0], task.clean_tokens[1])
    assert torch.equal(task.corrupted_tokens[3], task.clean_tokens[2])
    assert task.corrupted_prompts == [PROMPTS[1], PROMPTS[0], PROMPTS[3], PROMPTS[2]]
    bos = tiny_tokenizer.bos_token_id
    for i, prompt in enumerate(PROMPTS):
        n = len(ids(tiny_tokenizer, prompt)) + 1
        assert task.answer_pos[i] == n - 1
        assert task.clean_tokens[i, 0] == bos
        assert task.clean_tokens[i, n - 1] == ids(tiny_tokenizer, " to")[0]
        assert (task.clean_tokens[i, n:] == tiny_tokenizer.pad_token_id).all()
    assert task.answer_pos[0] < task.answer_pos[2]  # prompts of different lengths
    assert torch.equal(task.positions["end"], task.answer_pos)
    assert task.answer_tokens[0].tolist() == [ids(tiny_tokenizer, " Mary")[0], ids(tiny_tokenizer, " John")[0]]


def test_from_prompts_accepts_a_model(tiny_tokenizer, fake_model):
    a = Task.from_prompts(tiny_tokenizer, PROMPTS, ANSWERS)
    b = Task.from_prompts(fake_model, PROMPTS, ANSWERS)
    assert torch.equal(a.clean_tokens, b.clean_tokens) and torch.equal(a.answer_tokens, b.answer_tokens)


def test_explicit_corrupted_prompts_and_positions(tiny_tokenizer):
    corrupted = [PROMPTS[1], PROMPTS[0], PROMPTS[3], PROMPTS[2]]
    task = Task.from_prompts(
        tiny_tokenizer, PROMPTS, ANSWERS, corrupted_prompts=corrupted, positions={"IO": [2, 4, 4, 6]}
    )
    assert torch.equal(task.corrupted_tokens[2], task.clean_tokens[3])
    assert task.positions["IO"].tolist() == [2, 4, 4, 6]
    assert list(task.positions)[-1] == "end"


def test_prepend_bos_false(tiny_tokenizer):
    task = Task.from_prompts(tiny_tokenizer, PROMPTS, ANSWERS, prepend_bos=False)
    assert task.clean_tokens[0, 0] == ids(tiny_tokenizer, "When")[0]
    assert task.answer_pos[0] == len(ids(tiny_tokenizer, PROMPTS[0])) - 1


def test_odd_number_with_swap_adjacent_raises(tiny_tokenizer):
    with pytest.raises(ValueError, match="even number"):
        Task.from_prompts(tiny_tokenizer, PROMPTS[:3], ANSWERS[:3])
    task = Task.from_prompts(tiny_tokenizer, PROMPTS[:2] * 2, ANSWERS[:2] * 2, pairing="roll")
    assert torch.equal(task.corrupted_tokens[3], task.clean_tokens[0])


def test_multi_token_answer_names_the_prompt(tiny_tokenizer):
    with pytest.raises(TaskError, match=r"prompt 2: answer ' Zyzzyva' is not a single token"):
        Task.from_prompts(tiny_tokenizer, PROMPTS, [ANSWERS[0], ANSWERS[1], (" Zyzzyva", " Tom"), ANSWERS[3]])


def test_same_answer_twice_raises(tiny_tokenizer):
    with pytest.raises(TaskError, match="same token"):
        Task.from_prompts(tiny_tokenizer, PROMPTS, [(" Mary", " Mary")] + ANSWERS[1:])


def test_subset_to_repr_len(tiny_tokenizer):
    task = Task.from_prompts(tiny_tokenizer, PROMPTS, ANSWERS, name="tiny")
    sub = task.subset([2, 3])
    assert len(sub) == 2 and sub.prompts == PROMPTS[2:]
    assert torch.equal(sub.clean_tokens, task.clean_tokens[2:])
    assert torch.equal(sub.positions["end"], task.answer_pos[2:])
    moved = task.to("cpu")
    assert moved.clean_tokens.device.type == "cpu" and moved is not task
    text = repr(task)
    assert "tiny" in text and "4 prompts" in text and "' Mary'" in text


# ------------------------------------------------------------------------- task files


def write_jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def rec(i, **kw):
    out = {"prompt": PROMPTS[i], "answer": ANSWERS[i][0], "wrong_answer": ANSWERS[i][1]}
    out.update(kw)
    return out


def test_jsonl_and_csv_load_the_same_task(tiny_tokenizer, tmp_path):
    jl = write_jsonl(tmp_path / "t.jsonl", [rec(i) for i in range(4)])
    # the csv module keeps the leading space of ' Mary' after the comma, as the answers need
    lines = ["prompt,answer,wrong_answer"] + [f'"{p}",{a},{w}' for p, (a, w) in zip(PROMPTS, ANSWERS)]
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    a = Task.from_file(jl, tiny_tokenizer)
    b = Task.from_file(csv_path, tiny_tokenizer)
    assert a.name == "t"
    assert torch.equal(a.clean_tokens, b.clean_tokens)
    assert torch.equal(a.answer_tokens, b.answer_tokens)
    assert torch.equal(a.corrupted_tokens[0], a.clean_tokens[1])


def test_jsonl_with_corrupted_prompts(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [rec(i, corrupted_prompt=PROMPTS[i ^ 1]) for i in range(3)])
    task = Task.from_file(path, tiny_tokenizer)  # 3 rows: fine, no pairing needed
    assert torch.equal(task.corrupted_tokens[1], task.clean_tokens[0])


def test_missing_field_names_file_and_line(tiny_tokenizer, tmp_path):
    records = [rec(0), rec(1), "", {"prompt": PROMPTS[2], "answer": " Alice"}, rec(3)]
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(TaskError, match=rf"{path}:4: missing field\(s\) wrong_answer"):
        Task.from_file(path, tiny_tokenizer)


def test_multi_token_answer_in_file_names_line(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [rec(0), rec(1, answer=" Zyzzyva"), rec(2), rec(3)])
    with pytest.raises(TaskError, match=rf"{path}:2: answer ' Zyzzyva' is not a single token"):
        Task.from_file(path, tiny_tokenizer)


def test_corrupted_prompt_of_other_length_names_line(tiny_tokenizer, tmp_path):
    longer = PROMPTS[1].replace("a bag", "a very big bag")
    path = write_jsonl(tmp_path / "len.jsonl", [rec(0, corrupted_prompt=PROMPTS[1]), rec(1, corrupted_prompt=longer)])
    with pytest.raises(TaskError, match=rf"{path}:2: the prompt is \d+ tokens but its corrupted prompt is \d+ tokens.*equal lengths"):
        Task.from_file(path, tiny_tokenizer)
    task = Task.from_file(path, tiny_tokenizer, require_equal_lengths=False)
    assert task.corrupted_answer_pos[1] == len(ids(tiny_tokenizer, longer))  # BOS + tokens - 1
    assert task.corrupted_answer_pos[1] > task.answer_pos[1]
    assert not task.equal_lengths


def test_pairing_length_mismatch_names_both_lines(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "pair.jsonl", [rec(0), rec(2), rec(1), rec(3)])
    with pytest.raises(TaskError, match=rf"{path}:1: .*partner \({path}:2"):
        Task.from_file(path, tiny_tokenizer)


def test_all_problems_are_reported_together(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [rec(0), "{not json", rec(2, answer=""), rec(3)])
    with pytest.raises(TaskError) as err:
        Task.from_file(path, tiny_tokenizer)
    assert len(err.value.problems) == 2
    assert f"{path}:2: not valid JSON" in str(err.value)
    assert f"{path}:3: missing field(s) answer" in str(err.value)


def test_corrupted_prompt_on_some_rows_only(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [rec(0, corrupted_prompt=PROMPTS[1]), rec(1)])
    with pytest.raises(TaskError, match=rf"{path}:2: missing corrupted_prompt"):
        Task.from_file(path, tiny_tokenizer)


def test_csv_errors(tiny_tokenizer, tmp_path):
    no_header = tmp_path / "h.csv"
    no_header.write_text("text,answer\nfoo, Mary\n")
    with pytest.raises(TaskError, match=rf"{no_header}:1: the header row .* lacks column\(s\) \['prompt', 'wrong_answer'\]"):
        Task.from_file(no_header, tiny_tokenizer)
    bad = tmp_path / "b.csv"
    bad.write_text(f'prompt,answer,wrong_answer\n"{PROMPTS[0]}", Mary, John\n"{PROMPTS[1]}",, Mary\n')
    with pytest.raises(TaskError, match=rf"{bad}:3: missing field\(s\) answer"):
        Task.from_file(bad, tiny_tokenizer)
    unquoted = tmp_path / "q.csv"
    unquoted.write_text(f"prompt,answer,wrong_answer\n{PROMPTS[0]}, Mary, John\n")
    with pytest.raises(TaskError, match=rf"{unquoted}:2: .*more value.*double quotes"):
        Task.from_file(unquoted, tiny_tokenizer)
    other = tmp_path / "t.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="unknown task file type"):
        Task.from_file(other, tiny_tokenizer)


# ------------------------------------------------------------------------- built-in tasks


def test_simple_ioi_task(tiny_tokenizer):
    task = simple_ioi_task(tiny_tokenizer)
    assert len(task) == 8
    for i in range(8):
        j = i + 1 if i % 2 == 0 else i - 1
        assert torch.equal(task.corrupted_tokens[i], task.clean_tokens[j])
        assert task.answer_tokens[i].tolist() == task.answer_tokens[j].flip(0).tolist()
        io, s = task.answer_tokens[i].tolist()
        row = task.clean_tokens[i]
        assert row[task.positions["IO"][i]] == io
        assert row[task.positions["S1"][i]] == s and row[task.positions["S2"][i]] == s
        assert task.positions["S1"][i] < task.positions["S2"][i]


def test_day_of_week_task(tiny_tokenizer):
    task = day_of_week_task(tiny_tokenizer)
    days = vocab.DAYS
    assert len(task) == len(days) * len(vocab.DAY_TEMPLATES)
    day_id = {d: ids(tiny_tokenizer, " " + d)[0] for d in days}
    for i in range(len(task)):
        k = i % len(days)
        assert task.answer_tokens[i].tolist() == [day_id[days[(k + 1) % 7]], day_id[days[k]]]
        p = int(task.positions["DAY"][i])
        assert task.clean_tokens[i, p] == day_id[days[k]]
        assert task.corrupted_tokens[i, p] == day_id[days[k - 1]]  # "previous": flips the answer
        diff = (task.clean_tokens[i] != task.corrupted_tokens[i]).nonzero().flatten().tolist()
        assert diff == [p]
    rand = day_of_week_task(tiny_tokenizer, corruption="random", seed=3)
    assert (rand.clean_tokens != rand.corrupted_tokens).any(1).all()
    assert torch.equal(rand.corrupted_tokens, day_of_week_task(tiny_tokenizer, corruption="random", seed=3).corrupted_tokens)


@pytest.mark.parametrize("corruption", ["AB", "BA", "BB", "BC"])
def test_induction_task_corruptions(tiny_tokenizer, corruption):
    L = 10
    task = induction_task(tiny_tokenizer, seq_len=L, batch=5, corruption=corruption, seed=1)
    clean, corr = task.clean_tokens, task.corrupted_tokens
    assert clean.shape == corr.shape == (5, 1 + 2 * L)
    assert (clean[:, 0] == tiny_tokenizer.bos_token_id).all()
    halves = {"A": clean[:, 1 : 1 + L]}
    assert torch.equal(clean[:, 1 + L :], halves["A"])
    first, second = corr[:, 1 : 1 + L], corr[:, 1 + L :]
    assert torch.equal(first, halves["A"]) == (corruption[0] == "A")
    assert torch.equal(second, halves["A"]) == (corruption[1] == "A")
    assert torch.equal(first, second) == (corruption[0] == corruption[1])
    assert task.span == (L + 2, 2 * L + 1)
    assert task.positions["repeat_start"][0] == L + 1
    specials = set(tiny_tokenizer.all_special_ids)
    assert not set(clean[:, 1:].flatten().tolist()) & specials


def test_induction_seed_and_pool(tiny_tokenizer):
    a = induction_task(tiny_tokenizer, seed=7)
    assert torch.equal(a.clean_tokens, induction_task(tiny_tokenizer, seed=7).clean_tokens)
    assert not torch.equal(a.clean_tokens, induction_task(tiny_tokenizer, seed=8).clean_tokens)
    pool = [100, 101, 102]
    b = induction_task(tiny_tokenizer, seq_len=6, batch=4, token_pool=pool)
    assert set(b.clean_tokens[:, 1:].flatten().tolist()) <= set(pool)
    assert len(default_token_pool(tiny_tokenizer)) == len(tiny_tokenizer) - 1
    with pytest.raises(ValueError, match="clean sequence"):
        induction_task(tiny_tokenizer, corruption="AA")
    with pytest.raises(ValueError, match="vocabulary"):
        induction_task(tiny_tokenizer, token_pool=[10**7])


def test_speaker_task(tiny_tokenizer, fake_model):
    task = speaker_task(tiny_tokenizer, N=8, seed=0)
    assert len(task) == 8 and task.equal_lengths
    for i in range(8):
        asker = task.clean_tokens[i, task.positions["asker"][i]]
        replier = task.clean_tokens[i, task.positions["replier"][i]]
        assert asker != replier
        assert set(task.answer_tokens[i].tolist()) == {int(asker), int(replier)}
        # the corruption swaps the two speakers everywhere and nothing else
        swapped = task.clean_tokens[i].clone()
        swapped[task.clean_tokens[i] == asker] = replier
        swapped[task.clean_tokens[i] == replier] = asker
        assert torch.equal(task.corrupted_tokens[i], swapped)
    asks = ["asked about" in p for p in task.prompts]
    assert any(asks) and not all(asks)  # both question kinds
    clean, corrupted = task.baselines(fake_model)
    assert clean != corrupted


def test_direct_construction_defaults_and_shape_checks():
    clean = torch.tensor([[0, 5, 6, 7], [0, 8, 9, 0]])
    task = Task(clean, clean.flip(0), torch.tensor([[1, 2], [3, 4]]), torch.tensor([3, 2]))
    assert torch.equal(task.positions["end"], torch.tensor([3, 2]))
    assert torch.equal(task.corrupted_answer_pos, task.answer_pos)
    with pytest.raises(ValueError, match=r"answer_tokens must be \[batch, 2\]"):
        Task(clean, clean, torch.tensor([1, 2]), torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="same shape"):
        Task(clean, clean[:, :3], torch.tensor([[1, 2], [3, 4]]), torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="outside"):
        task.add_positions({"X": [1, 3]})
