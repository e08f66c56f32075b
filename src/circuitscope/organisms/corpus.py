"""Seeded generator of the synthetic English-like text the model organisms are trained on.

The corpus mixes four kinds of sentence: IOI-style sentences built compositionally from
openers, two-person clauses and transfer actions (never one of the held-out evaluation frames in
``circuitscope.tasks.vocab.IOI_TEMPLATES``), three-name and no-repeat variants whose answer is not
"the non-repeated name", day-of-week sentences that state the successor fact in many frames, and
filler sentences. Repeated random token sequences are added at the token level (see
``circuitscope.organisms.batches``) because they are not text.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from circuitscope.tasks.vocab import DAYS, IOI_TEMPLATES, NAMES, OBJECTS, PLACES

__all__ = [
    "ioi_sentence",
    "day_sentence",
    "filler_sentence",
    "paragraph",
    "matches_eval_template",
    "text_sample",
]

# Clauses that introduce two people {X} and {Y}; some also mention {P} (place) or {O} (object).
_INTROS = [
    "{X} and {Y} went to the {P}", "{X} and {Y} were working at the {P}",
    "{X} and {Y} had a lot of fun at the {P}", "{X} and {Y} were thinking about going to the {P}",
    "{X} and {Y} got a {O} at the {P}", "{X} and {Y} found a {O} at the {P}",
    "{X} and {Y} arrived at the {P}", "{X} and {Y} were commuting to the {P}",
    "{X} and {Y} had a long argument", "{X} and {Y} walked to the {P}",
    "{X} and {Y} met at the {P}",
    "{X} met {Y} at the {P}", "{X} and {Y} were sitting in the {P}",
    "{X} and {Y} spent the day at the {P}", "{X} and {Y} had lunch at the {P}",
    "{X} and {Y} were talking about the {O}", "{X} and {Y} were waiting at the {P}",
    "{X} and {Y} left the {P}", "{X} and {Y} visited the {P}", "{X} went to the {P} with {Y}",
    "{X} and {Y} were going to the {P}", "{X} and {Y} got home from the {P}",
    "{X} and {Y} had a lot of work at the {P}", "{X} and {Y} were thinking about the {O}",
    # Names inside a relative clause after a noun phrase ("The park Mary and John liked ...").
    "The {P} {X} and {Y} liked had a {O}", "The {P} {X} and {Y} visited was quiet",
    "The {O} {X} and {Y} found was old", "The {P} where {X} and {Y} worked had a {O}",
    "The {O} that {X} and {Y} got was new", "The {P} {X} and {Y} walked to was busy",
]
# Sentence openers before a main-clause intro, and subordinators that make it a dependent clause.
_OPENERS = ["", "", "Then, ", "Later, ", "One day, ", "Yesterday, ", "In the morning, ",
            "After the lunch, ", "Afterwards, ", "Last week, ", "Friends ", "Then ", "So "]
_SUBORDINATORS = ["When ", "While ", "After ", "Once ", "Because ", "Before ", "As soon as ",
                  "Just after "]
# Words that may start the second sentence (or follow the comma of a dependent clause).
_LINKS = ["", "", "Then ", "Later ", "Afterwards ", "Then, ", "After that, ", "Soon ",
          "Finally, ", "Later that day, "]
# Actions by the subject {S} that end right before the recipient (the next token to predict).
_ACTIONS = [
    "{S} gave a {O} to", "{S} gave the {O} to", "{S} gave it to", "{S} handed the {O} to",
    "{S} handed a {O} to", "{S} said to", "{S} decided to give a {O} to",
    "{S} decided to give it to",
    "{S} wanted to give a {O} to", "{S} passed the {O} to", "{S} threw the {O} to",
    "{S} sent a letter to", "{S} showed the {O} to", "{S} brought a {O} to", "{S} sold the {O} to",
    "{S} lent the {O} to", "{S} wrote a letter to", "{S} smiled at", "{S} waved to",
    "{S} talked to", "{S} offered a {O} to", "{S} told", "{S} asked", "{S} thanked",
    "{S} decided to give the {O} to", "{S} wanted to give it to", "{S} said goodbye to",
    "{S} gave the {O} back to", "{S} quickly gave a {O} to", "{S} was happy to give a {O} to",
]
# Replies after a completed IOI sentence: the answer is now the *subject*, not the IO.
_REPLIES = ["{IO} thanked {S}.", "{IO} gave it back to {S}.", "{IO} smiled at {S}.",
            "{IO} said thanks to {S}.", "{IO} waved to {S}."]


@lru_cache(maxsize=1)
def _eval_patterns() -> list[re.Pattern]:
    """The evaluation IOI frames as regexes that match any names, places and objects."""
    name = "(?:" + "|".join(NAMES) + ")"
    slots = {"[A]": name, "[B]": name, "[PLACE]": "(?:" + "|".join(PLACES) + ")",
             "[OBJECT]": "(?:" + "|".join(OBJECTS) + ")"}
    patterns = []
    for template in IOI_TEMPLATES:
        frame = template.rsplit(" [A]", 1)[0]  # the prompt part: the IO itself is the answer
        regex = re.escape(frame)
        for slot, alternative in slots.items():
            regex = regex.replace(re.escape(slot), alternative)
        patterns.append(re.compile(regex))
    return patterns


def matches_eval_template(text: str) -> bool:
    """True if ``text`` contains the prompt of any held-out evaluation IOI frame."""
    return any(p.search(text) for p in _eval_patterns())


def _fill(frame: str, rng: random.Random, **names: str) -> str:
    return frame.format(P=rng.choice(PLACES), O=rng.choice(OBJECTS), **names)


def _coda(rng: random.Random) -> str:
    """Words after the recipient; only used where every action reads well with them."""
    return rng.choice(["", "", "", " at the end", " again", " that day"])


def _two_person_frame(rng: random.Random, first: str, second: str, actor: str) -> str:
    """An intro naming ``first`` and ``second`` followed by an action by ``actor`` (no answer)."""
    intro = _fill(rng.choice(_INTROS), rng, X=first, Y=second)
    action = _fill(rng.choice(_ACTIONS), rng, S=actor)
    if rng.random() < 0.35:
        return rng.choice(_SUBORDINATORS) + intro + ", " + rng.choice(_LINKS).lower() + action
    opener = rng.choice(_OPENERS)
    if opener == "Friends " and not intro.startswith(first + " and"):
        opener = ""
    sep = rng.choice([". ", ". ", ", and ", "; "])
    link = rng.choice(_LINKS)
    if sep != ". ":
        link = link.lower()
    return opener + intro + sep + link + action


def ioi_sentence(rng: random.Random) -> str:
    """One IOI-family sentence (ending with its answer and a period)."""
    a, b, c = rng.sample(NAMES, 3)
    kind = rng.random()
    for _ in range(100):  # rejection sampling: never emit a held-out evaluation frame
        if kind < 0.70:  # classic IOI, ABBA or BABA: the answer is the non-repeated name
            first, second = (b, a) if rng.random() < 0.5 else (a, b)
            text = _two_person_frame(rng, first, second, actor=b) + " " + a + _coda(rng) + "."
            if rng.random() < 0.25:
                text += " " + rng.choice(_REPLIES).format(IO=a, S=b)
        elif kind < 0.80:  # three people, two act: the answer is the third
            trio = [a, b, c]
            rng.shuffle(trio)
            intro = _fill(rng.choice(_INTROS), rng, X=f"{trio[0]}, {trio[1]}", Y=trio[2])
            action = _fill(rng.choice(_ACTIONS), rng, S=f"{b} and {c}")
            text = rng.choice(_OPENERS[:8]) + intro + ". " + action + " " + a + "."
        elif kind < 0.88:  # three people, one acts: either of the other two may receive
            trio = [a, b, c]
            rng.shuffle(trio)
            intro = _fill(rng.choice(_INTROS), rng, X=f"{trio[0]}, {trio[1]}", Y=trio[2])
            action = _fill(rng.choice(_ACTIONS), rng, S=b)
            text = intro + ". " + action + " " + rng.choice([a, c]) + "."
        else:  # nobody repeated: a newcomer acts, the recipient is either of the pair
            frame = _two_person_frame(rng, a, b, actor=c)
            text = frame + " " + rng.choice([a, b]) + _coda(rng) + "."
        if not matches_eval_template(text):
            return text
    raise RuntimeError("could not generate a non-evaluation IOI sentence")  # pragma: no cover


_DAY_FRAMES = [
    "Today is {X}, so tomorrow is {Y}.", "Today is {X} so tomorrow is {Y}.",
    "It is {X} today, so tomorrow it is {Y}.", "If today is {X}, then tomorrow it is {Y}.",
    "Yesterday was {X}, so today is {Y}.", "Yesterday was {X} so today it is {Y}.",
    "It was {X} yesterday, and today it is {Y}.", "The day after {X} is {Y}.",
    "{X} comes before {Y}.", "After {X} comes {Y}.", "{X} is followed by {Y}.",
    "The day before {Y} is {X}.", "If it is {X} today, it will be {Y} tomorrow.",
    "Today it is {X}, and tomorrow it will be {Y}.", "We met on {X}, and the next day was {Y}.",
    "Since today is {X}, tomorrow it is {Y}.", "Yesterday it was {X}, and now it is {Y}.",
]


def day_sentence(rng: random.Random) -> str:
    """A sentence stating that one day follows another (or a run of consecutive days)."""
    i = rng.randrange(7)
    if rng.random() < 0.2:  # a run of consecutive days, wrapping around the week
        run = [DAYS[(i + k) % 7] for k in range(rng.randint(3, 7))]
        return rng.choice(["The days go ", "The week goes ", "We count "]) + ", ".join(run) + "."
    return rng.choice(_DAY_FRAMES).format(X=DAYS[i], Y=DAYS[(i + 1) % 7])


_NOUNS = ["dog", "cat", "man", "woman", "child", "teacher", "car", "tree", "city", "friend",
          "doctor", "bird", "door", "window", "road", "house", "table", "game", "song", "story"]
_ADJS = ["big", "small", "old", "new", "quiet", "happy", "long", "red", "warm", "busy", "good"]
_VERBS = ["saw", "liked", "found", "took", "watched", "wanted", "had", "got", "left", "made"]
_FILLER_FRAMES = [
    "The {a} {n} {v} the {n2}.", "A {a} {n} was at the {P}.", "{N} went to the {P} and got a {O}.",
    "The {P} was {a} in the morning.", "{N} had a lot of fun with the {O}.",
    "Friends of {N} were working at the {P}.", "{N} was thinking about going to the {P} on {D}.",
    "After the lunch, {N} found a {O} near the {P}.", "Once it was late, {N} decided to go home.",
    "While commuting, {N} read a {a} story.", "When {N} got home, it was {a}.",
    "{N} said that the {O} was {a}.", "The {O} is {a}.", "{N} had a long argument with the {n}.",
    "Afterwards, {N} arrived at the {P}.", "{N} handed in the {O} and went home.",
    "Then the {n} {v} a {O}.", "It was a {a} day at the {P}.", "{N} wanted to give up.",
    "{N} decided to give the {n} a {O}.", "The {n} had a {O} and a {O2}.",
    "We were working on {D}.", "{N} and the {n} went to the {P} together.",
    "Friends like the {P}.", "{N} found it at the {P}.", "Then it was {D}.",
    "{N} was commuting to the {P} on {D}.", "{N} said it was about the {O}.",
    "The {n} {v} {N} at the {P}.", "Once {N} arrived, the {n} was happy.",
]


def filler_sentence(rng: random.Random) -> str:
    """A simple English-like sentence with at most one name (no IOI structure)."""
    frame = rng.choice(_FILLER_FRAMES)
    o1, o2 = rng.sample(OBJECTS, 2)
    n1, n2 = rng.sample(_NOUNS, 2)
    return frame.format(a=rng.choice(_ADJS), n=n1, n2=n2, v=rng.choice(_VERBS),
                        P=rng.choice(PLACES), O=o1, O2=o2, N=rng.choice(NAMES),
                        D=rng.choice(DAYS))


def paragraph(rng: random.Random, mix: dict[str, float]) -> str:
    """A short document: 1-4 sentences whose kinds are drawn with weights ``mix``."""
    makers = {"ioi": ioi_sentence, "day": day_sentence, "filler": filler_sentence}
    kinds, weights = zip(*mix.items())
    n = rng.randint(1, 4)
    return " ".join(makers[k](rng) for k in rng.choices(kinds, weights=weights, k=n))


def text_sample(n_docs: int, seed: int = 0) -> list[str]:
    """``n_docs`` paragraphs with the default mix: the text the tokenizer is trained on."""
    rng = random.Random(seed)
    mix = {"ioi": 0.4, "day": 0.2, "filler": 0.4}
    return [paragraph(rng, mix) for _ in range(n_docs)]
