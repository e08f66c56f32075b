"""``circuitscope.hook_points``: the module TransformerLens notebooks import hooks from.

``from transformer_lens.hook_points import HookPoint, HookedRootModule`` becomes
``from circuitscope.hook_points import HookPoint, HookedRootModule``. These are the very classes
the model uses (re-exported, not copies), so ``isinstance`` checks and type hints hold.
Lifetimes and the stale-hook warning are described in
:mod:`circuitscope.model.hooked_module`.
"""

from __future__ import annotations

from circuitscope.hooks import HookFn, HookPoint
from circuitscope.model.caching_hooks import NameFilter as NamesFilter
from circuitscope.model.hooked_module import HookedRootModule

HookFunction = HookFn  # the TransformerLens name of the hook-function type

__all__ = ["HookFunction", "HookPoint", "HookedRootModule", "NamesFilter"]
