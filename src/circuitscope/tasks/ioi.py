"""The indirect-object-identification (IOI) dataset generator.

An IOI prompt names two people, then repeats one of them (the subject, S) doing something for
the other (the indirect object, IO): "Then, John and Mary went to the park. John gave a ring to"
-> " Mary". The prompt has three name *slots*: the first two names and the repeated subject (S2).
In ABBA prompts the IO comes first ("Mary and John ... John"), in BABA prompts the subject does.

``IOIDataset`` fills the held-out templates of ``vocab.IOI_TEMPLATES`` with names, places and
objects from a seeded ``random.Random``, keeps only names that are one token (with their leading
space) for the given tokenizer, and records where each slot lands in the token sequence
(``word_idx``). ``gen_flipped_prompts`` rewrites the slots by a letter spec to make corrupted
datasets with the same sentence structure, and ``to_task`` pairs the two into a ``Task``.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from circuitscope.tokens import tokenize, to_single_token
from circuitscope.tasks import vocab
from circuitscope.tasks.checks import check_count, check_flag, check_text, check_words, filter_names
from circuitscope.tasks.task import Task, as_tokenizer, find_token

__all__ = ["IOIDataset", "IOIPrompt", "NAMES", "filter_names", "ioi_task"]

logger = logging.getLogger(__name__)

NAMES = list(vocab.NAMES)
ORDERS = ("ABBA", "BABA")
WORD_IDX_KEYS = ("IO", "S1", "S1+1", "S2", "end")
_SLOT = re.compile(r"\[(A|B)\]")


@dataclass(frozen=True)
class IOIPrompt:
    """One prompt: its template, order, names and the names actually sitting in its three slots.

    ``io`` and ``s`` are the clean answers; in a flipped dataset they stay those of the clean
    prompt while ``slots`` holds the replacement names.
    """

    template_idx: int
    order: str  # "ABBA" (IO named first) or "BABA" (S named first)
    io: str
    s: str
    slots: tuple[str, str, str]  # first name, second name, repeated subject (S2)
    place: str
    obj: str


def split_template(template: str) -> list[str]:
    """The four literal pieces around a BABA template's three name slots (answer slot removed)."""
    body = template.rstrip()
    if not body.endswith(" [A]"):
        raise ValueError(f"IOI template must end with ' [A]' (the answer), got {template!r}")
    body = body[: -len(" [A]")]
    found = _SLOT.findall(body)
    if found != ["B", "A", "B"]:
        raise ValueError(
            f"IOI template must name [B], [A], [B] in that order before the final [A] (BABA form), "
            f"found {found} in {template!r}"
        )
    pieces = _SLOT.split(body)[0::2]
    if any(not p.endswith(" ") for p in pieces[:3]):
        raise ValueError(f"every name slot must follow a space, so names tokenize as ' Name': {template!r}")
    return pieces


