"""Every TransformerLens name the five seed notebooks import or call exists under circuitscope.

The names below were read off the seeds (``from transformer_lens... import`` lines and the
``utils.X`` / ``model.X`` / ``cache.X`` uses); when the seeds are present the test re-reads them,
so a new name in a seed cannot slip past. ``transformer_lens.patching`` is a separate issue and
is left out here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import torch

from circuitscope import ActivationCache, HookedTransformer, TransformerConfig

SEEDS = Path(__file__).resolve().parents[1] / "shared" / "seeds"
if not SEEDS.is_dir():
    SEEDS = Path("/work/shared/seeds")

# TransformerLens module -> names imported from it, as the seeds use them.
IMPORTS = {
    "transformer_lens": ["utils", "HookedTransformer", "ActivationCache", "HookedTransformerConfig",
                         "FactoredMatrix"],
    "transformer_lens.utils": [],
    "transformer_lens.hook_points": ["HookPoint", "HookedRootModule"],
    "transformer_lens.components": ["Embed", "Unembed", "LayerNorm", "MLP"],
}
UTILS = ["get_act_name", "get_device", "test_prompt", "to_numpy"]
MODEL = ["W_K", "W_Q", "add_hook", "add_caching_hooks", "blocks", "cfg", "ln_final", "reset_hooks",
         "run_with_cache", "run_with_hooks", "to_single_token", "to_str_tokens", "to_string",
         "to_tokens", "tokenizer", "tokens_to_residual_directions", "unembed", "from_pretrained"]
CACHE = ["accumulated_resid", "apply_ln_to_stack", "decompose_resid", "stack_head_results", "keys",
         "apply_slice_to_batch_dim", "get_neuron_results", "stack_neuron_results", "toggle_autodiff",
         "remove_batch_dim", "logit_attrs", "get_full_resid_decomposition", "stack_activation"]
EXCLUDED = {"transformer_lens.patching", "patching"}


def ours(module: str) -> str:
    return module.replace("transformer_lens", "circuitscope", 1)


@pytest.mark.parametrize("module", sorted(IMPORTS))
def test_seed_imports_resolve(module):
    mod = importlib.import_module(ours(module))

    def importable(name: str) -> bool:  # what `from module import name` accepts: attribute or submodule
        if hasattr(mod, name):
            return True
        try:
            importlib.import_module(f"{ours(module)}.{name}")
            return True
        except ModuleNotFoundError:
            return False

    missing = [name for name in IMPORTS[module] if not importable(name)]
    assert not missing, f"{ours(module)} lacks {missing}"


def test_seed_utils_model_and_cache_names_exist(tiny_tokenizer):
    utils = importlib.import_module("circuitscope.utils")
    assert [n for n in UTILS if not callable(getattr(utils, n, None))] == []
    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_vocab=len(tiny_tokenizer), n_ctx=16, d_mlp=16)
    model = HookedTransformer(cfg, tokenizer=tiny_tokenizer)
    assert [n for n in MODEL if not hasattr(model, n)] == []
    assert [n for n in CACHE if not callable(getattr(ActivationCache, n, None))] == []
    for name in ("device", "n_heads", "n_layers"):
        assert hasattr(model.cfg, name)
    hook = model.blocks[0].attn.hook_z
    assert callable(hook.add_hook) and hook.name == "blocks.0.attn.hook_z" and hook.layer() == 0
    assert hasattr(model.unembed, "W_U") and hasattr(model.unembed, "b_U")


@pytest.mark.skipif(not SEEDS.is_dir(), reason="seed notebooks not present")
def test_the_lists_above_cover_the_seeds():
    text = "\n".join(p.read_text(errors="replace") for p in sorted(SEEDS.glob("*.txt")))
    imported: dict[str, set[str]] = {}
    for module, in_parens, on_line in re.findall(
        r"from (transformer_lens[\w.]*) import (?:\(([^)]*)\)|([^\n]*))", text
    ):
        parts = (in_parens or on_line).split("#")[0].split(",")
        imported.setdefault(module, set()).update(p.split(" as ")[0].strip() for p in parts if p.strip())
    for module in re.findall(r"^import (transformer_lens[\w.]*)", text, flags=re.M):
        imported.setdefault(module, set())
    for module, names in imported.items():
        if module in EXCLUDED:
            continue
        assert module in IMPORTS, f"seeds import {module}"
        assert names - EXCLUDED <= set(IMPORTS[module]), f"{module}: {names - set(IMPORTS[module])}"
    assert set(re.findall(r"\butils\.(\w+)\(", text)) - {"data"} <= set(UTILS)
    assert set(re.findall(r"\bmodel\.(\w+)", text)) - {"safetensors"} <= set(MODEL)
    assert set(re.findall(r"\bcache\.(\w+)\(", text)) <= set(CACHE)


def test_compat_modules_re_export_the_real_classes():
    from circuitscope import components, hook_points, hooks
    from circuitscope.model import hooked_module, mlp, norms

    assert hook_points.HookPoint is hooks.HookPoint
    assert hook_points.HookedRootModule is hooked_module.HookedRootModule
    assert components.MLP is mlp.MLP and components.LayerNorm is norms.LayerNorm
    assert issubclass(HookedTransformer, hook_points.HookedRootModule)


def test_get_device_is_a_usable_device():
    from circuitscope import utils

    device = utils.get_device()
    assert isinstance(device, torch.device)
    assert device.type == ("cuda" if torch.cuda.is_available() else device.type)
    torch.zeros(1, device=device)


def test_test_prompt_prints_its_table_and_returns_it(tiny_tokenizer, capsys):
    from circuitscope import utils

    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_vocab=len(tiny_tokenizer), n_ctx=32, d_mlp=16)
    model = HookedTransformer(cfg, tokenizer=tiny_tokenizer)
    result = utils.test_prompt("When Mary and John went to the store, John gave a drink to", " Mary", model, top_k=3)
    out = capsys.readouterr().out
    assert "Performance on answer token 0" in out and str(result) in out
    assert result._repr_html_() is None and "rank" in repr(result)  # a notebook shows it once
    quiet = utils.test_prompt("When Mary went to", " Mary", model, print_details=False)
    assert capsys.readouterr().out == "" and "<table>" in quiet._repr_html_()
