"""Our model against Hugging Face's own forward pass, for every supported family."""

import pytest
import torch

from circuitscope import HookedTransformer
from hf_models import FAMILIES, make_hf_model, random_tokens

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    family = request.param
    hf = make_hf_model(family)
    folder = tmp_path_factory.mktemp(family)
    hf.save_pretrained(folder)
    tokens = random_tokens(pos=20 if family == "mistral" else 12)  # mistral: longer than its window
    with torch.no_grad():
        hf_logits = hf(tokens).logits
    return family, hf, folder, tokens, hf_logits


def test_unprocessed_logits_match_hf(saved):
    family, _, folder, tokens, hf_logits = saved
    model = HookedTransformer.from_pretrained_no_processing(str(folder), device="cpu")
    with torch.no_grad():
        ours = model(tokens)
    assert ours.shape == hf_logits.shape
    torch.testing.assert_close(ours, hf_logits, atol=1e-4, rtol=0)


def test_processed_log_probs_match_hf(saved):
    family, _, folder, tokens, hf_logits = saved
    kwargs = {} if "neox" in family or family in ("llama", "mistral", "qwen2") else {"refactor_factored_attn_matrices": True}
    model = HookedTransformer.from_pretrained(str(folder), device="cpu", **kwargs)
    assert model.cfg.normalization_type in ("LNPre", "RMSPre")
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
    torch.testing.assert_close(ours, hf_logits.log_softmax(-1), atol=1e-4, rtol=0)


def test_hf_model_object_matches(saved):
    family, hf, _, tokens, hf_logits = saved
    raw = HookedTransformer.from_pretrained_no_processing(family, hf_model=hf, device="cpu")
    processed = HookedTransformer.from_pretrained(family, hf_model=hf, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(raw(tokens), hf_logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(processed(tokens).log_softmax(-1), hf_logits.log_softmax(-1), atol=1e-4, rtol=0)


def test_explicit_attention_path_matches_fused(saved):
    """Hooking the pattern forces the materialised-scores path; it must give the same logits."""
    _, _, folder, tokens, hf_logits = saved
    model = HookedTransformer.from_pretrained_no_processing(str(folder), device="cpu")
    seen = []
    logits = model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), lambda x, hook: seen.append(hook.name))])
    assert len(seen) == model.cfg.n_layers
    torch.testing.assert_close(logits, hf_logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_dtype_option(dtype):
    hf = make_hf_model("llama")
    tokens = random_tokens()
    with torch.no_grad():
        expected = hf(tokens).logits.log_softmax(-1)
        model = HookedTransformer.from_pretrained("llama", hf_model=hf, device="cpu", dtype=dtype)
        assert model.W_Q.dtype == dtype and model.cfg.dtype == dtype
        got = model(tokens).float().log_softmax(-1)
    atol = 0.1 if dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(got, expected, atol=atol, rtol=0)
