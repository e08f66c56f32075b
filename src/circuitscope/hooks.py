"""Hook points: named places in the forward pass where activations can be read or replaced.

A :class:`HookPoint` is an identity module. With no hooks attached, calling it returns its input
at the cost of one attribute check, so an uninstrumented forward pass is as fast as a plain one.
A forward hook is ``fn(activation, hook=hook_point)``; returning a tensor replaces the activation.
A backward hook has the same signature and receives the gradient of the activation.

Hook lifetimes (see :class:`circuitscope.model.hooked_module.HookedRootModule`):

* ``"context"`` hooks belong to one ``model.hooks(...)`` / ``run_with_hooks`` call and are removed
  when it ends, even if the forward pass raised.
* ``"loose"`` hooks come from ``model.add_hook(...)`` and live until ``reset_hooks()`` or the end of
  the next ``run_with_hooks`` / ``run_with_cache`` call (TransformerLens notebooks rely on this).
* ``"permanent"`` hooks stay until ``reset_hooks(including_permanent=True)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

HookFn = Callable[..., Any]

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")


@dataclass
class _Hook:
    fn: HookFn
    owner: Any  # "loose", "permanent", or a context token


class HookPoint(nn.Module):
    """An identity module with a name, carrying forward and backward hooks."""

    def __init__(self, opt_in: bool = False) -> None:
        super().__init__()
        self.name: str | None = None
        self.opt_in = opt_in  # computed only on request (memory-heavy, e.g. per-head results)
        self.fwd_hooks: list[_Hook] = []
        self.bwd_hooks: list[_Hook] = []
        self.ctx: dict = {}  # scratch space a hook may keep state in across calls

    @property
    def active(self) -> bool:
        """True when something is attached, i.e. the model must compute this activation."""
        return bool(self.fwd_hooks or self.bwd_hooks)

    def add_hook(
        self,
        fn: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        prepend: bool = False,
        owner: Any = None,
        level: Any = None,  # accepted for TransformerLens compatibility; lifetimes use `owner`
    ) -> None:
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"hook direction must be 'fwd' or 'bwd', got {dir!r}")
        if not callable(fn):
            raise TypeError(f"hook for {self.name} must be callable, got {type(fn).__name__}")
        if owner is None:
            owner = "permanent" if is_permanent else "loose"
        hook = _Hook(fn, owner)
        hooks = self.fwd_hooks if dir == "fwd" else self.bwd_hooks
        hooks.insert(0, hook) if prepend else hooks.append(hook)

    def remove_hooks(self, dir: str = "both", including_permanent: bool = False, owner: Any = None) -> None:
        """Remove hooks; with ``owner`` only that owner's, else every non-permanent one."""

        def keep(h: _Hook) -> bool:
            if owner is not None:
                return h.owner != owner
            return h.owner == "permanent" and not including_permanent

        if dir in ("fwd", "both"):
            self.fwd_hooks = [h for h in self.fwd_hooks if keep(h)]
        if dir in ("bwd", "both"):
            self.bwd_hooks = [h for h in self.bwd_hooks if keep(h)]

    def clear_context(self) -> None:
        self.ctx.clear()

    def layer(self) -> int:
        """The block index this hook point lives in (error for hooks outside blocks)."""
        m = _LAYER_RE.match(self.name or "")
        if m is None:
            raise ValueError(f"hook point {self.name!r} is not inside a transformer block")
        return int(m.group(1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # bypasses nn.Module dispatch: hot path
        if not self.fwd_hooks and not self.bwd_hooks:
            return x
        for h in self.fwd_hooks:
            out = h.fn(x, hook=self)
            if out is not None:
                if not isinstance(out, torch.Tensor):
                    raise TypeError(
                        f"a forward hook on {self.name} returned {type(out).__name__}; "
                        "return a tensor to replace the activation, or None to keep it"
                    )
                if out.shape != x.shape:
                    raise ValueError(
                        f"a forward hook on {self.name} returned shape {tuple(out.shape)} but the "
                        f"activation has shape {tuple(x.shape)}"
                    )
                x = out
        if self.bwd_hooks and x.requires_grad:
            x.register_hook(self._run_bwd_hooks)
        return x

    def _run_bwd_hooks(self, grad: torch.Tensor) -> torch.Tensor:
        for h in self.bwd_hooks:
            out = h.fn(grad, hook=self)
            if out is not None:
                grad = out
        return grad

    def extra_repr(self) -> str:
        return f"name={self.name!r}, fwd={len(self.fwd_hooks)}, bwd={len(self.bwd_hooks)}"
