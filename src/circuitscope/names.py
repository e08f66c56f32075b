"""Hook names: the full list, TransformerLens-style shorthands, and "did you mean" help.

Every activation a hooked model exposes has a dotted name such as ``blocks.3.attn.hook_pattern``.
Researchers rarely type those: ``get_act_name("pattern", 3)`` (or ``cache["pattern", 3]``) builds
it from a shorthand, exactly as in TransformerLens. This module is the single place that knows the
naming scheme, so the model, the cache and the patching code all agree on it.
"""

from __future__ import annotations

import difflib
import operator
import re
from typing import Iterable

__all__ = [
    "MODEL_HOOK_NAMES",
    "ALL_HOOK_SUFFIXES",
    "HOOK_SHAPES",
    "all_hook_names",
    "get_act_name",
    "split_hook_name",
    "suggest_names",
    "unknown_name_message",
]

# Hooks that live on the model itself, not inside a block (in forward order).
MODEL_HOOK_NAMES: tuple[str, ...] = (
    "hook_tokens",  # opt-in: the token ids [batch, pos]
    "hook_embed",
    "hook_pos_embed",
    "ln_final.hook_scale",
    "ln_final.hook_normalized",
)

# Hooks inside block L, named ``blocks.{L}.{suffix}`` (in forward order). Which ones a given model
# has depends on its config: rotary models add rot_q/rot_k, gated MLPs add pre_linear, parallel
# attention+MLP models have no resid_mid, attention-only models have no ln2/mlp hooks, and
# q/k/v_input, attn_in, mlp_in and attn.hook_result are opt-in.
ALL_HOOK_SUFFIXES: tuple[str, ...] = (
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "hook_q_input",
    "hook_k_input",
    "hook_v_input",
    "hook_attn_in",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "attn.hook_result",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "hook_mlp_in",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)

_RESID = "batch pos d_model"
_HEADS = "batch pos head_index d_head"
_SCORES = "batch head_index query_pos key_pos"
# Activation shape of every hook (model-level names and block suffixes), for docs and error text.
HOOK_SHAPES: dict[str, str] = {
    "hook_tokens": "batch pos",
    "hook_embed": _RESID,
    "hook_pos_embed": _RESID,
    "ln_final.hook_scale": "batch pos 1",
    "ln_final.hook_normalized": _RESID,
    "hook_resid_pre": _RESID,
    "ln1.hook_scale": "batch pos 1 (batch pos head_index 1 with split qkv input)",
    "ln1.hook_normalized": "batch pos d_model (batch pos head_index d_model with split qkv input)",
    "hook_q_input": "batch pos head_index d_model",
    "hook_k_input": "batch pos head_index d_model",
    "hook_v_input": "batch pos head_index d_model",
    "hook_attn_in": _RESID,
    "attn.hook_q": _HEADS,
    "attn.hook_k": _HEADS,
    "attn.hook_v": _HEADS,
    "attn.hook_rot_q": _HEADS,
    "attn.hook_rot_k": _HEADS,
    "attn.hook_attn_scores": _SCORES,
    "attn.hook_pattern": _SCORES,
    "attn.hook_z": _HEADS,
    "attn.hook_result": "batch pos head_index d_model",
    "hook_attn_out": _RESID,
    "hook_resid_mid": _RESID,
    "ln2.hook_scale": "batch pos 1",
    "ln2.hook_normalized": _RESID,
    "hook_mlp_in": _RESID,
    "mlp.hook_pre": "batch pos d_mlp",
    "mlp.hook_pre_linear": "batch pos d_mlp",
    "mlp.hook_post": "batch pos d_mlp",
    "hook_mlp_out": _RESID,
    "hook_resid_post": _RESID,
}

# Shorthand -> where it lives. "model": top level; "block": blocks.L.hook_*; "attn"/"mlp": inside
# the block's attention / MLP; "ln": a layer norm (ln1/ln2 in a block, ln_final without a layer).
_SHORTHANDS: dict[str, str] = {
    **{n: "model" for n in ("embed", "pos_embed")},
    **{
        n: "block"
        for n in (
            "resid_pre",
            "resid_mid",
            "resid_post",
            "attn_out",
            "mlp_out",
            "q_input",
            "k_input",
            "v_input",
            "attn_in",
            "mlp_in",
        )
    },
    **{
        n: "attn"
        for n in ("q", "k", "v", "z", "result", "attn_scores", "pattern", "rot_q", "rot_k")
    },
    **{n: "mlp" for n in ("pre", "post", "pre_linear")},
    **{n: "ln" for n in ("scale", "normalized")},
}

