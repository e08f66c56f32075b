"""Reading the weights of a Hugging Face checkpoint folder, and only the ones it declares.

A folder may hold stray files beside the checkpoint (an optimizer state, an older export, an
adapter). Merging every ``*.safetensors`` lets such a file silently override real weights, so the
files are chosen as ``transformers`` chooses them:

1. ``model.safetensors.index.json`` (a sharded checkpoint): exactly the shards it lists, each
   tensor from the shard the index names;
2. otherwise ``model.safetensors``;
3. otherwise the same two for ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``,
   which never unpickles arbitrary objects).

Other weight files are ignored with a warning; a folder with weights but none of these names is
refused, listing what it holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_FORMATS = (("model.safetensors.index.json", "model.safetensors"),
            ("pytorch_model.bin.index.json", "pytorch_model.bin"))


def weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The files to read and, for a sharded checkpoint, its ``{tensor name: shard file}`` map."""
    present = sorted(p.name for p in folder.iterdir() if p.name.endswith((".safetensors", ".bin")))
    for index_name, single in _FORMATS:
        if (folder / index_name).exists():
            weight_map = _read_index(folder / index_name)
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if not (folder / s).exists()]
            if missing:
                raise FileNotFoundError(f"{folder / index_name} lists shard(s) {missing} that are not in {folder}")
            _warn_ignored(folder, present, shards)
            return [folder / s for s in shards], weight_map
        if (folder / single).exists():
            _warn_ignored(folder, present, [single])
            return [folder / single], None
    if present:
        raise ValueError(
            f"cannot tell which weights to load in {folder}: it has {present} but neither an index "
            "(model.safetensors.index.json) nor model.safetensors / pytorch_model.bin. Rename the "
            "checkpoint's file to model.safetensors, or move the other files out."
        )
    raise FileNotFoundError(
        f"no weights in {folder}: expected model.safetensors (or a sharded model.safetensors.index.json, "
        "or pytorch_model.bin) beside config.json"
    )


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a valid checkpoint index (needs a 'weight_map'): {err}") from None
    return dict(weight_map)


def _warn_ignored(folder: Path, present: list[str], used: list[str]) -> None:
    ignored = [name for name in present if name not in used]
    if ignored:
        logger.warning("%s: loading %s; ignored other weight files %s", folder, used, ignored)


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".bin":
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors, truncated zip archives...
            raise ValueError(f"could not read {path}: it is corrupt, truncated or not a weights file ({err})") from None
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError: bad header, file shorter than its header says
        raise ValueError(
            f"could not read {path}: the file is corrupt or truncated ({err}); download or save it again"
        ) from None


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every weight of the checkpoint in ``folder`` (see the module docstring for which files)."""
    files, weight_map = weight_files(folder)
    sd: dict[str, torch.Tensor] = {}
    for path in files:
        tensors = _read_file(path)
        if weight_map is None:
            sd.update(tensors)
            continue
        wanted = [k for k, f in weight_map.items() if f == path.name]
        absent = [k for k in wanted if k not in tensors]
        if absent:
            raise ValueError(f"{path} lacks tensors its index assigns to it: {absent[:5]}")
        sd.update({k: tensors[k] for k in wanted})
    warn_non_finite(sd, folder)
    return sd


def warn_non_finite(state_dict: dict[str, torch.Tensor], source) -> list[str]:
    """Log a warning naming every floating-point tensor that holds NaN or infinity; return them."""
    bad = []
    for name, t in state_dict.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            kinds = [k for k, hit in (("NaN", torch.isnan(t).any()), ("inf", torch.isinf(t).any())) if bool(hit)]
            bad.append(f"{name} ({'/'.join(kinds)})")
    if bad:
        logger.warning("weights from %s contain NaN/inf values, so outputs will too: %s", source, ", ".join(bad))
    return bad
