"""Resumable training state and the atomic export of a finished organism as an HF folder.

The resume file holds only tensors and plain Python scalars/containers, so it is read back with
``torch.load(..., weights_only=True)``: nothing is ever unpickled as an arbitrary object.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["STATE_FILE", "BEST_FILE", "save_state", "load_state", "save_best", "load_best",
           "export_folder"]

STATE_FILE = "training_state.pt"
BEST_FILE = "best.safetensors"


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_state(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               info: dict[str, Any]) -> None:
    """Write model, optimizer and ``info`` (step, best score, history, ...) to ``out``."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "info": info}
    _atomic_write(out / STATE_FILE, lambda tmp: torch.save(state, tmp))


def load_state(out: Path, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer from ``out`` and return the saved ``info``."""
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["info"]


def save_best(out: Path, model: torch.nn.Module) -> None:
    """Keep a copy of the currently best weights (the selected checkpoint)."""
    # clone: tied embeddings share storage, which safetensors refuses to save twice
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(out / BEST_FILE, lambda tmp: save_file(tensors, tmp))


def load_best(out: Path, model: torch.nn.Module) -> None:
    model.load_state_dict(load_file(str(out / BEST_FILE)))


def export_folder(dest: Path, model, tokenizer_dir: Path, extra_files: dict[str, str]) -> None:
    """Write the HF folder (config, safetensors, tokenizer, ``extra_files``) to ``dest`` atomically.

    Everything is written into a sibling temp dir which then replaces ``dest`` by renames, so
    readers see either the old folder or the complete new one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix="." + dest.name + ".tmp-"))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy2(tokenizer_dir / name, tmp / name)
        for name, text in extra_files.items():
            (tmp / name).write_text(text)
        if (tmp / "generation_config.json").exists():  # not needed, keeps the folder minimal
            (tmp / "generation_config.json").unlink()
        tmp.chmod(0o755)  # mkdtemp makes it private; a shipped folder should be world-readable
        for path in tmp.iterdir():
            path.chmod(0o644)
        old = None
        if dest.exists():
            old = dest.parent / ("." + dest.name + f".old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: Path, data: Any) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