_NAME_ALIASES = {
    "attn": "pattern",
    "scores": "attn_scores",
    "attn_logits": "attn_scores",
    "query": "q",
    "key": "k",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_post": "post",
    "mlp_pre_linear": "pre_linear",
    "normalised": "normalized",
}

_LAYER_TYPE_ALIASES = {
    "a": "attn",
    "attn": "attn",
    "attention": "attn",
    "m": "mlp",
    "mlp": "mlp",
    "b": None,
    "block": None,
    "blocks": None,
    "": None,
    "ln1": "ln1",
    "ln2": "ln2",
    "ln_final": "ln_final",
    "lnf": "ln_final",
}

# "resid_pre5", "k6a", "scale4ln1": shorthand, layer and optional layer type written together.
_COMPACT = re.compile(r"^([a-z_]+?)(\d+)([a-z_][a-z0-9_]*)?$")


def all_hook_names(n_layers: int) -> list[str]:
    """Every hook name a model with ``n_layers`` blocks could have (a superset; forward order)."""
    names = list(MODEL_HOOK_NAMES[:3])
    for layer in range(n_layers):
        names.extend(f"blocks.{layer}.{suffix}" for suffix in ALL_HOOK_SUFFIXES)
    names.extend(MODEL_HOOK_NAMES[3:])
    return names


def split_hook_name(name: str) -> tuple[int | None, str]:
    """``"blocks.3.attn.hook_z" -> (3, "attn.hook_z")``; model-level names give ``(None, name)``."""
    match = re.match(r"^blocks\.(\d+)\.(.+)$", name)
    if match is None:
        return None, name
    return int(match.group(1)), match.group(2)


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """Turn a TransformerLens-style shorthand into a full hook name.

    ``get_act_name("resid_pre", 5) -> "blocks.5.hook_resid_pre"``, ``("pattern", 3)`` (or
    ``"attn"``) ``-> "blocks.3.attn.hook_pattern"``, ``("scale", 2, "ln1") ->
    "blocks.2.ln1.hook_scale"``, ``("scale",) -> "ln_final.hook_scale"``, ``"k6a"`` -> layer 6's
    keys. Full names (containing a dot or starting with ``hook_``) pass through unchanged. Layers
    must be non-negative here; ``ActivationCache`` resolves negative layers before calling this.
    """
    if not isinstance(name, str):
        raise TypeError(f"get_act_name expects a string name, got {type(name).__name__}: {name!r}")
    if "." in name or name.startswith("hook_"):
        if layer is None and layer_type is None:
            return name
        raise ValueError(
            f"get_act_name got the full hook name {name!r} together with layer={layer!r}, "
            f"layer_type={layer_type!r}; pass a shorthand such as 'resid_pre' with a layer, or the "
            "full name alone"
        )
    raw = name
    if name not in _SHORTHANDS and name not in _NAME_ALIASES and layer is None:
        match = _COMPACT.match(name)
        if match is not None:
            name, layer, compact_type = match.group(1), int(match.group(2)), match.group(3)
            if compact_type is not None:
                if layer_type is not None:
                    raise ValueError(
                        f"{raw!r} already names a layer type; do not also pass {layer_type!r}"
                    )
                layer_type = compact_type
    name = _NAME_ALIASES.get(name, name)
    where = _SHORTHANDS.get(name)
    if where is None:
        close = suggest_names(raw, list(_SHORTHANDS) + list(_NAME_ALIASES))
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(
            f"unknown activation shorthand {raw!r}{hint} Known shorthands: "
            f"{', '.join(sorted(_SHORTHANDS))}; or pass a full hook name like 'blocks.0.hook_resid_pre'."
        )
    if layer_type is not None:
        if layer_type not in _LAYER_TYPE_ALIASES:
            raise ValueError(
                f"unknown layer_type {layer_type!r} for {raw!r}; use one of "
                f"{', '.join(repr(k) for k in _LAYER_TYPE_ALIASES if k)}"
            )
        layer_type = _LAYER_TYPE_ALIASES[layer_type]
    if layer is not None:
        try:
            layer = operator.index(layer)
        except TypeError:
            raise TypeError(
                f"layer must be an integer, got {type(layer).__name__}: {layer!r}"
            ) from None
        if layer < 0:
            raise ValueError(
                f"get_act_name({raw!r}, {layer}) needs a non-negative layer; negative layers are "
                "counted from the end by ActivationCache (cache[name, -1]), not here"
            )
    return _build(raw, name, where, layer, layer_type)


