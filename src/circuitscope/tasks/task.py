"""The ``Task``: everything a circuit experiment needs about its prompts, in one object.

A task pairs each *clean* prompt (the model does the behaviour) with a *corrupted* prompt (the
behaviour's key information is removed or flipped) and names two answers per prompt: the correct
one and a plausible wrong one. Metrics compare the logits of those two tokens at the prompt's
last real token. Prompts may differ in length: batches are right-padded, and ``answer_pos`` says
where each prompt really ends.

Build one with :meth:`Task.from_prompts`, :meth:`Task.from_file` (see ``task_file.py``), or one of
the generators (``IOIDataset.to_task``, ``day_of_week_task``, ``induction_task``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable, Mapping, Sequence, Union

import torch

from circuitscope.tokens import prepare_tokenizer

__all__ = ["Task", "TaskError", "as_tokenizer", "find_token"]

Pairing = Union[str, Callable[[int], Sequence[int]], None]


class TaskError(ValueError):
    """A task could not be built; ``problems`` lists each one as ``'where: what'``."""

    def __init__(self, source: str, problems: list[str], limit: int = 20):
        self.source = source
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:limit])
        more = f"\n  ... and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        n = len(self.problems)
        super().__init__(f"could not build a task from {source}: {n} problem(s):\n  {shown}{more}")


def as_tokenizer(tokenizer_or_model):
    """Return the tokenizer itself, or ``model.tokenizer`` for a model; padded and ready."""
    obj = tokenizer_or_model
    if obj is None:
        raise ValueError("expected a tokenizer or a model with a .tokenizer attribute, got None")
    if not hasattr(obj, "convert_ids_to_tokens"):
        if not hasattr(obj, "tokenizer"):
            raise TypeError(
                f"expected a Hugging Face tokenizer or a model with a .tokenizer attribute, "
                f"got {type(obj).__name__}"
            )
        obj = obj.tokenizer
        if obj is None:
            raise ValueError("this model has no tokenizer; load it with tokenizer=... first")
    return prepare_tokenizer(obj)


def _as_list(values, name: str) -> list:
    """A list from a sequence argument; a bare string is refused (it would be split into characters)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list, got the single string {values!r}; wrap it: {name}=[...]")
    if isinstance(values, torch.Tensor):
        return values.tolist()
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a list, got {type(values).__name__}") from None


def find_token(row: torch.Tensor, token_id: int, start: int = 0) -> int:
    """Index of the first ``token_id`` in ``row [pos]`` at or after ``start``; ValueError if absent."""
    hits = (row[start:] == int(token_id)).nonzero()
    if len(hits) == 0:
        raise ValueError(f"token id {token_id} does not occur in the prompt after position {start}")
    return start + int(hits[0, 0])


