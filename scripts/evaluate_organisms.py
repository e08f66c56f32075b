"""Re-measure the shipped organisms from their HF folders (the figures in their model cards).

Usage: ``python scripts/evaluate_organisms.py [FOLDER ...]`` (default: both packaged folders).
Loads each folder with ``AutoModelForCausalLM`` exactly as a user would, offline.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from circuitscope.organisms import ORGANISMS, organism_path
from circuitscope.organisms.evaluate import day_metrics, ioi_metrics, ioi_prompts, repeat_metrics

logger = logging.getLogger("evaluate_organisms")


def evaluate_folder(folder: Path) -> dict[str, float]:
    """All acceptance metrics for the HF folder ``folder`` (same prompts as during training)."""
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    with torch.no_grad():
        return {**ioi_metrics(model, ioi_prompts(tok, n=500, seed=1234)),
                **day_metrics(model, tok),
                **repeat_metrics(model, tok.get_vocab_size(), n=100)}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    folders = [Path(a) for a in argv] or [organism_path(name) for name in ORGANISMS]
    for folder in folders:
        metrics = evaluate_folder(folder)
        logger.info("%s %s", folder.name, json.dumps({k: round(v, 4) for k, v in metrics.items()}))


if __name__ == "__main__":
    main(sys.argv[1:])
