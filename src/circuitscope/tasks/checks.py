"""Argument checks shared by the task builders, so a bad input fails loudly instead of quietly.

Python accepts a lot that a task builder should not. ``prepend_bos="no"`` is a non-empty string,
hence true, so a BOS token would be prepended; ``names="MaryJohnTom"`` is iterable, so a loop
over it sees the names ``"M"``, ``"a"``, ``"r"``, ...; ``names=[]`` is false, so ``names or NAMES``
swaps in the defaults. Each of these used to give a task that looked fine and measured the wrong
thing. The helpers below turn them into errors that name the argument and say what to pass.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any, Sequence

import numpy as np

from circuitscope.tokens import to_single_token

__all__ = ["check_flag", "check_count", "check_words", "check_text", "filter_names"]

logger = logging.getLogger(__name__)


def check_flag(value: Any, name: str) -> bool:
    """``value`` itself when it is a real bool (numpy bools too); otherwise a TypeError.

    >>> check_flag(True, "prepend_bos")
    True
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(
        f"{name} must be True or False, got {value!r} ({type(value).__name__}); a string such as "
        f"'no' counts as true in Python, so it is refused rather than guessed at"
    )


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools and floats such as ``10.5`` are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_text(value: Any, name: str) -> str:
    """A string (for prompts and templates); anything else is a TypeError naming ``name``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r} ({type(value).__name__})")
    return value


def check_words(
    values: Sequence[str] | None, name: str, default: Sequence[str], minimum: int = 1
) -> list[str]:
    """A list of strings for a word-list argument (``names``, ``places``, ``days``, ...).

    ``None`` means "use ``default``". A bare string is refused (it would be read one character at
    a time), as are an empty or too-short list and non-string entries: an explicit argument is
    never silently replaced by the defaults.
    """
    if values is None:
        return list(default)
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of strings, got the single string {values!r}, which would be "
            f"read one character at a time; write {name}=[{values!r}] or split it yourself"
        )
    try:
        out = list(values)
    except TypeError:
        raise TypeError(f"{name} must be a list of strings, got {type(values).__name__}") from None
    bad = [v for v in out if not isinstance(v, str) or not v.strip()]
    if bad:
        raise TypeError(f"{name} must hold non-empty strings, got {bad[:5]!r}")
    if len(out) < minimum:
        what = "is empty" if not out else f"has {len(out)} entries"
        raise ValueError(
            f"{name} {what} but at least {minimum} are needed; pass {name}=None to use the defaults"
        )
    return out


def filter_names(tokenizer, names: Sequence[str], explicit: bool = False) -> list[str]:
    """The names (deduplicated, in order) that are a single token with a leading space.

    With ``explicit=True`` (the caller chose the names) the dropped ones are logged as a warning,
    since the prompts will not use them; for the default list dropping is expected.
    """
    names = check_words(names, "names", (), minimum=1)
    kept, seen, dropped = [], set(), []
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        try:
            to_single_token(tokenizer, " " + name)
        except ValueError:
            dropped.append(name)
            continue
        kept.append(name)
    if dropped and explicit:
        logger.warning("%d of the given names are not single tokens and are not used: %s", len(dropped), dropped[:10])
    if len(kept) < 3:
        raise ValueError(
            f"only {len(kept)} of {len(seen)} names are single tokens for this tokenizer ({kept}); "
            "IOI needs at least 3. Pass names=[...] that the tokenizer keeps whole"
        )
    if len(kept) < 10:
        logger.warning("only %d names are single tokens for this tokenizer; prompts will repeat names often", len(kept))
    return kept