@dataclass
class Task:
    """Clean and corrupted token batches plus the answers and positions metrics need.

    Shapes: ``clean_tokens``/``corrupted_tokens`` ``[batch, pos]`` (right-padded, same width);
    ``answer_tokens`` ``[batch, 2]`` as (correct, incorrect); ``answer_pos`` ``[batch]`` = the last
    real token of each clean prompt, where the answer is read; ``positions`` maps labels such as
    ``"IO"``, ``"S2"``, ``"end"`` to ``[batch]`` indices (``"end"`` is always there).
    ``corrupted_answer_pos`` differs from ``answer_pos`` only for tasks built with
    ``require_equal_lengths=False``. ``span`` is the token range ``[start, end)`` a loss metric
    scores (induction), or None. ``groups`` ``[batch]`` optionally names each prompt's template
    (clean prompt ``i`` and corrupted prompt ``i`` share it), so means can be taken per template,
    as the IOI paper's mean ablation does.
    """

    clean_tokens: torch.Tensor  # [batch, pos]
    corrupted_tokens: torch.Tensor  # [batch, pos]
    answer_tokens: torch.Tensor  # [batch, 2]
    answer_pos: torch.Tensor  # [batch]
    positions: dict[str, torch.Tensor] = field(default_factory=dict)  # label -> [batch]
    prompts: list[str] = field(default_factory=list)
    corrupted_prompts: list[str] = field(default_factory=list)
    name: str = "task"
    answers: list[tuple[str, str]] | None = None
    corrupted_answer_pos: torch.Tensor | None = None  # [batch]
    span: tuple[int, int] | None = None
    groups: torch.Tensor | None = None  # [batch] template id of each prompt pair

    def __post_init__(self):
        b = self.clean_tokens.shape[0]
        if self.clean_tokens.ndim != 2 or self.corrupted_tokens.shape != self.clean_tokens.shape:
            raise ValueError(
                f"clean and corrupted tokens must both be [batch, pos] with the same shape, got "
                f"{tuple(self.clean_tokens.shape)} and {tuple(self.corrupted_tokens.shape)}"
            )
        if tuple(self.answer_tokens.shape) != (b, 2):
            raise ValueError(f"answer_tokens must be [batch, 2] = [{b}, 2], got {tuple(self.answer_tokens.shape)}")
        if tuple(self.answer_pos.shape) != (b,):
            raise ValueError(f"answer_pos must be [batch] = [{b}], got {tuple(self.answer_pos.shape)}")
        for label, t in (("clean_tokens", self.clean_tokens), ("corrupted_tokens", self.corrupted_tokens),
                         ("answer_tokens", self.answer_tokens), ("answer_pos", self.answer_pos)):
            if t.is_floating_point() or t.dtype == torch.bool:
                raise TypeError(f"{label} must hold integers (token ids / positions), got dtype {t.dtype}")
        width = self.clean_tokens.shape[1]
        if b and (int(self.answer_pos.min()) < 0 or int(self.answer_pos.max()) >= width):
            raise ValueError(f"answer_pos must lie in [0, {width}) (the batch's width), got {self.answer_pos.tolist()[:8]}")
        if self.corrupted_answer_pos is None:
            self.corrupted_answer_pos = self.answer_pos.clone()
        if self.groups is not None:
            self.groups = torch.as_tensor(self.groups)
            if tuple(self.groups.shape) != (b,) or self.groups.is_floating_point() or self.groups.dtype == torch.bool:
                raise ValueError(f"groups must be one integer template id per prompt, [{b}], got "
                                 f"{tuple(self.groups.shape)} {self.groups.dtype}")
            if b and int(self.groups.min()) < 0:
                raise ValueError("groups must be non-negative template ids")
        self.positions = dict(self.positions)
        self.positions.setdefault("end", self.answer_pos.clone())
        for label, pos in self.positions.items():
            if tuple(pos.shape) != (b,):
                raise ValueError(f"positions[{label!r}] must be [batch] = [{b}], got {tuple(pos.shape)}")

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_prompts(
        cls,
        tokenizer_or_model,
        prompts: Sequence[str],
        answers: Sequence[tuple[str | int, str | int]],
        corrupted_prompts: Sequence[str] | None = None,
        pairing: Pairing = "swap_adjacent",
        prepend_bos: bool = True,
        require_equal_lengths: bool = True,
        positions: Mapping[str, Sequence[int]] | None = None,
        name: str = "task",
        n_ctx: int | None = None,
    ) -> "Task":
        """Build a task from prompt strings and ``(correct, incorrect)`` answers per prompt.

        Answers are strings that must be single tokens (mind the leading space: ``" Mary"``) or
        token ids. Without ``corrupted_prompts`` the corrupted run of prompt ``i`` is another clean
        prompt chosen by ``pairing``. ``positions`` gives extra labelled token indices per prompt
        (counting the BOS token when ``prepend_bos``). Prompts longer than ``n_ctx`` tokens (by
        default the model's context, when a model is given) are refused here, naming the prompt.
        """
        from circuitscope.tasks.task_file import TaskRow, build_task

        prompts = _as_list(prompts, "prompts")
        answers = _as_list(answers, "answers")
        if corrupted_prompts is not None:
            corrupted_prompts = _as_list(corrupted_prompts, "corrupted_prompts")
        if len(answers) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answer pairs")
        if corrupted_prompts is not None and len(corrupted_prompts) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(corrupted_prompts)} corrupted prompts")
        rows = []
        for i, (prompt, pair) in enumerate(zip(prompts, answers)):
            if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
                raise ValueError(f"prompt {i}: answers must be (correct, incorrect) pairs such as (' Mary', ' John'), got {pair!r}")
            corrupted = None if corrupted_prompts is None else corrupted_prompts[i]
            rows.append(TaskRow(prompt, pair[0], pair[1], corrupted, where=f"prompt {i}"))
        return build_task(
            tokenizer_or_model, rows, source="the given prompts", pairing=pairing,
            prepend_bos=prepend_bos, require_equal_lengths=require_equal_lengths,
            positions=positions, name=name, n_ctx=n_ctx,
        )

    @classmethod
    def from_file(cls, path, tokenizer_or_model, **kwargs) -> "Task":
        """Load a task from a JSONL or CSV file (by suffix); see ``task_file.load_task_file``."""
        from circuitscope.tasks.task_file import load_task_file

        return load_task_file(path, tokenizer_or_model, **kwargs)

    # ----------------------------------------------------------------- utilities

    def __len__(self) -> int:
        return self.clean_tokens.shape[0]

    def add_positions(self, labels: Mapping[str, Sequence[int] | torch.Tensor]) -> "Task":
        """Add labelled ``[batch]`` positions (in place; returns the task). "end" stays last."""
        end = self.positions.pop("end")
        try:
            for label, values in labels.items():
                pos = torch.as_tensor(values, dtype=torch.long).to(self.device)
                if tuple(pos.shape) != (len(self),):
                    raise ValueError(f"positions[{label!r}] must have one entry per prompt ({len(self)}), got shape {tuple(pos.shape)}")
                outside = ((pos < 0) | (pos > self.answer_pos)).nonzero().flatten().tolist()
                if outside:
                    i = outside[0]
                    raise ValueError(
                        f"positions[{label!r}] = {int(pos[i])} for prompt {i} is outside its "
                        f"{int(self.answer_pos[i]) + 1} real tokens"
                    )
                self.positions[label] = pos
        finally:
            self.positions["end"] = end
        return self

    @property
    def device(self) -> torch.device:
        return self.clean_tokens.device

    @property
    def equal_lengths(self) -> bool:
        """True when every corrupted prompt has as many tokens as its clean prompt."""
        return bool(torch.equal(self.answer_pos, self.corrupted_answer_pos))

    def _map_tensors(self, fn) -> "Task":
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = fn(value)
        changes["positions"] = {k: fn(v) for k, v in self.positions.items()}
        return replace(self, **changes)

    def to(self, device) -> "Task":
        """A copy with every tensor on ``device``."""
        return self._map_tensors(lambda t: t.to(device))

    def subset(self, indices) -> "Task":
        """The task restricted to some prompts (a slice, or a list/tensor of indices)."""
        if isinstance(indices, slice):
            indices = list(range(len(self)))[indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        keep = idx.tolist()
        out = self._map_tensors(lambda t: t[idx.to(t.device)])
        out.prompts = [self.prompts[i] for i in keep] if self.prompts else []
        out.corrupted_prompts = [self.corrupted_prompts[i] for i in keep] if self.corrupted_prompts else []
        out.answers = None if self.answers is None else [self.answers[i] for i in keep]
        return out

    def __repr__(self) -> str:
        b, width = self.clean_tokens.shape
        lines = [
            f"Task({self.name!r}: {b} prompts, {width} tokens wide, "
            f"positions {list(self.positions)}, device {self.device})"
        ]
        if self.prompts:
            lines.append(f"  clean[0]:     {self.prompts[0]!r}")
        if self.corrupted_prompts:
            lines.append(f"  corrupted[0]: {self.corrupted_prompts[0]!r}")
        if self.answers:
            lines.append(f"  answers[0]:   {self.answers[0][0]!r} (correct) vs {self.answers[0][1]!r}")
        if self.span is not None:
            lines.append(f"  scored span:  tokens [{self.span[0]}, {self.span[1]})")
        return "\n".join(lines)

    # ----------------------------------------------------------------- metrics

    def logit_diff(self, logits: torch.Tensor, per_prompt: bool = False, corrupted: bool = False):
        """Correct-minus-incorrect logit read at each prompt's answer position."""
        from circuitscope.tasks.metrics import task_logit_diff

        return task_logit_diff(logits, self, per_prompt=per_prompt, corrupted=corrupted)

    def run(self, model, corrupted: bool = False) -> torch.Tensor:
        """``model(tokens)`` on the clean (or corrupted) batch without gradients: ``[batch, pos, vocab]``."""
        tokens = self.corrupted_tokens if corrupted else self.clean_tokens
        with torch.no_grad():
            out = model(tokens)
        return getattr(out, "logits", out)

    def baselines(self, model) -> tuple[float, float]:
        """Mean logit difference on the clean and on the corrupted prompts."""
        clean = self.logit_diff(self.run(model)).item()
        corrupted = self.logit_diff(self.run(model, corrupted=True), corrupted=True).item()
        return clean, corrupted

    def patching_metric(self, model, convention: str = "normalized"):
        """A :class:`NormalizedMetric` calibrated on this task's clean and corrupted runs.

        It normalises the logit difference, or the span log-probability for span tasks
        (induction). Raises ValueError when clean and corrupted runs score the same.
        """
        from circuitscope.tasks.metrics import NormalizedMetric

        return NormalizedMetric.from_task(
            self, self.run(model), self.run(model, corrupted=True), convention=convention
        )
