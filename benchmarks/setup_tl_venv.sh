#!/usr/bin/env bash
# Create the TransformerLens 2.16.1 virtualenv used as the peer in bench_cache_memory.py and
# bench_forward.py. It lives outside the repo (default /opt/tl-venv; override with $TL_VENV, and
# point the benchmarks at it with TL_PYTHON=$TL_VENV/bin/python or --tl-python).
#
# torch is installed first and then pinned with a constraints file, so TL's dependencies cannot
# pull a different torch build (the run fails instead). Nothing else in the venv needs the network
# at run time: the benchmarks build random-init models locally.
set -euo pipefail

TL_VENV="${TL_VENV:-/opt/tl-venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PY="${PYTHON:-python3}"

if [ ! -x "$TL_VENV/bin/python" ]; then
    "$PY" -m venv "$TL_VENV"
fi
"$TL_VENV/bin/pip" install "torch==$TORCH_VERSION"

# pin exactly the torch that is now installed (e.g. 2.13.0+cpu)
installed_torch="$("$TL_VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==$installed_torch" > "$constraints"

"$TL_VENV/bin/pip" install -c "$constraints" \
    "transformer_lens==2.16.1" "numpy<2" "pyarrow<16" "transformers<4.58" "datasets<3"

after="$("$TL_VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
if [ "$after" != "$installed_torch" ]; then
    echo "error: torch changed from $installed_torch to $after while installing TransformerLens" >&2
    exit 1
fi

# offline smoke test: a GPT-2-small-shaped model from a config (no download)
HF_HUB_OFFLINE=1 WANDB_MODE=disabled "$TL_VENV/bin/python" - <<'PYEOF'
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                              d_vocab=50257, n_ctx=1024, act_fn="gelu_new", normalization_type="LN")
model = HookedTransformer(cfg).eval()
with torch.inference_mode():
    logits, cache = model.run_with_cache(torch.randint(0, 50257, (2, 5)))
assert logits.shape == (2, 5, 50257), logits.shape
print(f"TL venv OK: torch {torch.__version__}, {len(cache)} hooks cached by default")
PYEOF
