"""Resumable sweeps: finished chunks are written to a checkpoint file as they complete.

The file is rewritten atomically after every chunk, so an interrupted sweep loses at most the
chunk that was running. It is tied to one sweep by a fingerprint of the model's weights, the
tokens, the source activations, what is patched and the metric's baselines: resuming with
anything different raises instead of silently mixing results.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import torch

from circuitscope.io import write_json_atomic

__all__ = ["SweepCheckpoint"]


def _digest(h, t: torch.Tensor) -> None:
    t = t.detach().contiguous().cpu()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def fingerprint(model, tokens, source: dict, what: str, by: str, metric) -> str:
    h = hashlib.sha256()
    h.update(f"{what}|{by}|{model.cfg.model_name}|{getattr(metric, '__repr__', lambda: '')()}".encode())
    _digest(h, tokens)
    for name in sorted(source):
        _digest(h, source[name])
    # a cheap weight summary: one number per parameter tensor
    sums = torch.stack([p.detach().double().sum().cpu() for p in model.parameters()])
    _digest(h, sums)
    return h.hexdigest()


class SweepCheckpoint:
    def __init__(self, path: Path, key: str, chunks: dict) -> None:
        self.path, self.key, self.chunks = path, key, chunks

    @classmethod
    def open(cls, path, model, tokens, source, what, by, metric) -> "SweepCheckpoint":
        path = Path(path)
        key = fingerprint(model, tokens, source, what, by, metric)
        chunks: dict = {}
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("fingerprint") != key:
                raise ValueError(
                    f"checkpoint {path} belongs to a different sweep (other model, tokens, "
                    "activation or metric); delete it or pass another checkpoint path"
                )
            chunks = data.get("chunks", {})
        return cls(path, key, chunks)

    def get(self, chunk_id: str) -> Optional[dict]:
        rows = self.chunks.get(chunk_id)
        return None if rows is None else {tuple(k): v for k, v in rows}

    def put(self, chunk_id: str, values: dict) -> None:
        self.chunks[chunk_id] = [[list(k), v if isinstance(v, list) else float(v)] for k, v in values.items()]
        write_json_atomic(self.path, {"fingerprint": self.key, "chunks": self.chunks})
