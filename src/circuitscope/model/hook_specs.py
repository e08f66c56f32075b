"""Checking the ``fwd_hooks`` / ``bwd_hooks`` argument before anything is attached.

``run_with_hooks`` and ``model.hooks`` take a *list of pairs* ``[(target, hook_fn), ...]``, where
``target`` is a hook name or a predicate ``name -> bool``. The common slips (passing one pair
without the list, a bare function, a dict, or the pair the wrong way round) would otherwise fail
deep inside with an unpacking error, or not at all; here each gets a message that says what to
write instead.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from circuitscope.hooks import HookFn

HookTarget = Union[str, Callable[[str], bool]]
HookSpec = tuple[HookTarget, HookFn]

__all__ = ["HookSpec", "HookTarget", "check_hook_specs"]


def _fn_name(obj: Any) -> str:
    return getattr(getattr(obj, "func", obj), "__name__", None) or type(obj).__name__


def _is_target(obj: Any) -> bool:
    return isinstance(obj, str) or (callable(obj) and not isinstance(obj, (tuple, list)))


def check_hook_specs(specs: Any, arg: str = "fwd_hooks") -> list[HookSpec]:
    """``specs`` as a list of ``(target, hook_fn)`` pairs, or a TypeError explaining the mistake."""
    if specs is None:
        return []
    example = f"{arg}=[('blocks.0.attn.hook_z', my_hook)]"
    if isinstance(specs, tuple) and len(specs) == 2 and _is_target(specs[0]) and callable(specs[1]):
        raise TypeError(
            f"{arg} got a single (target, hook) pair; it takes a list of pairs: "
            f"{arg}=[({specs[0]!r}, {_fn_name(specs[1])})]"
        )
    if isinstance(specs, dict):
        raise TypeError(
            f"{arg} got a dict; it takes a list of (hook name, hook function) pairs, e.g. "
            f"{arg}=list(my_dict.items())"
        )
    if isinstance(specs, str) or callable(specs):
        raise TypeError(
            f"{arg} got {type(specs).__name__} {specs if isinstance(specs, str) else _fn_name(specs)!r}; "
            f"it takes a list of (hook name or name filter, hook function) pairs, e.g. {example}"
        )
    try:
        entries = list(specs)
    except TypeError:
        raise TypeError(
            f"{arg} must be a list of (hook name, hook function) pairs, got {type(specs).__name__}"
        ) from None
    checked: list[HookSpec] = []
    for i, spec in enumerate(entries):
        if callable(spec) and not isinstance(spec, (tuple, list)):
            raise TypeError(
                f"{arg}[{i}] is the function {_fn_name(spec)!r} on its own; each entry must say "
                f"where it goes: a (hook name or name filter, hook function) pair, e.g. {example}"
            )
        if not isinstance(spec, (tuple, list)) or len(spec) != 2:
            raise TypeError(
                f"{arg}[{i}] must be a (hook name or name filter, hook function) pair, got "
                f"{type(spec).__name__} {spec!r}"
            )
        target, fn = spec
        if isinstance(fn, str) and callable(target):
            raise TypeError(
                f"{arg}[{i}] is the wrong way round: write ({fn!r}, {_fn_name(target)}), the hook "
                "name first and the function second"
            )
        if not _is_target(target):
            raise TypeError(
                f"{arg}[{i}]: the target must be a hook name or a function name -> bool, got "
                f"{type(target).__name__}"
            )
        if not callable(fn):
            raise TypeError(
                f"{arg}[{i}]: the hook for {target if isinstance(target, str) else _fn_name(target)!r} "
                f"must be a function fn(activation, hook), got {type(fn).__name__}"
            )
        checked.append((target, fn))
    return checked
