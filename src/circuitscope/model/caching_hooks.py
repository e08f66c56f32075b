"""Caching activations (and gradients) with hooks: ``run_with_cache`` and its building blocks.

A caching hook stores a detached copy of the activation it sees in a dict under the hook's name
(``name + "_grad"`` for the gradient). ``run_with_cache`` attaches them for one call and wraps the
dict in an :class:`~circuitscope.cache.ActivationCache`; ``add_caching_hooks`` attaches them until
``reset_hooks()`` (TransformerLens semantics), for code that runs the model itself afterwards.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from circuitscope.hooks import HookPoint

NameFilter = Union[None, str, list, tuple, set, Callable[[str], bool]]
Device = Union[str, torch.device, None]


class CachingHooks:
    """Mixin for :class:`~circuitscope.model.hooked_module.HookedRootModule`."""

    def get_caching_hooks(
        self,
        names_filter: NameFilter = None,
        incl_bwd: bool = False,
        device: Device = None,
        remove_batch_dim: bool = False,
        cache: Optional[dict] = None,
    ) -> tuple[dict, list, list]:
        """Build (but do not attach) caching hooks: returns ``(cache_dict, fwd_hooks, bwd_hooks)``.

        ``names_filter``: None (every hook point except opt-in ones the config has not enabled), a
        name, a list of names, or a function ``name -> bool``. ``remove_batch_dim`` stores
        ``activation[0]`` and so needs a batch of exactly one prompt; a larger batch raises
        instead of silently keeping prompt 0.
        """
        keep = self._names_filter_fn(names_filter)
        store: dict = {} if cache is None else cache

        def saver(suffix: str):
            def save(x: torch.Tensor, hook: HookPoint) -> None:
                x = x.detach()
                if remove_batch_dim:
                    if x.ndim == 0 or x.shape[0] != 1:
                        raise ValueError(
                            f"remove_batch_dim=True needs a batch of exactly 1, but {hook.name} has "
                            f"shape {tuple(x.shape)}; run one prompt (e.g. tokens[:1]) or keep the "
                            "batch dimension"
                        )
                    x = x[0]
                store[hook.name + suffix] = x if device is None else x.to(device)

            save.__name__ = "cache_gradient" if suffix else "cache_activation"
            return save

        names = [name for name in self.hook_dict if keep(name)]
        fwd = [(name, saver("")) for name in names]
        bwd = [(name, saver("_grad")) for name in names] if incl_bwd else []
        return store, fwd, bwd

    def add_caching_hooks(
        self,
        names_filter: NameFilter = None,
        incl_bwd: bool = False,
        device: Device = None,
        remove_batch_dim: bool = False,
        cache: Optional[dict] = None,
    ) -> dict:
        """Attach caching hooks and return the dict they fill; the model is not run.

        As in TransformerLens 2.x the hooks stay until ``reset_hooks()``: every later call
        overwrites the dict's entries (and logs a stale-hook warning from the second call on).
        """
        store, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim, cache)
        for name, fn in fwd:
            self.add_hook(name, fn, dir="fwd")
        for name, fn in bwd:
            self.add_hook(name, fn, dir="bwd")
        self.is_caching = True
        return store

    def run_with_cache(
        self,
        *model_args,
        names_filter: NameFilter = None,
        device: Device = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs,
    ):
        """Run the model and cache activations: returns ``(output, ActivationCache)``.

        ``names_filter`` limits what is stored (see :meth:`get_caching_hooks`). With ``incl_bwd``
        gradients are cached as ``name + "_grad"``: a scalar output (``return_type="loss"``) is
        back-propagated here, as TransformerLens does; for any other output call ``backward()``
        on what you derive from it and the gradients land in the returned cache. The caching hooks
        go at the end of the call (with ``reset_hooks_end``, the TransformerLens default) but stay
        bound to this call's graph, so a later ``backward()`` still fills the cache.
        """
        from circuitscope.cache import ActivationCache

        if incl_bwd and not torch.is_grad_enabled():
            raise RuntimeError(
                "run_with_cache(incl_bwd=True) needs autograd, but it is switched off here "
                "(torch.set_grad_enabled(False) / no_grad / inference_mode); wrap the call in "
                "torch.enable_grad()"
            )
        store, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim)
        with self.hooks(fwd, bwd, reset_hooks_end, clear_contexts):
            out = self(*model_args, **model_kwargs)
            if incl_bwd and isinstance(out, torch.Tensor) and out.ndim == 0 and out.requires_grad:
                out.backward()
        return out, ActivationCache(store, self, has_batch_dim=not remove_batch_dim)
