"""Small conveniences notebooks import as ``circuitscope.utils`` (TransformerLens names).

``test_prompt`` is a display helper: like TransformerLens it prints its table (``print_details``),
and it also returns the :class:`PromptTest` so code can read the rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from circuitscope.names import get_act_name

__all__ = ["get_act_name", "get_device", "test_prompt", "PromptTest", "to_numpy"]


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad), list or number as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def get_device() -> torch.device:
    """The best device here: CUDA if available, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available() and mps.is_built():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class PromptTest:
    """What the model predicts after a prompt, and where the expected answer ranks.

    ``str()`` is the full table; in a notebook it renders as HTML, unless ``test_prompt`` has
    already printed it (then only ``repr``'s one-line summary shows, not the table twice).
    """

    prompt_tokens: list[str]
    answer_tokens: list[str]
    # One row per answer token: (rank, logit, prob) of the answer, and the top-k (token, logit, prob).
    answer_ranks: list[tuple[int, float, float]]
    top_k: list[list[tuple[str, float, float]]]
    printed: bool = field(default=False, repr=False, compare=False)

    @property
    def rank(self) -> int:
        """Rank (0 = top) of the first answer token."""
        return self.answer_ranks[0][0]

    def __str__(self) -> str:
        lines = [f"Tokenized prompt: {self.prompt_tokens}", f"Tokenized answer: {self.answer_tokens}"]
        for i, (ans, (rank, logit, prob), top) in enumerate(zip(self.answer_tokens, self.answer_ranks, self.top_k)):
            lines.append(f"Performance on answer token {i} {ans!r}: rank {rank}, logit {logit:.2f}, prob {prob:6.2%}")
            for j, (t, lg, pr) in enumerate(top):
                lines.append(f"  top {j:>2}: logit {lg:6.2f}  prob {pr:6.2%}  token |{t}|")
        return "\n".join(lines)

    def __repr__(self) -> str:
        rank, _, prob = self.answer_ranks[0]
        return f"PromptTest(answer {self.answer_tokens[0]!r}: rank {rank}, prob {prob:.2%})"

    def _repr_html_(self) -> Optional[str]:
        import html

        if self.printed:
            return None  # the table is already on screen; show the one-line repr

        rows = []
        for ans, (rank, logit, prob), top in zip(self.answer_tokens, self.answer_ranks, self.top_k):
            rows.append(f"<tr><th colspan=4>answer {html.escape(repr(ans))}: rank {rank}, prob {prob:.2%}</th></tr>")
            for j, (t, lg, pr) in enumerate(top):
                style = " style='font-weight:bold'" if t == ans else ""
                rows.append(f"<tr{style}><td>{j}</td><td>{html.escape(repr(t))}</td><td>{lg:.2f}</td><td>{pr:.2%}</td></tr>")
        return "<table><tr><th>rank</th><th>token</th><th>logit</th><th>prob</th></tr>" + "".join(rows) + "</table>"


@torch.no_grad()
def test_prompt(prompt: str, answer: str, model, prepend_space_to_answer: bool = True,
                print_details: bool = True, prepend_bos: Optional[bool] = None, top_k: int = 10) -> PromptTest:
    """Run ``prompt + answer`` and report, for each answer token, its rank and the top-k predictions.

    Prints the table (TransformerLens' arguments, in its order; ``print_details=False`` keeps
    quiet) and returns it as a :class:`PromptTest`.
    """
    if prepend_space_to_answer and not answer.startswith(" "):
        answer = " " + answer
    prompt_tokens = model.to_tokens(prompt, prepend_bos=prepend_bos)  # [1, prompt_len]
    answer_tokens = model.to_tokens(answer, prepend_bos=False)  # [1, answer_len]
    tokens = torch.cat([prompt_tokens, answer_tokens], dim=1)
    logits = model(tokens)[0]  # [pos, vocab]
    n_prompt = prompt_tokens.shape[1]
    ranks, tops = [], []
    for i in range(answer_tokens.shape[1]):
        row = logits[n_prompt - 1 + i]
        probs = row.float().softmax(-1)
        target = int(answer_tokens[0, i])
        rank = int((row > row[target]).sum())
        ranks.append((rank, float(row[target]), float(probs[target])))
        values, idx = row.topk(top_k)
        tops.append([(model.to_string(int(t)), float(v), float(probs[t])) for v, t in zip(values, idx)])
    result = PromptTest(
        prompt_tokens=model.to_str_tokens(prompt_tokens[0]),
        answer_tokens=model.to_str_tokens(answer_tokens[0]),
        answer_ranks=ranks,
        top_k=tops,
    )
    if print_details:
        print(result)  # a display helper: showing the table is its job
        result.printed = True
    return result


test_prompt.__test__ = False  # not a pytest test despite its name
