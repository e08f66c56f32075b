"""Loading checkpoints: which files are read, and errors or warnings that name their cause."""

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitscope import HookedTransformer
from hf_models import make_hf_model, random_tokens

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LOADER = "circuitscope.model"


@pytest.fixture(scope="module")
def gpt2_saved(tmp_path_factory):
    hf = make_hf_model("gpt2")
    folder = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(folder)
    tokens = random_tokens()
    with torch.no_grad():
        logits = hf(tokens).logits
    return hf, folder, tokens, logits


@pytest.fixture
def folder(gpt2_saved, tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(gpt2_saved[1], dest)
    return dest


def _load(path, **kwargs):
    return HookedTransformer.from_pretrained_no_processing(str(path), device="cpu", **kwargs)


def _assert_matches_hf(model, gpt2_saved):
    _, _, tokens, logits = gpt2_saved
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), logits, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ which weight files
def test_stray_safetensors_file_is_ignored_not_merged(folder, gpt2_saved, caplog):
    """An extra file beside model.safetensors used to override its weights silently."""
    sd = load_file(str(folder / "model.safetensors"))
    save_file({k: torch.zeros_like(v) for k, v in sd.items()}, str(folder / "optimizer.safetensors"))
    with caplog.at_level(logging.WARNING, logger=LOADER):
        model = _load(folder)
    _assert_matches_hf(model, gpt2_saved)
    assert "optimizer.safetensors" in caplog.text and "ignored" in caplog.text


def test_sharded_checkpoint_reads_its_index(gpt2_saved, tmp_path):
    hf = gpt2_saved[0]
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) > 1
    first = load_file(str(tmp_path / shards[0]))
    save_file({k: torch.zeros_like(v) for k, v in first.items()}, str(tmp_path / "zz-stale.safetensors"))
    _assert_matches_hf(_load(tmp_path), gpt2_saved)


def test_index_naming_a_missing_shard(gpt2_saved, tmp_path):
    gpt2_saved[0].save_pretrained(tmp_path, max_shard_size="40KB")
    victim = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        _load(tmp_path)


@pytest.mark.parametrize("names", [["a.safetensors", "b.safetensors"], ["weights.safetensors"]])
def test_ambiguous_folder_is_refused_with_the_file_list(folder, names):
    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    for name in names:
        save_file(sd, str(folder / name))
    with pytest.raises(ValueError, match="which weights") as err:
        _load(folder)
    assert all(name in str(err.value) for name in names)


def test_pytorch_bin_checkpoint(folder, gpt2_saved):
    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(sd, folder / "pytorch_model.bin")
    _assert_matches_hf(_load(folder), gpt2_saved)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_safetensors_names_the_file(folder, damage):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a safetensors file" * 4, "empty": b""}[damage])
    with pytest.raises(ValueError, match=r"model\.safetensors.*(corrupt|truncated)"):
        _load(folder)


def test_non_finite_weights_warn_naming_the_tensors(folder, caplog):
    sd = load_file(str(folder / "model.safetensors"))
    key = next(k for k in sd if k.endswith("attn.c_attn.weight"))
    sd[key][0, 0] = float("nan")
    sd["transformer.ln_f.bias"][1] = float("inf")
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger=LOADER):
        _load(folder)
    assert key in caplog.text and "transformer.ln_f.bias" in caplog.text and "NaN" in caplog.text


# ------------------------------------------------------------------ names and options
@pytest.mark.parametrize("name, exc, match", [
    (None, TypeError, "model name.*None.*hf_model="),
    ("", ValueError, "empty"),
    ("/definitely/not/a/folder", FileNotFoundError, "no folder /definitely/not/a/folder"),
    ("./not-here", FileNotFoundError, "no folder"),
])
def test_bad_model_names(name, exc, match):
    with pytest.raises(exc, match=match) as err:
        HookedTransformer.from_pretrained(name, device="cpu")
    if name and name.startswith(("/", ".")):
        assert "hub" not in str(err.value)  # it used to blame the hub for a missing local folder


def test_unknown_model_type(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "mamba-ish", ["MambaishForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model_type 'mamba-ish'.*supports.*gpt2"):
        _load(folder)


def test_broken_config_json(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        _load(folder)


@pytest.mark.parametrize("alias, dtype", [("fp16", torch.float16), ("half", torch.float16), ("bf16", torch.bfloat16),
                                          ("float32", torch.float32), ("fp64", torch.float64), ("torch.float16", torch.float16)])
def test_dtype_aliases(gpt2_saved, alias, dtype):
    model = HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="cpu", dtype=alias)
    assert model.cfg.dtype == dtype and model.W_Q.dtype == dtype


@pytest.mark.parametrize("bad", ["fp17", "int8", torch.int64, 16])
def test_bad_dtype_lists_accepted_names(gpt2_saved, bad):
    with pytest.raises((ValueError, TypeError), match="dtype.*fp16"):
        HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="cpu", dtype=bad)


def test_unknown_config_override_is_named(gpt2_saved):
    with pytest.raises(TypeError, match="n_layer.*not a config field.*n_layers"):
        HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="cpu", n_layer=3)
    with pytest.raises(ValueError, match="d_model.*comes from the checkpoint"):
        HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="cpu", d_model=128)
    model = HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="cpu", use_attn_result=True)
    assert model.cfg.use_attn_result


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(gpt2_saved):
    with pytest.raises(RuntimeError, match="device='cuda'.*no CUDA GPU.*device='cpu'"):
        HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="cuda")
    with pytest.raises(ValueError, match="device 'gpu'"):
        HookedTransformer.from_pretrained("gpt2-tiny", hf_model=gpt2_saved[0], device="gpu")


# ------------------------------------------------------------------ a name that disagrees with hf_model
def _fake_hub_cache(root, repo, config: dict):
    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    (root / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (root / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("abc123")


def test_name_disagreeing_with_hf_model_warns(gpt2_saved, tmp_path, caplog, monkeypatch):
    gpt2 = gpt2_saved[0]
    neox_folder = tmp_path / "neox"
    make_hf_model("neox").save_pretrained(neox_folder)
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "EleutherAI/pythia-160m", json.loads((neox_folder / "config.json").read_text()))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    for name in ("circuitscope/ioi", str(neox_folder), "EleutherAI/pythia-160m", "pythia-125m"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOADER):
            model = HookedTransformer.from_pretrained(name, hf_model=gpt2, device="cpu")
        assert model.cfg.original_architecture == "GPT2LMHeadModel"
        assert "does not match" in caplog.text and name in caplog.text, name


def test_name_agreeing_with_hf_model_is_quiet(gpt2_saved, caplog):
    hf, folder, _, _ = gpt2_saved
    for name in (str(folder), "some-unknown/name-not-cached"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOADER):
            HookedTransformer.from_pretrained(name, hf_model=hf, device="cpu")
        assert "does not match" not in caplog.text
