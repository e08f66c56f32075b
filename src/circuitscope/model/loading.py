"""Loading Hugging Face checkpoints into a HookedTransformer.

Sources, in the order they are tried: a ready ``hf_model=`` object; a shipped organism
(``"circuitscope/ioi"``); a local folder with ``config.json``; a hub name (downloaded when online).
Weights are read with safetensors, or ``torch.load(weights_only=True)`` for ``.bin`` files:
never by unpickling arbitrary objects. No HF model object is built when reading from disk.

Which files of a folder are read is decided in :mod:`~circuitscope.model.checkpoint_files` (the
index, else ``model.safetensors``; never every file it holds). Names, dtypes, devices and config
overrides are checked first (:mod:`~circuitscope.model.load_options`), so mistakes fail before any
weight is read, and a name that disagrees with a given ``hf_model`` is reported.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional, Union

import torch

from circuitscope.model.checkpoint_files import read_state_dict, warn_non_finite
from circuitscope.model.families import MODEL_TYPES, family_for
from circuitscope.model.load_options import (
    check_overrides, known_config, resolve_device, resolve_dtype, warn_if_name_mismatch,
)
from circuitscope.model.weight_processing import process_weights

logger = logging.getLogger(__name__)

# Names TransformerLens users type, mapped to hub repositories.
ALIASES = {
    "gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large", "gpt2-xl": "gpt2-xl",
    "pythia-70m": "EleutherAI/pythia-70m", "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-125m": "EleutherAI/pythia-160m", "pythia-410m": "EleutherAI/pythia-410m",
}


def _check_name(model_name, hf_model) -> str:
    """The name as a string; None is allowed only beside ``hf_model`` (named after its config)."""
    if model_name is None and hf_model is not None:
        cfg = hf_model.config
        return str(getattr(cfg, "_name_or_path", "") or getattr(cfg, "model_type", "hf_model"))
    if isinstance(model_name, os.PathLike):
        model_name = os.fspath(model_name)
    if not isinstance(model_name, str):
        raise TypeError(
            f"from_pretrained needs a model name (a local folder, a hub name such as 'gpt2', or a shipped "
            f"organism such as 'circuitscope/ioi'), got {model_name!r}; to wrap an HF model object "
            "already loaded, pass hf_model=<model>"
        )
    if not model_name.strip():
        raise ValueError("the model name is empty: pass a local folder, a hub name or a shipped organism")
    return model_name


def _looks_like_path(name: str) -> bool:
    """A name that can only mean a local path: hub ids are ``name`` or ``org/name``."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/"))


def _local_folder(name: str) -> Optional[Path]:
    """The folder ``name`` stands for without downloading: an organism or a local path."""
    from circuitscope import organisms

    if name in organisms.ORGANISMS:
        return organisms.organism_path(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json; is it a Hugging Face model folder?")
        return path
    if path.exists():
        raise FileNotFoundError(f"{path} is a file; from_pretrained needs the checkpoint's folder (with config.json)")
    if _looks_like_path(name):
        raise FileNotFoundError(f"there is no folder {name} (it is not a local folder: {path.resolve()} does not exist)")
    return None


def _resolve_folder(name: str) -> Path:
    """A local folder for ``name``: an organism, an existing path, or a hub download."""
    from circuitscope import organisms

    folder = _local_folder(name)
    if folder is not None:
        return folder
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


def _read_config(folder: Path):
    """The folder's HF config, after checking config.json parses and names a supported family."""
    from transformers import AutoConfig

    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture: {path} has model_type {model_type!r}; circuitscope supports {', '.join(sorted(MODEL_TYPES))} "
            f"({', '.join(sorted(set(MODEL_TYPES.values())))})"
        )
    return AutoConfig.from_pretrained(str(folder))


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
    model_name = _check_name(model_name, hf_model)
    dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    check_overrides(config_overrides)

    if hf_model is not None:
        hf_config = hf_model.config
        warn_if_name_mismatch(model_name, _expected_config(model_name), hf_config)
        state_dict = {k: v.detach().to("cpu") for k, v in hf_model.state_dict().items()}
        warn_non_finite(state_dict, "hf_model")
        tok_source = getattr(hf_config, "_name_or_path", None) or model_name
        if tokenizer is None:
            tokenizer = _load_tokenizer(tok_source if Path(str(tok_source)).is_dir() else ALIASES.get(model_name, model_name))
    else:
        folder = _resolve_folder(model_name)
        hf_config = _read_config(folder)
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


def _expected_config(name: str) -> Optional[dict]:
    """What ``name`` is known to be without a download (organism, folder, cached hub config)."""
    try:
        folder = _local_folder(name)
    except FileNotFoundError:  # beside hf_model a name is only a label
        return None
    return known_config(ALIASES.get(name, name), folder)


def _has_tokenizer_files(folder: Path) -> bool:
    return any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model"))
