"""TransformerLens 2.16.1 side of ``bench_patching.py`` (runs in the TL venv, not ours).

Loads the random-init GPT-2 checkpoint the caller saved (via ``_tl_cache_memory.load_tl_model``),
builds the same logit-difference metric from TL's own clean/corrupted runs, and times
TransformerLens's ``patching`` functions plus the IOI paper's three-step path patching written
with TL hooks (one step-2 and one step-3 forward pass per sender, as the seed notebooks do).
Writes timings as JSON to stdout and every result tensor to ``--out`` (a ``.pt`` file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tl_cache_memory import load_tl_model  # noqa: E402


def make_metric(model, data):
    answers, pos = data["answer_tokens"], data["answer_pos"]
    rows = torch.arange(answers.shape[0])

    def logit_diff(logits):
        sel = logits[rows, pos]
        return (sel.gather(-1, answers)[:, 0] - sel.gather(-1, answers)[:, 1]).mean()

    with torch.no_grad():
        clean = logit_diff(model(data["clean"])).item()
        corrupted = logit_diff(model(data["corrupted"])).item()

    def metric(logits):
        return (logit_diff(logits) - corrupted) / (clean - corrupted)

    def ioi_metric(logits):
        return (logit_diff(logits) - clean) / (clean - corrupted)

    return metric, ioi_metric


def path_patch(model, clean, corrupted, receivers, receiver_input, positions, metric):
    """The three-step algorithm with TL hooks: freeze every head's z at its clean value except the
    sender's (corrupted), cache the receivers' inputs, rerun with them patched in."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    z_filter = lambda name: name.endswith("hook_z")  # noqa: E731
    _, clean_cache = model.run_with_cache(clean, names_filter=z_filter)
    _, new_cache = model.run_with_cache(corrupted, names_filter=z_filter)
    recv_layers = sorted({layer for layer, _ in receivers})
    recv_names = [f"blocks.{layer}.attn.hook_{receiver_input}" for layer in recv_layers]
    rows = torch.arange(clean.shape[0])[:, None]
    idx = positions if positions is not None else torch.arange(clean.shape[1]).expand(clean.shape[0], -1)
    results = torch.zeros(n_layers, n_heads)
    for s_layer in range(recv_layers[-1]):
        for s_head in range(n_heads):
            def freeze(z, hook, s_layer=s_layer, s_head=s_head):
                z[...] = clean_cache[hook.name]
                if hook.layer() == s_layer:
                    z[:, :, s_head] = new_cache[hook.name][:, :, s_head]
                return z

            model.add_hook(z_filter, freeze)
            _, step2 = model.run_with_cache(clean, names_filter=lambda n: n in recv_names, return_type=None)
            model.reset_hooks()

            def patch(x, hook):
                for layer, head in receivers:
                    if layer == hook.layer():
                        x[rows, idx, head] = step2[hook.name][rows, idx, head]
                return x

            logits = model.run_with_hooks(clean, fwd_hooks=[(lambda n: n in recv_names, patch)])
            results[s_layer, s_head] = metric(logits)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformer_lens import patching

    model = load_tl_model(args.model_dir, processed=True)
    data = torch.load(args.data, weights_only=True)
    metric, ioi_metric = make_metric(model, data)
    clean, corrupted = data["clean"], data["corrupted"]
    _, clean_cache = model.run_with_cache(clean)
    sweeps = {
        "resid_pre_by_pos": lambda: patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric),
        "head_out_all_pos": lambda: patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric),
        "head_out_by_pos": lambda: patching.get_act_patch_attn_head_out_by_pos(model, corrupted, clean_cache, metric),
        "head_all_pos_every": lambda: patching.get_act_patch_attn_head_all_pos_every(model, corrupted, clean_cache, metric),
        "path_q_end": lambda: path_patch(model, clean, corrupted, data["q_receivers"].tolist(), "q",
                                         data["answer_pos"][:, None], ioi_metric),
        "path_v_all": lambda: path_patch(model, clean, corrupted, data["v_receivers"].tolist(), "v", None, ioi_metric),
    }
    only = [s for s in args.only.split(",") if s]
    timings, values = {}, {}
    for name, fn in sweeps.items():
        if only and name not in only:
            continue
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = fn()
            timings[name] = time.perf_counter() - t0
        values[name] = out.detach().float().cpu()
        print(f"{name}: {timings[name]:.2f} s", file=sys.stderr, flush=True)
    torch.save(values, args.out)
    print(json.dumps({"timings": timings, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
