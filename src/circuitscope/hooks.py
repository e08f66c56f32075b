"""Hook points: named places in the forward pass where activations can be read or replaced.

A :class:`HookPoint` is an identity module. With no hooks attached, calling it returns its input
at the cost of one attribute check, so an uninstrumented forward pass is as fast as a plain one.
A forward hook is ``fn(activation, hook=hook_point)``; returning a tensor replaces the activation
(it must keep the activation's shape, dtype and device). A backward hook has the same signature
and receives the gradient of the activation; returning a tensor replaces that gradient.

Lifetimes follow TransformerLens 2.x exactly (``HookedRootModule`` has the user-facing story):

* every hook has ``is_permanent`` and a ``level``. ``remove_hooks(level=None)`` removes every
  non-permanent hook; ``remove_hooks(level=n)`` removes only the non-permanent hooks of level n;
  ``including_permanent=True`` removes everything.
* backward hooks are bound when the activation is computed: the hooks attached at forward time
  fire when ``backward()`` later runs through that activation, even if they were removed in
  between (this is what PyTorch's module backward hooks, and so TransformerLens, do).

Hooks are **not thread-safe**: they are attributes of the shared model, so two threads running
the same model with different hooks see each other's hooks. Use one model copy per thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

HookFn = Callable[..., Any]

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")


@dataclass(eq=False)
class _Hook:
    """One attached hook function and the bookkeeping its lifetime needs."""

    fn: HookFn
    point: "HookPoint"
    is_permanent: bool = False
    level: Optional[int] = None  # TransformerLens context level; None: added outside any context
    scope: Any = None  # the ``model.hooks(...)`` block that added it, if any
    seen: bool = False  # already attached during an earlier model call
    reported: bool = False  # already named in a stale-hook warning

    def describe(self) -> str:
        fn = self.fn
        name = getattr(getattr(fn, "func", fn), "__name__", None) or type(fn).__name__
        return f"{self.point.name}: {name}"


@dataclass(eq=False)
class HookRegistry:
    """The non-permanent hooks attached anywhere in one model, and the ``hooks()`` blocks open.

    It exists for the stale-hook warning: at each top-level model call, :meth:`stale` returns the
    hooks that were already attached during an earlier call and were not added by a block that is
    still open (``with model.hooks(...)``), i.e. hooks left over from ``add_hook``.
    """

    live: dict = field(default_factory=dict)  # id(hook) -> _Hook, in the order they were added
    open_scopes: set = field(default_factory=set)

    def stale(self) -> list[_Hook]:
        """Hooks newly found left over (each is reported once), marking all live hooks as seen."""
        found = []
        for h in self.live.values():
            if h.seen and not h.reported and h.scope not in self.open_scopes:
                h.reported = True
                found.append(h)
            h.seen = True
        return found


class HookPoint(nn.Module):
    """An identity module with a name, carrying forward and backward hooks."""

    def __init__(self, opt_in: bool = False) -> None:
        super().__init__()
        self.name: str | None = None
        self.opt_in = opt_in  # computed only on request (memory-heavy, e.g. per-head results)
        self.fwd_hooks: list[_Hook] = []
        self.bwd_hooks: list[_Hook] = []
        self.ctx: dict = {}  # scratch space a hook may keep state in across calls
        self.registry: HookRegistry | None = None  # set by the root module's setup_hooks

    @property
    def active(self) -> bool:
        """True when something is attached, i.e. the model must compute this activation."""
        return bool(self.fwd_hooks or self.bwd_hooks)

    def add_hook(
        self,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: Optional[int] = None,
        prepend: bool = False,
        scope: Any = None,
    ) -> None:
        """Attach ``hook`` (TransformerLens signature); see the module docstring for lifetimes."""
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"hook direction must be 'fwd' or 'bwd', got {dir!r}")
        if not callable(hook):
            raise TypeError(f"hook for {self.name} must be callable, got {type(hook).__name__}")
        entry = _Hook(hook, self, is_permanent, level, scope)
        hooks = self.fwd_hooks if dir == "fwd" else self.bwd_hooks
        hooks.insert(0, entry) if prepend else hooks.append(entry)
        if self.registry is not None and not is_permanent:
            self.registry.live[id(entry)] = entry

    def add_perma_hook(self, hook: HookFn, dir: str = "fwd") -> None:
        self.add_hook(hook, dir=dir, is_permanent=True)

    def remove_hooks(
        self, dir: str = "fwd", including_permanent: bool = False, level: Optional[int] = None
    ) -> None:
        """Remove hooks as TransformerLens does: every non-permanent one (``level=None``), only
        those of one context level, or everything (``including_permanent``)."""
        if dir not in ("fwd", "bwd", "both"):
            raise ValueError(f"hook direction must be 'fwd', 'bwd' or 'both', got {dir!r}")

        def keep(h: _Hook) -> bool:
            if including_permanent:
                return False
            return h.is_permanent or (level is not None and h.level != level)

        for d in ("fwd", "bwd"):
            if dir not in (d, "both"):
                continue
            kept, dropped = [], []
            for h in getattr(self, f"{d}_hooks"):
                (kept if keep(h) else dropped).append(h)
            setattr(self, f"{d}_hooks", kept)
            if self.registry is not None:
                for h in dropped:
                    self.registry.live.pop(id(h), None)

    def clear_context(self) -> None:
        self.ctx = {}

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
                self._check_replacement(h, out, x)
                x = out
        if self.bwd_hooks and x.requires_grad:
            # A view is a node of its own, so the hook sees the gradient of this activation only
            # (not of other uses of the same tensor); the hooks attached now are bound to it.
            x = x.view_as(x)
            bound = tuple(self.bwd_hooks)
            x.register_hook(lambda grad: self._run_bwd_hooks(grad, bound))
        return x

    def _check_replacement(self, h: _Hook, out: Any, x: torch.Tensor) -> None:
        """A forward hook's return value must be able to stand in for the activation."""
        who = f"the forward hook {h.describe()}"
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"{who} returned {type(out).__name__}; return a tensor to replace the "
                "activation, or None to keep it"
            )
        if out.shape != x.shape:
            raise ValueError(
                f"{who} returned shape {tuple(out.shape)} but the activation has shape "
                f"{tuple(x.shape)}"
            )
        if out.dtype != x.dtype:
            raise TypeError(
                f"{who} returned dtype {out.dtype} but the activation is {x.dtype}; "
                f"return a {x.dtype} tensor (e.g. `return new.to(act.dtype)`)"
            )
        if out.device != x.device:
            raise ValueError(
                f"{who} returned a tensor on {out.device} but the activation is on {x.device}"
            )

    def _run_bwd_hooks(self, grad: torch.Tensor, bound: tuple[_Hook, ...]) -> torch.Tensor:
        for h in bound:
            out = h.fn(grad, hook=self)
            if out is not None:
                if not isinstance(out, torch.Tensor) or out.shape != grad.shape:
                    raise ValueError(
                        f"the backward hook {h.describe()} must return None or a gradient of "
                        f"shape {tuple(grad.shape)}, got {getattr(out, 'shape', type(out).__name__)}"
                    )
                grad = out
        return grad

    def extra_repr(self) -> str:
        return f"name={self.name!r}, fwd={len(self.fwd_hooks)}, bwd={len(self.bwd_hooks)}"
