"""Task files that used to load wrongly or fail obscurely: unknown keys, encodings, long prompts.

Each test here failed on the code before these checks existed: the typo ``corrupt_prompt`` was
dropped and the pairing rule used instead, a UTF-8 BOM made the ``prompt`` column "missing",
UTF-16 and latin-1 files raised a bare ``UnicodeDecodeError`` without a line, and prompts longer
than the model's context were only noticed (if at all) when the model ran.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from circuitscope.tasks import Task, TaskError

PROMPTS = [
    "When Mary and John went to the store, John gave a bag to",
    "When Mary and John went to the store, Mary gave a bag to",
]
ANSWERS = [(" Mary", " John"), (" John", " Mary")]
CSV_TEXT = "prompt,answer,wrong_answer\n" + "".join(f'"{p}",{a},{w}\n' for p, (a, w) in zip(PROMPTS, ANSWERS))


def rec(i, **kw):
    out = {"prompt": PROMPTS[i], "answer": ANSWERS[i][0], "wrong_answer": ANSWERS[i][1]}
    out.update(kw)
    return out


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


# ------------------------------------------------------------------ unknown keys


def test_typo_in_corrupted_prompt_key_is_an_error_with_line_and_accepted_keys(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [rec(0, corrupt_prompt=PROMPTS[1]), rec(1, corrupt_prompt=PROMPTS[0])])
    with pytest.raises(TaskError) as err:
        Task.from_file(path, tiny_tokenizer)
    msg = str(err.value)
    assert f"{path}:1: unknown field(s) ['corrupt_prompt']" in msg and f"{path}:2:" in msg
    assert "'corrupt_prompt' -> 'corrupted_prompt'?" in msg
    assert "accepted fields: prompt, answer, wrong_answer, corrupted_prompt" in msg


def test_unknown_csv_column_is_an_error(tiny_tokenizer, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("prompt,answer,wrong_answer,corrupt_prompt\n" + "".join(f'"{p}",{a},{w},"{q}"\n' for p, (a, w), q in zip(PROMPTS, ANSWERS, PROMPTS[::-1])))
    with pytest.raises(TaskError, match=rf"{path}:1: unknown column\(s\) \['corrupt_prompt'\].*accepted fields"):
        Task.from_file(path, tiny_tokenizer)


def test_repeated_keys_are_errors(tiny_tokenizer, tmp_path):
    jl = write_jsonl(tmp_path / "d.jsonl", ['{"prompt": "a", "answer": " Mary", "answer": " John", "wrong_answer": " Tom"}'])
    with pytest.raises(TaskError, match=rf"{jl}:1: the key 'answer' appears twice"):
        Task.from_file(jl, tiny_tokenizer)
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("prompt,answer,wrong_answer,answer\n" + f'"{PROMPTS[0]}", Mary, John, Tom\n')
    with pytest.raises(TaskError, match=rf"{csv_path}:1: .*\['answer'\] more than once"):
        Task.from_file(csv_path, tiny_tokenizer)


@pytest.mark.parametrize("value", [True, 1.5, [" Mary"]])
def test_answer_of_the_wrong_json_type_is_refused(tiny_tokenizer, tmp_path, value):
    path = write_jsonl(tmp_path / "t.jsonl", [rec(0, answer=value), rec(1)])
    with pytest.raises(TaskError, match=rf"{path}:1: field\(s\) \['answer'\] must be strings"):
        Task.from_file(path, tiny_tokenizer)


def test_integer_prompt_is_refused(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [rec(0, prompt=17), rec(1)])
    with pytest.raises(TaskError, match=rf"{path}:1: field\(s\) \['prompt'\] must be strings"):
        Task.from_file(path, tiny_tokenizer)


# ------------------------------------------------------------------ encodings


def test_utf8_with_bom_loads_like_plain_utf8(tiny_tokenizer, tmp_path):
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes(CSV_TEXT.encode("utf-8"))
    bom.write_bytes(CSV_TEXT.encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    a, b = Task.from_file(plain, tiny_tokenizer), Task.from_file(bom, tiny_tokenizer)
    assert torch.equal(a.clean_tokens, b.clean_tokens) and b.prompts == PROMPTS
    jl = tmp_path / "bom.jsonl"
    jl.write_bytes("\n".join(json.dumps(rec(i)) for i in range(2)).encode("utf-8-sig"))
    assert Task.from_file(jl, tiny_tokenizer).prompts == PROMPTS


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_file_names_the_encoding(tiny_tokenizer, tmp_path, encoding):
    path = tmp_path / "t.csv"
    path.write_bytes(CSV_TEXT.encode(encoding))
    with pytest.raises(TaskError, match=rf"{path}:1: .*UTF-16.*re-save it as UTF-8"):
        Task.from_file(path, tiny_tokenizer)


def test_latin1_file_names_line_byte_and_encoding(tiny_tokenizer, tmp_path):
    text = CSV_TEXT + '"When Zoë and Mary went to the café, Zoë gave a bag to", Mary, John\n'
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(TaskError) as err:
        Task.from_file(path, tiny_tokenizer)
    assert err.value.problems == [
        f"{path}:4: byte 0xEB at column 9 is not valid UTF-8; the file looks latin-1 / Windows-1252 "
        "encoded; re-save it as UTF-8 (in Excel: 'CSV UTF-8'; in an editor: encoding UTF-8)"
    ]


# ------------------------------------------------------------------ context length


def small_context_model(tok, n_ctx):
    return SimpleNamespace(tokenizer=tok, cfg=SimpleNamespace(n_ctx=n_ctx))


def test_prompt_longer_than_the_context_is_reported_at_load_time(tiny_tokenizer, tmp_path):
    long_prompt = "Then, Tom and Alice went to the park. " * 6 + "Tom gave a ring to"
    path = write_jsonl(tmp_path / "t.jsonl", [rec(0), rec(1), rec(0, prompt=long_prompt, answer=" Alice", wrong_answer=" Tom"), rec(1)])
    n = len(tiny_tokenizer(long_prompt)["input_ids"]) + 1  # with BOS
    model = small_context_model(tiny_tokenizer, 20)
    with pytest.raises(TaskError) as err:
        Task.from_file(path, model)
    assert f"{path}:3: the prompt is {n} tokens but the model's context is 20 tokens" in str(err.value)
    assert Task.from_file(path, model, n_ctx=1000, require_equal_lengths=False)  # an explicit limit wins
    with pytest.raises(TaskError, match="prompt 0: the prompt is"):
        Task.from_prompts(small_context_model(tiny_tokenizer, 5), PROMPTS, ANSWERS)
