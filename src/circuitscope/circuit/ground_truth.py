"""Scoring discovery against a circuit known by construction (``ground_truth.json``).

A model whose weights were set by hand (``circuitscope/planted-induction``) ships a
``ground_truth.json`` naming its planted heads and their roles. Comparing a found circuit with it
says whether the method finds circuits rather than stories: *precision* is the share of found
heads that were planted, *recall* the share of planted heads that were found, and
*role accuracy* the share of planted heads found with their planted role.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["load_ground_truth", "discovery_scores"]


def load_ground_truth(model_or_folder: Union[str, Path]) -> Optional[dict[str, Any]]:
    """The ``ground_truth.json`` of a shipped organism (``"circuitscope/planted-induction"``) or
    of a model folder; None when it has none."""
    from circuitscope import organisms

    name = str(model_or_folder)
    folder = organisms.organism_path(name) if name in organisms.ORGANISMS else Path(name)
    path = folder / "ground_truth.json"
    if not path.is_file():
        return None
    truth = json.loads(path.read_text())
    heads = truth.get("heads")
    if not isinstance(heads, list) or not all(isinstance(h, list) and len(h) == 2 for h in heads):
        raise ValueError(f"{path}: 'heads' must be a list of [layer, head] pairs, got {heads!r}")
    return truth


def discovery_scores(found_heads, found_roles: dict[str, str], truth: dict[str, Any]) -> dict[str, Any]:
    """Precision, recall and role accuracy of a found circuit against ``truth``."""
    found = {(int(l), int(h)) for l, h in found_heads}
    planted = {(int(l), int(h)) for l, h in truth["heads"]}
    hits = found & planted
    roles = truth.get("roles", {})
    right_role = [f"L{l}H{h}" for l, h in sorted(hits) if roles.get(f"L{l}H{h}") == found_roles.get(f"L{l}H{h}")]
    return {
        "precision": len(hits) / len(found) if found else 0.0,
        "recall": len(hits) / len(planted) if planted else 1.0,
        "role_accuracy": len(right_role) / len(planted) if planted else 1.0,
        "found": sorted([list(h) for h in found]), "planted": sorted([list(h) for h in planted]),
        "missed": sorted([list(h) for h in planted - found]), "extra": sorted([list(h) for h in found - planted]),
    }
