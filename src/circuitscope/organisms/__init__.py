"""Small trained GPT-2-architecture models ("model organisms") shipped as HF folders.

``organism_path("circuitscope/ioi")`` gives the packaged folder, which any HF-style loader can
read offline. The folders are produced by ``python -m circuitscope.organisms.train``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ORGANISMS", "organism_path"]

# Public model name -> folder inside this package.
ORGANISMS: dict[str, str] = {
    "circuitscope/ioi": "ioi",
    "circuitscope/attn-only-2l": "attn-only-2l",
    "circuitscope/planted-induction": "planted-induction",
}


def organism_path(name: str) -> Path:
    """The packaged HF folder of organism ``name`` (e.g. ``"circuitscope/ioi"``)."""
    if name not in ORGANISMS:
        known = ", ".join(sorted(ORGANISMS))
        raise ValueError(f"unknown organism {name!r}; known organisms: {known}")
    folder = Path(__file__).resolve().parent / ORGANISMS[name]
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        if name == "circuitscope/planted-induction":  # hand-set weights: built, not trained
            raise FileNotFoundError(f"organism {name!r} has no weights in {folder}; build it with "
                                    f"`python -m circuitscope.organisms.planted --out {folder}`")
        raise FileNotFoundError(
            f"organism {name!r} has no trained weights in {folder}; train it with "
            f"`python -m circuitscope.organisms.train --organism {ORGANISMS[name]} "
            f"--out /tmp/{ORGANISMS[name]} --export {folder}`"
        )
    return folder
