"""Reading task files: the text encoding, then JSONL or CSV records, every problem with its line.

A task file is read as bytes and decoded here rather than by ``open(..., encoding=...)``, so that
an encoding problem is reported like any other, as ``file:line: what is wrong``:

* **UTF-8 with a byte-order mark** (what Excel writes for "CSV UTF-8") loads: the mark is dropped.
  Without this, the first column would be named ``'\\ufeffprompt'`` and the header check would
  claim the ``prompt`` column is missing.
* **UTF-16** (a byte-order mark ``FF FE`` / ``FE FF``, or NUL bytes) is refused with a message that
  says so and how to re-save the file.
* **latin-1 / Windows-1252** (bytes that are not valid UTF-8) is refused, naming each bad line,
  the byte and its column, instead of guessing: a guessed encoding can turn ``é`` into ``Ã©`` and
  the answers into different tokens.

The readers return ``(line, record)`` pairs and append problems to a list; they never raise for
a problem in the file's content, so that one pass reports everything.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from pathlib import Path

__all__ = ["ACCEPTED_FIELDS", "decode_task_file", "read_jsonl", "read_csv", "unknown_fields"]

REQUIRED_FIELDS = ("prompt", "answer", "wrong_answer")
OPTIONAL_FIELDS = ("corrupted_prompt",)
ACCEPTED_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = {b"\xff\xfe": "UTF-16 little-endian", b"\xfe\xff": "UTF-16 big-endian"}
_RESAVE = "re-save it as UTF-8 (in Excel: 'CSV UTF-8'; in an editor: encoding UTF-8)"


def decode_task_file(path: Path, problems: list[str]) -> str | None:
    """The file's text (UTF-8, a leading BOM removed), or None with the problems appended."""
    raw = path.read_bytes()
    for bom, name in _UTF16_BOMS.items():
        if raw.startswith(bom):
            problems.append(f"{path}:1: the file is {name} encoded (it starts with the byte-order mark {bom.hex(' ').upper()}); {_RESAVE}")
            return None
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if b"\x00" in line:
            problems.append(f"{path}:{lineno}: the line contains NUL bytes, so the file is probably UTF-16 encoded (or not text); {_RESAVE}")
            return None
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            column = len(line[: err.start].decode("utf-8", errors="replace")) + 1
            problems.append(
                f"{path}:{lineno}: byte 0x{line[err.start]:02X} at column {column} is not valid UTF-8; "
                f"the file looks latin-1 / Windows-1252 encoded; {_RESAVE}"
            )
    if problems:
        return None
    return raw.decode("utf-8")


def unknown_fields(names, where: str) -> str | None:
    """A problem line for field names outside ``ACCEPTED_FIELDS`` (with a did-you-mean), or None."""
    unknown = [n for n in names if n not in ACCEPTED_FIELDS]
    if not unknown:
        return None
    hints = []
    for n in unknown:
        close = difflib.get_close_matches(str(n).strip().lower(), ACCEPTED_FIELDS, n=1, cutoff=0.6)
        if close:
            hints.append(f"{n!r} -> {close[0]!r}?")
    hint = f" (did you mean {', '.join(hints)})" if hints else ""
    return f"{where}: unknown field(s) {unknown}{hint}; accepted fields: {', '.join(ACCEPTED_FIELDS)}"


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice")
        seen[key] = value
    return seen


def read_jsonl(path: Path, text: str, problems: list[str]) -> list[tuple[int, dict]]:
    """One JSON object per non-blank line; unknown or repeated keys are problems."""
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as err:
            problems.append(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})")
            continue
        except ValueError as err:
            problems.append(f"{path}:{lineno}: {err}; each field may be given once")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{path}:{lineno}: expected a JSON object {{\"prompt\": ..., ...}}, got {type(obj).__name__}")
            continue
        unknown = unknown_fields(obj, f"{path}:{lineno}")
        if unknown:
            problems.append(unknown)
            continue
        records.append((lineno, obj))
    return records


def read_csv(path: Path, text: str, problems: list[str]) -> list[tuple[int, dict]]:
    """A header row naming the columns, then one prompt per row (quote prompts with commas)."""
    records, before = [], len(problems)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [f for f in REQUIRED_FIELDS if f not in header]
    if missing:
        problems.append(
            f"{path}:1: the header row {header} lacks column(s) {missing}; the first row must "
            f"name the columns {', '.join(ACCEPTED_FIELDS)}"
        )
    unknown = unknown_fields(header, f"{path}:1")
    if unknown:
        problems.append(unknown.replace("field(s)", "column(s)", 1))
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        problems.append(f"{path}:1: the header row names column(s) {repeated} more than once")
    if len(problems) > before:
        return []
    for row in reader:
        extra = row.pop(None, None)
        if extra:
            problems.append(
                f"{path}:{reader.line_num}: {len(extra)} more value(s) than header columns: {extra}; "
                "put a prompt that contains commas in double quotes"
            )
            continue
        records.append((reader.line_num, {k: v for k, v in row.items() if v is not None}))
    return records
