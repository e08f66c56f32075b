"""Train a model organism: ``python -m circuitscope.organisms.train --organism ioi --out DIR``.

A GPT-2-architecture model (``transformers.GPT2LMHeadModel``) is trained on the generated corpus
with AdamW, linear warmup and cosine decay. Every ``eval_every`` steps it is measured on the
held-out metrics, the training state is saved (so ``--resume`` continues exactly), and the best
checkpoint by the recipe's selection metric is kept; at the end that checkpoint is exported as an
ordinary HF folder with the tokenizer and a model card.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from circuitscope.organisms import checkpoint as ckpt
from circuitscope.organisms.batches import make_batch
from circuitscope.organisms.card import model_card
from circuitscope.organisms.evaluate import day_metrics, ioi_metrics, ioi_prompts, repeat_metrics
from circuitscope.organisms.recipes import RECIPES, Recipe, tiny
from circuitscope.organisms.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer

__all__ = ["build_model", "freeze_zero_mlps", "train", "main"]

logger = logging.getLogger(__name__)

# The tokenizer shipped with the organisms; reused by default so that all of them share it.
SHARED_TOKENIZER = Path(__file__).resolve().parent / "ioi"


def freeze_zero_mlps(model) -> None:
    """Keep an attention-only organism exactly attention-only while it trains.

    Plain HF GPT-2 has no attention-only mode, and it cannot run a zero-width MLP, so the MLPs
    have width 1 with every weight and bias zero and frozen: each MLP outputs exactly 0, HF runs
    the model unchanged, and the config's ``attn_only: true`` tells circuitscope's loader to drop
    them.
    """
    for block in model.transformer.h:
        for p in block.mlp.parameters():
            with torch.no_grad():
                p.zero_()
            p.requires_grad_(False)


def build_model(recipe: Recipe, vocab_size: int, seed: int):
    """A freshly initialised GPT-2 for ``recipe``; the seed is used without touching global RNG."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=recipe.seq_len, n_embd=recipe.n_embd,
        n_layer=recipe.n_layer, n_head=recipe.n_head,
        n_inner=1 if recipe.attn_only else recipe.n_inner,  # None: GPT-2's 4 * n_embd
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # data is unlimited: no dropout
        initializer_range=recipe.init_range,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True,
        attn_only=recipe.attn_only,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the caller's RNG alone
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    if recipe.attn_only:
        freeze_zero_mlps(model)
    return model


def _optimizer(model, recipe: Recipe) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad and p.numel():
            (decay if p.dim() >= 2 else no_decay).append(p)  # no decay on biases and LayerNorms
    groups = [{"params": decay, "weight_decay": recipe.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.98))


def _lr(recipe: Recipe, step: int) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_frac + (1 - recipe.min_lr_frac) * cosine)


def _evaluate(model, tok, recipe: Recipe, prompts) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        metrics = {**ioi_metrics(model, prompts), **day_metrics(model, tok),
                   **repeat_metrics(model, tok.get_vocab_size(), n=100)}
    model.train()
    return metrics


def _score(recipe: Recipe, m: dict[str, float]) -> float:
    """Higher is better. IOI: held-out logit diff (days must pass to compete with ones that do)."""
    if recipe.select_on == "repeat":
        return -m["repeat_loss_second"]
    return m["ioi_logit_diff"] + (0.0 if m["day_acc_full_vocab"] >= 0.9 else -100.0)


def train(organism: str, out: Path, steps: int | None = None, seed: int = 0,
          resume: bool = False, export: Path | None = None, tokenizer_dir: Path | None = None,
          tiny_steps: int | None = None, command: str = "") -> dict[str, Any]:
    """Train ``organism`` in work dir ``out``; export the selected checkpoint to ``export``.

    Returns the info dict (step, best_step, best metrics, history, train_seconds).
    """
    recipe = RECIPES[organism]
    if tiny_steps is not None:
        recipe = tiny(recipe, tiny_steps)
    if steps is not None:
        recipe = replace(recipe, steps=steps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / ckpt.STATE_FILE).exists() and not resume:
        raise FileExistsError(f"{out} already holds a training run; pass --resume or a new --out")

    tok_dir = out / "tokenizer"
    if tokenizer_dir is None and (SHARED_TOKENIZER / "tokenizer.json").exists():
        tokenizer_dir = SHARED_TOKENIZER  # every organism shares the shipped tokenizer
    if not (tok_dir / "tokenizer.json").exists():
        if tokenizer_dir is not None:
            save_tokenizer(load_tokenizer(tokenizer_dir), tok_dir)
        else:  # no shipped tokenizer yet: train one on the corpus
            save_tokenizer(build_tokenizer(), tok_dir)
    tok = load_tokenizer(tok_dir)

    model = build_model(recipe, tok.get_vocab_size(), seed)
    optimizer = _optimizer(model, recipe)
    info: dict[str, Any] = {"step": 0, "best_step": -1, "best_score": -math.inf,
                            "best_metrics": {}, "history": [], "train_seconds": 0.0,
                            "organism": organism, "seed": seed}
    if resume and (out / ckpt.STATE_FILE).exists():
        info = ckpt.load_state(out, model, optimizer)
        logger.info("resumed %s at step %d", organism, info["step"])
    prompts = ioi_prompts(tok, n=recipe.n_eval_prompts, seed=1234)

    model.train()
    bar = tqdm(total=recipe.steps, initial=info["step"], desc=organism, dynamic_ncols=True)
    t0 = time.monotonic()
    while info["step"] < recipe.steps:
        step = info["step"]
        batch = make_batch(tok, recipe.mix, seed, step, recipe.batch_size, recipe.seq_len)
        for group in optimizer.param_groups:
            group["lr"] = _lr(recipe, step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        info["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if info["step"] % recipe.eval_every == 0 or info["step"] == recipe.steps:
            metrics = _evaluate(model, tok, recipe, prompts)
            metrics.update(step=info["step"], train_loss=loss.item())
            info["history"].append(metrics)
            score = _score(recipe, metrics)
            if score > info["best_score"]:
                info.update(best_score=score, best_step=info["step"], best_metrics=metrics)
                ckpt.save_best(out, model)
            info["train_seconds"] += time.monotonic() - t0
            t0 = time.monotonic()
            ckpt.save_state(out, model, optimizer, info)
            logger.info("step %d %s", info["step"],
                        " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k != "step"))
    bar.close()

    ckpt.load_best(out, model)
    ckpt.write_json(out / "metrics.json", info)
    card = model_card(organism, recipe, model.config, info, command, seed)
    ckpt.export_folder(export or out / "hf", model, tok_dir, {"MODEL_CARD.md": card})
    return info


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (logs at INFO; the library itself never prints)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--organism", required=True, choices=sorted(RECIPES))
    p.add_argument("--out", required=True, type=Path, help="work dir (resume state, logs)")
    p.add_argument("--export", type=Path, default=None, help="HF folder to write (default OUT/hf)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="reuse this folder's tokenizer (default: the shipped one, else train one)")
    p.add_argument("--tiny", type=int, default=None, metavar="STEPS",
                   help="toy-size model and batches for STEPS steps (tests)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY",) if k in os.environ)
    command = (env + " " if env else "") + "python -m circuitscope.organisms.train " + " ".join(
        argv if argv is not None else sys.argv[1:])
    train(args.organism, args.out, steps=args.steps, seed=args.seed, resume=args.resume,
          export=args.export, tokenizer_dir=args.tokenizer, tiny_steps=args.tiny, command=command)


if __name__ == "__main__":
    main()
