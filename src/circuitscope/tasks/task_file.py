"""Turning rows of (prompt, answer, wrong answer, corrupted prompt) into a checked ``Task``.

Rows come from Python lists (``Task.from_prompts``) or from a user file (``Task.from_file``):

* **JSONL**: one JSON object per line, e.g.
  ``{"prompt": "When Mary and John went to the store, John gave a bag to", "answer": " Mary",
  "wrong_answer": " John", "corrupted_prompt": "When Mary and John went to the store, Mary gave
  a bag to"}``. Blank lines are skipped.
* **CSV**: a header row naming the columns ``prompt,answer,wrong_answer[,corrupted_prompt]``.

``corrupted_prompt`` is optional, but then it must be absent on every row and the corrupted run
comes from a pairing rule (``"swap_adjacent"`` by default). Any other field (a typo such as
``corrupt_prompt``) is an error, never silently dropped. Files are UTF-8 (a BOM is fine); see
``file_formats.py`` for what happens with other encodings. Prompts longer than the model's
context are reported here, at load time, not when the model runs. Every problem found is
reported at once, each as ``file:line: what is wrong``, so a file can be fixed in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from circuitscope.tasks.checks import check_flag
from circuitscope.tasks.file_formats import ACCEPTED_FIELDS, OPTIONAL_FIELDS, REQUIRED_FIELDS, decode_task_file, read_csv, read_jsonl
from circuitscope.tasks.task import Pairing, Task, TaskError, as_tokenizer
from circuitscope.tokens import tokenize, to_single_token

__all__ = ["TaskRow", "build_task", "load_task_file", "pair_indices", "REQUIRED_FIELDS", "ACCEPTED_FIELDS"]


@dataclass
class TaskRow:
    """One prompt of a task, with ``where`` naming its origin in messages (``'data.csv:4'``)."""

    prompt: str
    answer: str | int
    wrong_answer: str | int
    corrupted_prompt: str | None
    where: str


def _answer_id(tokenizer, value, field_name: str, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(f"{where}: {field_name} must be a string (one token, e.g. ' Mary') or a token id, got {value!r}")
        return None
    if isinstance(value, int):
        if 0 <= value < len(tokenizer):
            return value
        problems.append(f"{where}: {field_name} id {value} is outside the vocabulary (0..{len(tokenizer) - 1})")
        return None
    try:
        return to_single_token(tokenizer, value)
    except ValueError as err:
        problems.append(f"{where}: {field_name} {err}")
        return None


def _lengths(tokenizer, texts: Sequence[str], prepend_bos: bool) -> list[int]:
    """Token count of each text on its own (including BOS when prepended)."""
    out = []
    for text in texts:
        if not text and not prepend_bos:
            out.append(0)
            continue
        _, mask = tokenize(tokenizer, [text], prepend_bos=prepend_bos)
        out.append(int(mask.sum()))
    return out


def pair_indices(n: int, pairing: Pairing) -> list[int]:
    """For each prompt, the index of the prompt used as its corrupted version.

    ``"swap_adjacent"`` pairs prompts 0<->1, 2<->3, ... (the classic IOI set, where neighbours
    swap the answers); ``"roll"`` uses the next prompt (cyclically); a callable gets ``n`` and
    returns the indices itself.
    """
    if pairing == "swap_adjacent":
        if n % 2:
            raise ValueError(
                f"pairing='swap_adjacent' needs an even number of prompts, got {n}; "
                "add or drop one prompt, or give corrupted prompts explicitly"
            )
        return [i + 1 if i % 2 == 0 else i - 1 for i in range(n)]
    if pairing == "roll":
        if n < 2:
            raise ValueError("pairing='roll' needs at least two prompts")
        return [(i + 1) % n for i in range(n)]
    if callable(pairing):
        idx = [int(i) for i in pairing(n)]
        if len(idx) != n or any(not 0 <= i < n for i in idx):
            raise ValueError(f"the pairing function must return {n} indices in [0, {n}), got {idx}")
        return idx
    raise ValueError(
        f"unknown pairing {pairing!r}; use 'swap_adjacent', 'roll', a function of the number of "
        "prompts, or pass corrupted prompts explicitly"
    )


def build_task(
    tokenizer_or_model,
    rows: Sequence[TaskRow],
    source: str,
    pairing: Pairing = "swap_adjacent",
    prepend_bos: bool = True,
    require_equal_lengths: bool = True,
    positions: Mapping[str, Sequence[int]] | None = None,
    name: str = "task",
    n_ctx: int | None = None,
) -> Task:
    """Check every row and assemble the padded clean/corrupted batches; raise ``TaskError`` listing all problems.

    ``n_ctx`` is the longest prompt allowed in tokens; by default the model's context when
    ``tokenizer_or_model`` is a model (a bare tokenizer sets no limit).
    """
    tokenizer = as_tokenizer(tokenizer_or_model)
    prepend_bos = check_flag(prepend_bos, "prepend_bos")
    require_equal_lengths = check_flag(require_equal_lengths, "require_equal_lengths")
    if n_ctx is None:
        n_ctx = getattr(getattr(tokenizer_or_model, "cfg", None), "n_ctx", None)
    if not rows:
        raise TaskError(source, ["there are no prompts"])
    problems: list[str] = []
    answer_ids = []
    for row in rows:
        for label, text in (("prompt", row.prompt), ("corrupted_prompt", row.corrupted_prompt)):
            if text is not None and not isinstance(text, str):
                problems.append(f"{row.where}: the {label} must be a string, got {text!r} ({type(text).__name__})")
        if row.prompt == "" and not prepend_bos:
            problems.append(f"{row.where}: the prompt is empty (with prepend_bos=False it has no tokens)")
        good = _answer_id(tokenizer, row.answer, "answer", row.where, problems)
        bad = _answer_id(tokenizer, row.wrong_answer, "wrong_answer", row.where, problems)
        if good is not None and good == bad:
            problems.append(
                f"{row.where}: answer and wrong_answer are the same token ({row.answer!r}), so their "
                "logit difference is always 0; give a different wrong answer"
            )
        answer_ids.append((good, bad))

    has_corrupted = [r.corrupted_prompt not in (None, "") for r in rows]
    if any(has_corrupted) and not all(has_corrupted):
        for row, has in zip(rows, has_corrupted):
            if not has:
                problems.append(
                    f"{row.where}: missing corrupted_prompt, which other rows have; give it on every "
                    "row, or on none (then a pairing rule builds the corrupted runs)"
                )
    if problems:
        raise TaskError(source, problems)

    prompts = [r.prompt for r in rows]
    partner: list[int | None] = [None] * len(rows)
    if all(has_corrupted):
        corrupted = [r.corrupted_prompt for r in rows]
    else:
        if pairing is None:
            raise TaskError(source, ["no corrupted prompts were given and pairing=None; give corrupted prompts or a pairing rule"])
        try:
            partner = list(pair_indices(len(rows), pairing))
        except ValueError as err:
            raise TaskError(source, [str(err)]) from None
        corrupted = [prompts[j] for j in partner]

    clean_len = _lengths(tokenizer, prompts, prepend_bos)
    corr_len = _lengths(tokenizer, corrupted, prepend_bos)
    if n_ctx is not None:
        for i, row in enumerate(rows):
            for what, n in (("prompt", clean_len[i]), ("corrupted prompt", corr_len[i])):
                if n > n_ctx:
                    problems.append(
                        f"{row.where}: the {what} is {n} tokens but the model's context is {n_ctx} "
                        "tokens; shorten it"
                    )
        if problems:
            raise TaskError(source, problems)
    if require_equal_lengths:
        for i, row in enumerate(rows):
            if clean_len[i] == corr_len[i]:
                continue
            what = (
                "its corrupted prompt" if partner[i] is None
                else f"its corrupted partner ({rows[partner[i]].where}, by pairing={pairing!r})"
            )
            problems.append(
                f"{row.where}: the prompt is {clean_len[i]} tokens but {what} is {corr_len[i]} "
                "tokens; this task needs equal lengths because patching swaps activations position "
                "by position. Make them the same length in tokens, or pass require_equal_lengths=False"
            )
    if problems:
        raise TaskError(source, problems)

    tokens, _ = tokenize(tokenizer, list(prompts) + list(corrupted), prepend_bos=prepend_bos)
    n = len(rows)
    answer_pos = torch.tensor(clean_len, dtype=torch.long) - 1  # [batch]
    pos_dict = {}
    for label, values in (positions or {}).items():
        values = list(values)
        if any(isinstance(v, bool) or not float(v).is_integer() for v in values):
            raise TaskError(source, [f"positions[{label!r}] must hold whole token indices, got {values[:8]}"])
        values = [int(v) for v in values]
        if len(values) != n:
            raise TaskError(source, [f"positions[{label!r}] has {len(values)} entries for {n} prompts"])
        for i, v in enumerate(values):
            if not 0 <= v <= clean_len[i] - 1:
                problems.append(f"{rows[i].where}: positions[{label!r}] = {v} is outside the prompt's {clean_len[i]} tokens")
        pos_dict[label] = torch.tensor(values, dtype=torch.long)
    if problems:
        raise TaskError(source, problems)
    pos_dict["end"] = answer_pos.clone()

    def _show(value, token_id):
        return value if isinstance(value, str) else tokenizer.decode([token_id])

    return Task(
        clean_tokens=tokens[:n],
        corrupted_tokens=tokens[n:],
        answer_tokens=torch.tensor(answer_ids, dtype=torch.long),  # [batch, 2]
        answer_pos=answer_pos,
        positions=pos_dict,
        prompts=list(prompts),
        corrupted_prompts=list(corrupted),
        name=name,
        answers=[(_show(r.answer, a), _show(r.wrong_answer, w)) for r, (a, w) in zip(rows, answer_ids)],
        corrupted_answer_pos=torch.tensor(corr_len, dtype=torch.long) - 1,
    )


def load_task_file(
    path,
    tokenizer_or_model,
    pairing: Pairing = "swap_adjacent",
    prepend_bos: bool = True,
    require_equal_lengths: bool = True,
    name: str | None = None,
    n_ctx: int | None = None,
) -> Task:
    """Read a ``.jsonl`` or ``.csv`` task file and build a ``Task`` (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"task file {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"task file {path} is a folder; give the .jsonl or .csv file inside it")
    suffix = path.suffix.lower()
    readers = {".jsonl": read_jsonl, ".ndjson": read_jsonl, ".csv": read_csv}
    if suffix not in readers:
        raise ValueError(f"{path}: unknown task file type {suffix!r}; use .jsonl or .csv")
    problems: list[str] = []
    text = decode_task_file(path, problems)
    records = [] if text is None else readers[suffix](path, text, problems)
    rows = []
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        absent = [f for f in REQUIRED_FIELDS if rec.get(f) in (None, "")]
        if absent:
            problems.append(f"{where}: missing field(s) {', '.join(absent)} (found: {sorted(rec)})")
            continue
        bad_type = [f for f in ACCEPTED_FIELDS if f in rec and (isinstance(rec[f], bool) or not isinstance(rec[f], (str, int)))]
        bad_type += [f for f in ("prompt",) + OPTIONAL_FIELDS if f in rec and isinstance(rec[f], int) and f not in bad_type]
        if bad_type:
            problems.append(f"{where}: field(s) {bad_type} must be strings (answers may also be token ids)")
            continue
        rows.append(TaskRow(rec["prompt"], rec["answer"], rec["wrong_answer"], rec.get("corrupted_prompt"), where))
    if problems:
        raise TaskError(str(path), problems)
    if not rows:
        raise TaskError(str(path), [f"{path}: the file has no prompts"])
    return build_task(
        tokenizer_or_model, rows, source=str(path), pairing=pairing, prepend_bos=prepend_bos,
        require_equal_lengths=require_equal_lengths, name=name or path.stem, n_ctx=n_ctx,
    )