def _build(raw: str, name: str, where: str, layer: int | None, layer_type: str | None) -> str:
    """Assemble the full name once shorthand, layer and layer type have been normalised."""
    if where == "model":
        if layer is not None or layer_type is not None:
            raise ValueError(
                f"{raw!r} is a model-level hook (hook_{name}); it takes no layer or layer_type"
            )
        return f"hook_{name}"
    if where == "ln":
        if layer is None:
            if layer_type not in (None, "ln_final"):
                raise ValueError(f"{raw!r} with layer_type {layer_type!r} needs a layer")
            return f"ln_final.hook_{name}"
        if layer_type not in ("ln1", "ln2"):
            raise ValueError(
                f"{raw!r} at layer {layer} needs layer_type 'ln1' (the norm before attention) or "
                f"'ln2' (before the MLP); got {layer_type!r}. Without a layer it means ln_final."
            )
        return f"blocks.{layer}.{layer_type}.hook_{name}"
    if layer is None:
        raise ValueError(
            f"{raw!r} is a per-layer activation; pass a layer, e.g. get_act_name({raw!r}, 0)"
        )
    if where == "block":
        if layer_type is not None:
            raise ValueError(
                f"{raw!r} lives on the block itself (blocks.{layer}.hook_{name}), not in {layer_type!r}; "
                "drop layer_type"
            )
        return f"blocks.{layer}.hook_{name}"
    if layer_type not in (None, where):
        raise ValueError(
            f"{raw!r} is an {where} activation (blocks.{layer}.{where}.hook_{name}), not {layer_type!r}"
        )
    return f"blocks.{layer}.{where}.hook_{name}"


def suggest_names(bad_name: str, known_names: Iterable[str], n: int = 3) -> list[str]:
    """Known names closest to ``bad_name`` (best first), for "did you mean ...?" messages.

    Uses difflib similarity; if nothing is close, falls back to names ending in ``bad_name`` (so a
    bare ``"resid_pre"`` still suggests ``"blocks.0.hook_resid_pre"``).
    """
    known = list(dict.fromkeys(known_names))
    close = difflib.get_close_matches(bad_name, known, n=n, cutoff=0.6)
    if close:
        return close
    tail = bad_name.split(".")[-1].lower()
    if tail and not tail.startswith("hook_"):
        tail = "hook_" + tail
    return [k for k in known if k.lower().endswith(tail)][:n] if tail else []


def unknown_name_message(name: str, known_names: Iterable[str], n_layers: int | None = None) -> str:
    """``"unknown hook name 'blocks.9.attn.hook_zz'; did you mean 'blocks.9.attn.hook_z'?"``."""
    known = list(known_names)
    message = f"unknown hook name {name!r}"
    layer, _ = split_hook_name(name)
    if n_layers is not None and layer is not None and layer >= n_layers:
        message += f" (layer {layer} is out of range: this model has layers 0..{n_layers - 1})"
    close = suggest_names(name, known)
    if n_layers is not None and layer is not None and layer >= n_layers:
        last = f"blocks.{n_layers - 1}.{split_hook_name(name)[1]}"
        if last in known:
            close = [last] + [c for c in close if c != last][:2]
    if close:
        message += f"; did you mean {close[0]!r}?"
        if len(close) > 1:
            message += " Other close names: " + ", ".join(repr(c) for c in close[1:]) + "."
        return message
    return message + f"; no similar names among the {len(known)} known hook names"
