"""Hook management shared by every hooked model: adding, scoping, removing, warning.

Lifetimes are those of TransformerLens 2.x (``transformer_lens/hook_points.py``), so a ported
notebook computes the same thing:

* ``model.add_hook(name, fn)`` and ``model.blocks[L].attn.hook_z.add_hook(fn)`` attach a hook
  that stays for every later call until ``model.reset_hooks()``. ``run_with_hooks`` and
  ``run_with_cache`` do *not* remove it.
* ``run_with_hooks(fwd_hooks=..., bwd_hooks=...)``, ``run_with_cache`` and ``with
  model.hooks(...)`` open a context one level deeper (``model.context_level``); the hooks they
  add carry that level, and with ``reset_hooks_end=True`` (the default) every non-permanent hook
  of that level is removed when the call ends, even if it raised. That includes a hook you added
  yourself with ``add_hook(..., level=1)`` just before a top-level ``run_with_cache`` (the trick
  some TransformerLens notebooks use to make such a hook go with the next run).
* ``reset_hooks()`` removes every non-permanent hook; ``is_permanent=True`` hooks go only with
  ``reset_hooks(including_permanent=True)``.
* Backward hooks are bound when the forward pass computes their activation, so
  ``bwd_hooks`` passed to ``run_with_hooks`` fire when you call ``backward()`` on its output after
  it returned (TransformerLens behaves the same, despite the warning it logs).

Beyond TransformerLens: when a hook left over from an earlier call (``add_hook`` without a reset,
or ``reset_hooks_end=False``) applies to a model call, the ``circuitscope.hooks`` logger warns
once for that call, naming the hooks; each hook is named once. Silence it with
``model.warn_stale_hooks = False``, with ``is_permanent=True`` for hooks meant to stay, or with
``logging.getLogger("circuitscope.hooks").setLevel(logging.ERROR)``.

Hooks are model state and **not thread-safe**: threads sharing a model share its hooks.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

from torch import nn

from circuitscope.hooks import HookFn, HookPoint, HookRegistry
from circuitscope.model.caching_hooks import CachingHooks
from circuitscope.model.hook_specs import HookSpec, check_hook_specs

hooks_logger = logging.getLogger("circuitscope.hooks")

NameFilter = Union[None, str, Sequence[str], Callable[[str], bool]]

_SHOWN_STALE = 6


class HookedRootModule(CachingHooks, nn.Module):
    """Base class: call :meth:`setup_hooks` at the end of ``__init__``."""

    hook_dict: dict[str, HookPoint]
    mod_dict: dict[str, nn.Module]
    warn_stale_hooks: bool = True  # set False to silence the left-over-hook warning
    context_level: int = 0  # how many ``hooks()`` contexts are open (TransformerLens name)
    is_caching: bool = False
    _hook_registry: Optional[HookRegistry] = None

    def setup_hooks(self) -> None:
        """Name every HookPoint after its module path and index them in ``hook_dict``."""
        self._hook_registry = HookRegistry()
        self.hook_dict, self.mod_dict = {}, {}
        for name, module in self.named_modules():
            if not name:
                continue
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                module.name = name
                module.registry = self._hook_registry
                self.hook_dict[name] = module

    setup = setup_hooks  # the TransformerLens name

    def __call__(self, *args, **kwargs):
        registry = self._hook_registry
        if registry is not None and registry.live and self.warn_stale_hooks:
            self._warn_stale_hooks(registry)
        return super().__call__(*args, **kwargs)

    def _warn_stale_hooks(self, registry: HookRegistry) -> None:
        stale = [h.describe() for h in registry.stale()]
        if not stale:
            return
        shown = ", ".join(stale[:_SHOWN_STALE])
        if len(stale) > _SHOWN_STALE:
            shown += f" and {len(stale) - _SHOWN_STALE} more"
        hooks_logger.warning(
            "%d hook(s) attached before an earlier model call still apply to this one: %s. Hooks "
            "added with add_hook() stay until model.reset_hooks() (as in TransformerLens 2.x); "
            "reset between runs, add with is_permanent=True if they are meant to stay, or set "
            "model.warn_stale_hooks = False to silence this warning.",
            len(stale),
            shown,
        )

    # ----------------------------------------------------------------- resolving names
    def _unknown_hook(self, name: str) -> KeyError:
        from circuitscope.names import unknown_name_message

        n_layers = getattr(getattr(self, "cfg", None), "n_layers", None)
        return KeyError(unknown_name_message(name, list(self.hook_dict), n_layers))

    def hook_points(self, name_or_filter: Union[str, Callable[[str], bool], None] = None) -> list[HookPoint]:
        """The hook points a name or a ``name -> bool`` predicate selects (all for None)."""
        if name_or_filter is None:
            return list(self.hook_dict.values())
        if isinstance(name_or_filter, str):
            if name_or_filter not in self.hook_dict:
                raise self._unknown_hook(name_or_filter)
            return [self.hook_dict[name_or_filter]]
        if callable(name_or_filter):
            return [hp for name, hp in self.hook_dict.items() if self._selectable(name) and name_or_filter(name)]
        raise TypeError(
            f"a hook target must be a hook name or a function name -> bool, got {type(name_or_filter).__name__}"
        )

    def _selectable(self, name: str) -> bool:
        """Predicates and catch-all filters reach opt-in hook points only when the config enables
        them; naming an opt-in hook explicitly always works (and makes the model compute it)."""
        return not self.hook_dict[name].opt_in or self._opt_in_enabled(name)

    def _names_filter_fn(self, names_filter: NameFilter) -> Callable[[str], bool]:
        if names_filter is None:
            return self._selectable
        if isinstance(names_filter, str):
            names_filter = [names_filter]
        if isinstance(names_filter, (list, tuple, set)):
            wanted = set(names_filter)
            for name in wanted:
                if name not in self.hook_dict:
                    raise self._unknown_hook(name)
            return wanted.__contains__
        if callable(names_filter):
            return lambda name: self._selectable(name) and names_filter(name)
        raise TypeError("names_filter must be None, a name, a list of names or a function name -> bool")

    def _opt_in_enabled(self, name: str) -> bool:
        """Whether a config flag turns an opt-in hook point on (overridden by the model)."""
        return False

    # ----------------------------------------------------------------- adding / removing
    def add_hook(
        self,
        name: Union[str, Callable[[str], bool]],
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: Optional[int] = None,
        prepend: bool = False,
    ) -> None:
        """Attach ``hook`` to every hook point ``name`` selects, until ``reset_hooks()``
        (``is_permanent``: until ``reset_hooks(including_permanent=True)``)."""
        if not callable(hook):
            raise TypeError(f"add_hook({name!r}, ...): the hook must be a function fn(activation, hook)")
        for hp in self.hook_points(name):
            hp.add_hook(hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def add_perma_hook(self, name: Union[str, Callable[[str], bool]], hook: HookFn, dir: str = "fwd") -> None:
        self.add_hook(name, hook, dir=dir, is_permanent=True)

    def remove_all_hook_fns(
        self, direction: str = "both", including_permanent: bool = False, level: Optional[int] = None
    ) -> None:
        for hp in self.hook_dict.values():
            hp.remove_hooks(direction, including_permanent=including_permanent, level=level)

    def clear_contexts(self) -> None:
        for hp in self.hook_dict.values():
            hp.clear_context()

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: str = "both",
        including_permanent: bool = False,
        level: Optional[int] = None,
    ) -> None:
        """Remove non-permanent hooks (of one context ``level`` only, if given)."""
        if clear_contexts:
            self.clear_contexts()
        self.remove_all_hook_fns(direction, including_permanent, level=level)
        self.is_caching = False

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Iterable[HookSpec] = (),
        bwd_hooks: Iterable[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator["HookedRootModule"]:
        """Context manager: the given hooks apply inside the block. With ``reset_hooks_end`` every
        non-permanent hook of this context's level is removed when the block ends."""
        fwd, bwd = check_hook_specs(fwd_hooks, "fwd_hooks"), check_hook_specs(bwd_hooks, "bwd_hooks")
        plan = [(hp, fn, d) for d, specs in (("fwd", fwd), ("bwd", bwd)) for target, fn in specs
                for hp in self.hook_points(target)]  # resolve every name before attaching any
        self.context_level += 1
        level, scope = self.context_level, object()
        registry = self._hook_registry
        if registry is not None:
            registry.open_scopes.add(scope)
        try:
            for hp, fn, d in plan:
                hp.add_hook(fn, dir=d, level=level, scope=scope)
            yield self
        finally:
            if registry is not None:
                registry.open_scopes.discard(scope)
            if reset_hooks_end:
                self.reset_hooks(clear_contexts, including_permanent=False, level=level)
            self.context_level -= 1

    def run_with_hooks(
        self,
        *model_args,
        fwd_hooks: Iterable[HookSpec] = (),
        bwd_hooks: Iterable[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs,
    ):
        """One forward pass with temporary hooks: ``fwd_hooks=[(name_or_filter, fn), ...]``.

        ``bwd_hooks`` fire when you call ``backward()`` on (something computed from) the output.
        """
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self(*model_args, **model_kwargs)
