"""Hook management shared by every hooked model: adding, scoping, removing and caching.

``run_with_hooks`` runs one forward pass with temporary hooks; ``run_with_cache`` is the same with
caching hooks that store each activation in an :class:`~circuitscope.cache.ActivationCache`.
All temporary hooks are removed in a ``finally`` block, so a hook that raises never leaks.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence, Union

import torch
from torch import nn

from circuitscope.hooks import HookFn, HookPoint

logger = logging.getLogger(__name__)

NameFilter = Union[None, str, Sequence[str], Callable[[str], bool]]
HookSpec = tuple[Union[str, Callable[[str], bool]], HookFn]

_context_ids = itertools.count()


class HookedRootModule(nn.Module):
    """Base class: call :meth:`setup_hooks` at the end of ``__init__``."""

    hook_dict: dict[str, HookPoint]

    def setup_hooks(self) -> None:
        self.hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    # ----------------------------------------------------------------- resolving names
    def _unknown_hook(self, name: str) -> KeyError:
        from circuitscope.names import unknown_name_message

        n_layers = getattr(getattr(self, "cfg", None), "n_layers", None)
        return KeyError(unknown_name_message(name, list(self.hook_dict), n_layers))

    def hook_points(self, name_or_filter: Union[str, Callable[[str], bool]]) -> list[HookPoint]:
        """The hook points a name or a ``name -> bool`` predicate selects (error if a name is unknown)."""
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
        level: object = None,
        prepend: bool = False,
    ) -> None:
        """Attach ``hook`` to every hook point ``name`` selects.

        Without ``is_permanent`` the hook is removed by ``reset_hooks()`` or at the end of the next
        ``run_with_hooks`` / ``run_with_cache`` call.
        """
        for hp in self.hook_points(name):
            hp.add_hook(hook, dir=dir, is_permanent=is_permanent, prepend=prepend)

    def reset_hooks(self, clear_contexts: bool = True, including_permanent: bool = False, level: object = None) -> None:
        for hp in self.hook_dict.values():
            hp.remove_hooks("both", including_permanent=including_permanent)
            if clear_contexts:
                hp.clear_context()

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Iterable[HookSpec] = (),
        bwd_hooks: Iterable[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator["HookedRootModule"]:
        """Context manager: the given hooks are attached inside the block and removed after it.

        With ``reset_hooks_end`` the loose hooks added by ``add_hook`` are removed at the end too.
        """
        owner = ("context", next(_context_ids))
        touched: list[HookPoint] = []
        try:
            for direction, specs in (("fwd", fwd_hooks), ("bwd", bwd_hooks)):
                for target, fn in specs:
                    for hp in self.hook_points(target):
                        hp.add_hook(fn, dir=direction, owner=owner)
                        touched.append(hp)
            yield self
        finally:
            for hp in touched:
                hp.remove_hooks("both", owner=owner)
            if reset_hooks_end:
                for hp in self.hook_dict.values():
                    hp.remove_hooks("both", owner="loose")
            if clear_contexts:
                for hp in self.hook_dict.values():
                    hp.clear_context()

    def run_with_hooks(
        self,
        *model_args,
        fwd_hooks: Iterable[HookSpec] = (),
        bwd_hooks: Iterable[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs,
    ):
        """One forward pass with temporary hooks: ``fwd_hooks=[(name_or_filter, fn), ...]``."""
        fwd_hooks, bwd_hooks = list(fwd_hooks), list(bwd_hooks)
        if bwd_hooks and not reset_hooks_end:
            logger.warning("backward hooks are kept after the run; call reset_hooks() after backward()")
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self(*model_args, **model_kwargs)

    def run_with_cache(
        self,
        *model_args,
        names_filter: NameFilter = None,
        device: Union[str, torch.device, None] = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs,
    ):
        """Run the model and cache activations: returns ``(output, ActivationCache)``.

        ``names_filter`` (a name, a list, or a ``name -> bool`` function) limits what is stored; the
        default stores every hook point except opt-in ones (per-head results, split q/k/v inputs)
        unless the config enables them. With ``incl_bwd`` gradients are cached as ``name + "_grad"``
        once you call ``backward()`` on the output (before the next run).
        """
        from circuitscope.cache import ActivationCache

        keep = self._names_filter_fn(names_filter)
        store: dict[str, torch.Tensor] = {}

        def save(name: str):
            def hook(x: torch.Tensor, hook: HookPoint) -> None:
                x = x.detach()
                if device is not None:
                    x = x.to(device)
                store[name] = x[0] if remove_batch_dim else x

            return hook

        fwd = [(name, save(name)) for name in self.hook_dict if keep(name)]
        if incl_bwd:
            # Gradients arrive after this call returns, so these hooks must outlive it (as loose hooks).
            for name, _ in fwd:
                self.hook_dict[name].add_hook(save(name + "_grad"), dir="bwd")
        with self.hooks(fwd, (), reset_hooks_end and not incl_bwd, clear_contexts):
            out = self(*model_args, **model_kwargs)
        return out, ActivationCache(store, self, has_batch_dim=not remove_batch_dim)
