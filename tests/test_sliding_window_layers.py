"""Qwen2 slides its attention window only over some layers; our logits must match HF's.

HF's Qwen2 reads ``use_sliding_window`` + ``max_window_layers`` (layers from that index on slide)
or an explicit ``layer_types`` list. Applying the window to every layer gives logits ~0.1 off.
"""

import pytest
import torch
import transformers as tf

from circuitscope import HookedTransformer
from hf_models import VOCAB, random_tokens

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _qwen2(**window_kwargs):
    cfg = tf.Qwen2Config(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                         num_hidden_layers=3, vocab_size=VOCAB, max_position_embeddings=64, **window_kwargs)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = tf.Qwen2ForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_((0.2 if p.dim() == 1 else 0.05) * torch.randn(p.shape, generator=g))
    return model


CASES = {
    "max_window_layers": dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
    "layer_types": dict(use_sliding_window=True, sliding_window=3,
                        layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "window_switched_off": dict(use_sliding_window=False, sliding_window=4, max_window_layers=0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_qwen2_per_layer_windows_match_hf(case, tmp_path):
    hf = _qwen2(**CASES[case])
    tokens = random_tokens(batch=2, pos=16)  # several times longer than the window
    with torch.no_grad():
        expected = hf(tokens).logits
        hf.save_pretrained(tmp_path)
        model = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu")
        torch.testing.assert_close(model(tokens), expected, atol=1e-4, rtol=0)
        # the explicit-attention path (a pattern hook) reads the same per-layer masks
        logits = model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), lambda x, hook: None)])
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_windows_are_config_data():
    cfg = HookedTransformer.from_pretrained_no_processing(
        "qwen2-tiny", hf_model=_qwen2(**CASES["max_window_layers"]), device="cpu").cfg
    assert [cfg.window_for(layer) for layer in range(3)] == [None, 4, 4]
    assert cfg.layer_windows == (None, 4, 4)
