"""Loading Hugging Face checkpoints into a HookedTransformer.

Sources, in the order they are tried: a ready ``hf_model=`` object; a shipped organism
(``"circuitscope/ioi"``); a local folder with ``config.json``; a hub name (downloaded when online).
Weights are read with safetensors, or ``torch.load(weights_only=True)`` for ``.bin`` files:
never by unpickling arbitrary objects. No HF model object is built when reading from disk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import torch

from circuitscope.model.families import family_for
from circuitscope.model.weight_processing import process_weights

logger = logging.getLogger(__name__)

# Names TransformerLens users type, mapped to hub repositories.
ALIASES = {
    "gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large", "gpt2-xl": "gpt2-xl",
    "pythia-70m": "EleutherAI/pythia-70m", "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-125m": "EleutherAI/pythia-160m", "pythia-410m": "EleutherAI/pythia-410m",
}


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All weights in a HF checkpoint folder (single or sharded safetensors, else ``.bin``)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        files = sorted(folder.glob("pytorch_model*.bin"))
        if not files:
            raise FileNotFoundError(
                f"no weights in {folder}: expected model.safetensors (or pytorch_model.bin) beside config.json"
            )
        sd: dict[str, torch.Tensor] = {}
        for f in files:
            sd.update(torch.load(f, map_location="cpu", weights_only=True))
        return sd
    sd = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd


def _resolve_folder(name: str) -> Path:
    """A local folder for ``name``: an organism, an existing path, or a hub download."""
    from circuitscope import organisms

    if name in organisms.ORGANISMS:
        return organisms.organism_path(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json; is it a Hugging Face model folder?")
        return path
    repo = ALIASES.get(name, name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as err:  # offline, unknown repo, gated repo...
        raise OSError(
            f"{name!r} is not a local folder, not a shipped organism ({', '.join(organisms.ORGANISMS)}), and "
            f"could not be fetched from the Hugging Face hub as {repo!r} ({type(err).__name__}: {err}). "
            "Pass a local folder containing config.json and weights, or hf_model=<a loaded HF model>."
        ) from None


def _load_tokenizer(source: Union[str, Path, None]):
    if source is None:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(source))
    except Exception as err:
        logger.warning("no tokenizer loaded from %s (%s); pass tokenizer= to use text input", source, err)
        return None


def load_pretrained(
    cls,
    model_name: str,
    hf_model=None,
    tokenizer=None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    refactor_factored_attn_matrices: bool = False,
    fold_value_biases: bool = True,
    dtype: Union[torch.dtype, str] = torch.float32,
    device: Optional[Union[str, torch.device]] = None,
    default_prepend_bos: bool = True,
    **config_overrides,
):
    """Build ``cls`` (a HookedTransformer) from a checkpoint; see the module docstring for sources."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"

    if hf_model is not None:
        hf_config = hf_model.config
        state_dict = {k: v.detach().to("cpu") for k, v in hf_model.state_dict().items()}
        tok_source = getattr(hf_config, "_name_or_path", None) or model_name
        if tokenizer is None:
            tokenizer = _load_tokenizer(tok_source if Path(str(tok_source)).is_dir() else ALIASES.get(model_name, model_name))
    else:
        from transformers import AutoConfig

        folder = _resolve_folder(model_name)
        hf_config = AutoConfig.from_pretrained(str(folder))
        state_dict = read_state_dict(folder)
        if tokenizer is None:
            tokenizer = _load_tokenizer(folder) if _has_tokenizer_files(folder) else None

    family = family_for(hf_config)
    cfg = family.config_from_hf(hf_config)
    sd = family.convert(state_dict, cfg, hf_config)
    sd, cfg = process_weights(
        sd, cfg, fold_ln=fold_ln, center_writing=center_writing_weights, center_unembed_=center_unembed,
        fold_value_biases_=fold_value_biases, refactor_factored_attn_matrices_=refactor_factored_attn_matrices,
    )
    cfg = cfg.replace(model_name=model_name, device=str(device), dtype=dtype,
                      default_prepend_bos=default_prepend_bos, **config_overrides)
    with torch.device("meta"):
        model = cls(cfg, tokenizer=tokenizer)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    model.to(device)
    logger.info("loaded %s into HookedTransformer", model_name)
    return model.eval()


def _has_tokenizer_files(folder: Path) -> bool:
    return any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model"))