class IOIDataset:
    """``N`` seeded IOI prompts, tokenized and indexed.

    ``prompt_type`` is "ABBA", "BABA" or "mixed" (half each, shuffled). Attributes: ``sentences``
    (prompts ending just before the answer), ``toks [N, pos]`` (right-padded), ``word_idx`` (label
    -> ``[N]`` positions for "IO", "S1" (alias "S"), "S1+1", "S2" and "end", the last real
    token), ``io_tokenIDs``/``s_tokenIDs`` (lists of ints), ``prompts`` (``IOIPrompt`` records).
    """

    def __init__(
        self,
        prompt_type: str = "mixed",
        N: int = 500,
        tokenizer=None,
        prepend_bos: bool = False,
        seed: int = 0,
        names: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        places: Sequence[str] | None = None,
        objects: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        prompts: Sequence[IOIPrompt] | None = None,
    ):
        if tokenizer is None:
            raise ValueError("IOIDataset needs a tokenizer (or a model with one): tokenizer=model.tokenizer")
        self.tokenizer = as_tokenizer(tokenizer)
        if not isinstance(prompt_type, str) or prompt_type.upper() not in ORDERS + ("MIXED",):
            raise ValueError(f"prompt_type must be 'ABBA', 'BABA' or 'mixed', got {prompt_type!r}")
        self.prompt_type = "mixed" if prompt_type.upper() == "MIXED" else prompt_type.upper()
        self.prepend_bos = check_flag(prepend_bos, "prepend_bos")
        self.seed = seed
        self.device = torch.device(device)
        self.templates = check_words(templates, "templates", vocab.IOI_TEMPLATES)
        self._pieces = [split_template(t) for t in self.templates]
        self.names = filter_names(self.tokenizer, check_words(names, "names", NAMES, minimum=3), explicit=names is not None)
        self.places = check_words(places, "places", vocab.PLACES)
        self.objects = check_words(objects, "objects", vocab.OBJECTS)
        self.flip_spec: str | None = None
        if prompts is None:
            prompts = self._generate(check_count(N, "N"), random.Random(seed))
        self.prompts = list(prompts)
        self.N = len(self.prompts)
        self._index()

    def _generate(self, n: int, rng: random.Random) -> list[IOIPrompt]:
        if self.prompt_type == "mixed":
            orders = [ORDERS[i % 2] for i in range(n)]
            rng.shuffle(orders)
        else:
            orders = [self.prompt_type] * n
        out = []
        for order in orders:
            io, s = rng.sample(self.names, 2)
            slots = (io, s, s) if order == "ABBA" else (s, io, s)
            out.append(IOIPrompt(rng.randrange(len(self.templates)), order, io, s, slots,
                                 rng.choice(self.places), rng.choice(self.objects)))
        return out

    def render(self, p: IOIPrompt) -> str:
        """The prompt's text: the template with its slots, place and object filled in."""
        pieces = self._pieces[p.template_idx]
        text = pieces[0] + p.slots[0] + pieces[1] + p.slots[1] + pieces[2] + p.slots[2] + pieces[3]
        return text.replace("[PLACE]", p.place).replace("[OBJECT]", p.obj)

    def _name_id(self, name: str) -> int:
        ids = self.__dict__.setdefault("_name_ids", {})  # one tokenizer call per name, not per prompt
        if name not in ids:
            ids[name] = to_single_token(self.tokenizer, " " + name)
        return ids[name]

    def _index(self) -> None:
        """Tokenize the sentences and locate every labelled word."""
        self.sentences = [self.render(p) for p in self.prompts]
        toks, mask = tokenize(self.tokenizer, self.sentences, prepend_bos=self.prepend_bos)
        lengths = mask.sum(1)
        idx = {k: [] for k in WORD_IDX_KEYS}
        for i, p in enumerate(self.prompts):
            row = toks[i, : int(lengths[i])]
            cur, slot_pos = int(self.prepend_bos), []
            for name in p.slots:
                try:
                    cur = find_token(row, self._name_id(name), cur)
                except ValueError:
                    raise RuntimeError(
                        f"prompt {i} ({self.sentences[i]!r}): ' {name}' is not its own token in "
                        "context; this tokenizer merges it with its neighbours"
                    ) from None
                slot_pos.append(cur)
                cur += 1
            io_slot = 0 if p.order == "ABBA" else 1
            idx["IO"].append(slot_pos[io_slot])
            idx["S1"].append(slot_pos[1 - io_slot])
            idx["S1+1"].append(slot_pos[1 - io_slot] + 1)
            idx["S2"].append(slot_pos[2])
            idx["end"].append(int(lengths[i]) - 1)
        self.lengths = lengths  # [N] real tokens per prompt (cpu)
        self.toks = toks.to(self.device)  # [N, pos]
        self.word_idx = {k: torch.tensor(v, dtype=torch.long, device=self.device) for k, v in idx.items()}
        self.word_idx["S"] = self.word_idx["S1"]
        self.io_tokenIDs = [self._name_id(p.io) for p in self.prompts]
        self.s_tokenIDs = [self._name_id(p.s) for p in self.prompts]

    def __len__(self) -> int:
        return self.N

    def __repr__(self) -> str:
        flip = f", flipped by {self.flip_spec!r}" if self.flip_spec else ""
        return f"IOIDataset({self.prompt_type}, N={self.N}, seed={self.seed}{flip})"

    @property
    def ioi_prompts(self) -> list[dict]:
        """The prompts as dicts (text, IO, S, order, place, object, template index)."""
        keys = ("text", "IO", "S", "order", "PLACE", "OBJECT", "TEMPLATE_IDX")
        return [dict(zip(keys, (t, p.io, p.s, p.order, p.place, p.obj, p.template_idx)))
                for t, p in zip(self.sentences, self.prompts)]

    def gen_flipped_prompts(self, spec: str, seed: int | None = None) -> "IOIDataset":
        """A dataset with the same templates, places and objects but the name slots rewritten.

        ``spec`` is comma-separated rules ``SRC->DST``: ``SRC`` is ``ABB`` (ABBA prompts) or ``BAB``
        (BABA prompts), read as the names in the three slots with A = IO and B = S; ``DST`` says
        what goes in each slot: ``A``/``B`` keep that name, any other letter is a fresh random name
        (distinct from A, B and the other fresh letters). ``"ABB->XYZ, BAB->XYZ"`` erases all name
        information (the ABC dataset); ``"ABB->BAB"`` swaps the first two names of ABBA prompts.
        Prompts no rule matches are kept. The result keeps the clean ``io_tokenIDs``/``s_tokenIDs``
        and has the same ``word_idx`` positions, so it can serve as this dataset's corruption.
        """
        rules = {}
        for part in (x.strip() for x in check_text(spec, "the flip spec").split(",")):
            if not part:
                continue
            if part.count("->") != 1:
                raise ValueError(f"flip rule {part!r} must look like 'ABB->XYZ'")
            src, dst = (x.strip().upper() for x in part.split("->"))
            if src not in ("ABB", "BAB"):
                raise ValueError(f"flip rule {part!r}: the left side must be 'ABB' (ABBA prompts) or 'BAB' (BABA prompts)")
            if len(dst) != 3 or not dst.isalpha():
                raise ValueError(f"flip rule {part!r}: the right side must be three letters, one per name slot")
            if src in rules:
                raise ValueError(f"flip spec {spec!r} has two rules for {src}")
            rules[src] = dst
        if not rules:
            raise ValueError(f"empty flip spec {spec!r}; write e.g. 'ABB->XYZ, BAB->XYZ'")
        rng = random.Random(f"{self.seed}|{spec}|{seed}")
        flipped = []
        for p in self.prompts:
            dst = rules.get("ABB" if p.order == "ABBA" else "BAB")
            if dst is None:
                flipped.append(p)
                continue
            fresh_letters = sorted(set(dst) - {"A", "B"})
            pool = [n for n in self.names if n not in (p.io, p.s)]
            if len(pool) < len(fresh_letters):
                raise ValueError(f"flip {spec!r} needs {len(fresh_letters)} fresh names but only {len(pool)} are available")
            letter_name = dict(zip(fresh_letters, rng.sample(pool, len(fresh_letters))), A=p.io, B=p.s)
            flipped.append(replace(p, slots=tuple(letter_name[c] for c in dst)))
        out = IOIDataset.__new__(IOIDataset)
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("toks", "word_idx")})
        out.prompts = flipped
        out.flip_spec = spec
        out._index()
        return out

    def to_task(self, corrupted: "str | IOIDataset | None" = "ABB->XYZ, BAB->XYZ", name: str = "ioi") -> Task:
        """A ``Task`` with this dataset as clean and ``corrupted`` (a flip spec or a dataset) as corrupted.

        Answers are (IO, S) of the clean prompts; positions are IO, S1, S1+1, S2 and end.
        ``corrupted=None`` reuses the clean prompts (only useful for noising with other ablations).
        """
        if isinstance(corrupted, str):
            other = self.gen_flipped_prompts(corrupted)
        elif corrupted is None:
            other = self
        elif isinstance(corrupted, IOIDataset):
            other = corrupted
        else:
            raise TypeError(f"corrupted must be a flip spec, an IOIDataset or None, got {type(corrupted).__name__}")
        if len(other) != len(self):
            raise ValueError(f"the corrupted dataset has {len(other)} prompts, this one {len(self)}")
        bad = (self.lengths != other.lengths).nonzero().flatten().tolist()
        if bad:
            i = bad[0]
            raise ValueError(
                f"{len(bad)} corrupted prompt(s) differ in token length from their clean prompt, e.g. "
                f"prompt {i}: {self.sentences[i]!r} vs {other.sentences[i]!r}; patching needs equal lengths"
            )
        answers = torch.tensor(list(zip(self.io_tokenIDs, self.s_tokenIDs)), dtype=torch.long, device=self.device)  # [N, 2]
        return Task(
            clean_tokens=self.toks,
            corrupted_tokens=other.toks.to(self.device),
            answer_tokens=answers,
            answer_pos=self.word_idx["end"].clone(),
            positions={k: self.word_idx[k].clone() for k in WORD_IDX_KEYS},
            prompts=list(self.sentences),
            corrupted_prompts=list(other.sentences),
            name=name,
            answers=[(" " + p.io, " " + p.s) for p in self.prompts],
            groups=torch.tensor([p.template_idx for p in self.prompts], dtype=torch.long, device=self.device),
        )


def ioi_task(tokenizer_or_model, N: int = 50, prompt_type: str = "mixed", corruption: str = "ABB->XYZ, BAB->XYZ",
             seed: int = 0, prepend_bos: bool = True, **dataset_kwargs) -> Task:
    """An IOI ``Task`` in one call: a seeded ``IOIDataset`` and its flipped corruption (ABC by default)."""
    ds = IOIDataset(prompt_type, N, tokenizer_or_model, prepend_bos=prepend_bos, seed=seed, **dataset_kwargs)
    return ds.to_task(corruption)
