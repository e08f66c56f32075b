"""TransformerLens 2.16.1 side of the circuitscope benchmarks (runs in the TL venv, not ours).

Invoked by ``bench_cache_memory.py`` and ``bench_forward.py`` with the TL venv's python
(default ``/opt/tl-venv/bin/python``, see ``setup_tl_venv.sh``); each invocation is a fresh
process so that its peak-RSS figure is clean. Only the standard library, torch, transformers and
transformer_lens are imported: circuitscope is not installed in that venv.

It loads the random-init GPT-2 checkpoint that the calling script saved (a ``save_pretrained``
directory) exactly as ``HookedTransformer.from_pretrained`` would load an official GPT-2 (same
config conversion, same ``convert_gpt2_weights``, same ``load_and_process_state_dict`` flags).
``from_pretrained`` itself refuses names that are not official model names, so its steps are
reproduced here by hand, offline.

Modes:
  memory  one ``run_with_cache`` (TL default: every hook) measured for peak RSS, repeated;
          writes hook names, cache tensor bytes and RSS figures as JSON.
  timing  median wall time of ``model(tokens)`` and ``model.run_with_cache(tokens)``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import resource
import statistics
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402


# ----------------------------------------------------------------------------- memory helpers
# Also imported by bench_cache_memory.py's "ours" worker, so both sides are measured by the same
# code: keep module level to the standard library and torch (no transformer_lens, no circuitscope).

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.M)
    return int(m.group(1)) if m else -1


def rss_kb() -> int:
    return _status_kb("VmRSS")


def malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


class PeakRSS:
    """Peak RSS over a code block, in kB.

    Preferred: reset the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)
    and read ``VmHWM`` afterwards, which is exact. Fallback: a 0.5 ms sampling thread.
    """

    def __init__(self):
        self.peak_kb = -1
        self.method = None

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM after clear_refs=5"
        except OSError:
            self.method = "sampling thread (0.5 ms)"
            self._stop = threading.Event()
            self._samples = [rss_kb()]

            def sample():
                while not self._stop.is_set():
                    self._samples.append(rss_kb())
                    time.sleep(0.0005)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.method.startswith("VmHWM"):
            self.peak_kb = _status_kb("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            self.peak_kb = max(self._samples + [rss_kb()])
        return False


def cache_tensor_bytes(cache_dict) -> dict:
    """Logical bytes (numel * itemsize) and bytes of distinct storages held by a cache."""
    logical = 0
    storages = {}
    for t in cache_dict.values():
        if not isinstance(t, torch.Tensor):
            continue
        logical += t.numel() * t.element_size()
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
    return {"logical_bytes": logical, "storage_bytes": sum(storages.values()),
            "n_tensors": len(cache_dict), "n_storages": len(storages)}


# ----------------------------------------------------------------------------- model loading

def load_tl_model(model_dir: str, processed: bool):
    """Reproduce ``HookedTransformer.from_pretrained(_no_processing)`` for a local GPT-2 dir."""
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    fold_ln = center_writing_weights = center_unembed = fold_value_biases = processed
    cfg_dict = loading.convert_hf_model_config(model_dir)  # local dir: reads config.json offline
    cfg_dict.update(
        model_name="gpt2-random",
        init_weights=False,
        dtype=torch.float32,
        device="cpu",
        n_devices=1,
        default_prepend_bos=True,
        from_checkpoint=False,
        tokenizer_name=None,  # saved without tokenizer; TL runs on token ids
    )
    if fold_ln and cfg_dict["normalization_type"] in ("LN", "LNPre"):
        cfg_dict["normalization_type"] = "LNPre"
    cfg = HookedTransformerConfig.from_dict(cfg_dict)

    hf = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32)
    state_dict = convert_gpt2_weights(hf, cfg)
    del hf
    model = HookedTransformer(cfg, None, move_to_device=False)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=False,
    )
    del state_dict
    model.eval()
    gc.collect()
    malloc_trim()
    return model


# ----------------------------------------------------------------------------- modes

def grad_context(grad_mode: str):
    if grad_mode == "inference":
        return torch.inference_mode()
    if grad_mode == "default":
        import contextlib
        return contextlib.nullcontext()  # what a user gets calling run_with_cache bare
    raise ValueError(grad_mode)


def cache_as_dict(cache) -> dict:
    """name -> tensor for a TL or circuitscope ActivationCache (or a plain dict)."""
    if hasattr(cache, "cache_dict"):
        return cache.cache_dict
    if isinstance(cache, dict):
        return cache
    return {k: cache[k] for k in cache.keys()}


def measure_cache_memory(run, *, grad: str, warmup: int, repeats: int, save_logits=None) -> dict:
    """Peak and held RSS growth of ``logits, cache = run()`` over the post-warm-up baseline.

    Baseline = RSS right before the call (model loaded, warmed up, garbage collected, malloc
    trimmed). Peak = kernel high-water mark during the call; held = RSS while logits and cache
    are still alive. Median over ``repeats`` fresh calls (each cache freed before the next).
    """
    for _ in range(warmup):  # warm-up: oneDNN/kernels, lazy allocations
        with grad_context(grad):
            logits, cache = run()
        del logits, cache
    reps = []
    hooks = tensor_bytes = None
    for _ in range(repeats):
        gc.collect()
        malloc_trim()
        base = rss_kb()
        with PeakRSS() as pk:
            with grad_context(grad):
                logits, cache = run()
        held = rss_kb()
        if hooks is None:
            d = cache_as_dict(cache)
            hooks = list(d.keys())
            tensor_bytes = cache_tensor_bytes(d)
            tensor_bytes["logits_bytes"] = logits.numel() * logits.element_size()
            del d
            if save_logits:
                torch.save(logits.detach().clone(), save_logits)
        reps.append({"baseline_rss_kb": base, "peak_rss_kb": pk.peak_kb, "held_rss_kb": held,
                     "peak_delta_kb": pk.peak_kb - base, "held_delta_kb": held - base})
        del logits, cache
    deltas = [r["peak_delta_kb"] for r in reps]
    return {
        "grad_mode": grad,
        "peak_method": pk.method,
        "peak_delta_kb_median": statistics.median(deltas),
        "peak_delta_kb_min": min(deltas),
        "held_delta_kb_median": statistics.median(r["held_delta_kb"] for r in reps),
        "reps": reps,
        "ru_maxrss_lifetime_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cache_tensors": tensor_bytes,
        "n_hooks": len(hooks),
        "hooks": hooks,
    }


def mode_memory(model, tokens, args) -> dict:
    res = measure_cache_memory(lambda: model.run_with_cache(tokens), grad=args.grad,
                               warmup=args.warmup, repeats=args.repeats, save_logits=args.save_logits)
    res["impl"] = "transformer_lens"
    return res


def mode_timing(model, tokens, args) -> dict:
    out = {}
    with torch.inference_mode():
        # interleave the two measurements so machine-load drift hits both alike
        fwd, rwc = [], []
        for _ in range(args.warmup):
            model(tokens)
            model.run_with_cache(tokens)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model(tokens)
            t1 = time.perf_counter()
            _, cache = model.run_with_cache(tokens)
            t2 = time.perf_counter()
            del cache
            fwd.append((t1 - t0) * 1e3)
            rwc.append((t2 - t1) * 1e3)
    out["forward"] = {"median_ms": statistics.median(fwd), "min_ms": min(fwd), "n": len(fwd)}
    out["run_with_cache"] = {"median_ms": statistics.median(rwc), "min_ms": min(rwc), "n": len(rwc)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["memory", "timing"], required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--tokens", required=True, help="torch.save'd LongTensor [batch, pos]")
    p.add_argument("--out", required=True, help="JSON result path")
    p.add_argument("--grad", choices=["inference", "default"], default="inference")
    p.add_argument("--no-processing", action="store_true",
                   help="like from_pretrained_no_processing (default: from_pretrained)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--save-logits", default=None)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import transformer_lens  # noqa: F401
    from importlib.metadata import version

    tokens = torch.load(args.tokens)
    t0 = time.perf_counter()
    model = load_tl_model(args.model_dir, processed=not args.no_processing)
    load_s = time.perf_counter() - t0

    if args.mode == "memory":
        res = mode_memory(model, tokens, args)
    else:
        res = mode_timing(model, tokens, args)
    res.update(
        processed=not args.no_processing,
        load_s=load_s,
        versions={"transformer_lens": version("transformer_lens"), "torch": torch.__version__,
                  "transformers": version("transformers"), "python": sys.version.split()[0]},
        threads=torch.get_num_threads(),
        tokens_shape=list(tokens.shape),
    )
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
