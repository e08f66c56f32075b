"""Train the organisms' byte-level BPE tokenizer, in which every name, day, place and object
(with its leading space, as in GPT-2) is one token.

The merges are learned by the ``tokenizers`` BPE trainer on generated corpus text; the forced
words are made frequent in the training text so that the learned merges build each of them into a
single token (no added-token special casing, so ``" Mary"`` is an ordinary merged token exactly
like GPT-2's ``"ĠMary"``). ``<|endoftext|>`` is token 0 and serves as BOS, EOS and PAD.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from circuitscope.organisms.corpus import text_sample
from circuitscope.tasks.vocab import DAYS, NAMES, OBJECTS, PLACES

__all__ = ["ENDOFTEXT", "forced_words", "build_tokenizer", "save_tokenizer", "check_single_tokens"]

ENDOFTEXT = "<|endoftext|>"


def forced_words() -> list[str]:
    """Every word that must be a single token, with its leading space (``" Mary"``)."""
    return [" " + w for w in (*NAMES, *DAYS, *PLACES, *OBJECTS)]


def _training_text(n_docs: int, seed: int) -> Iterator[str]:
    yield from text_sample(n_docs, seed=seed)
    # Repeat each forced word so its merges always win over rarer pairs, whatever the sample.
    for word in forced_words():
        yield (word * 200).strip()


def build_tokenizer(vocab_size: int = 2048, n_docs: int = 20000, seed: int = 0) -> Tokenizer:
    """Train the byte-level BPE on ``n_docs`` generated paragraphs; deterministic given the args."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[ENDOFTEXT],  # first special token gets id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any byte string is encodable
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(n_docs, seed), trainer=trainer)
    check_single_tokens(tok)
    return tok


def check_single_tokens(tok: Tokenizer) -> None:
    """Raise if any forced word (with leading space) is not exactly one token."""
    bad = [w for w in forced_words() if len(tok.encode(w, add_special_tokens=False).ids) != 1]
    if bad:
        raise ValueError(f"these words are not single tokens: {bad}; raise vocab_size")
    if tok.token_to_id(ENDOFTEXT) != 0:
        raise ValueError(f"{ENDOFTEXT} must be token 0")


def save_tokenizer(tok: Tokenizer, folder: str | Path) -> None:
    """Write ``tok`` as a ``PreTrainedTokenizerFast`` that ``AutoTokenizer`` loads offline."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        model_max_length=128,
        add_prefix_space=False,
    )
    fast.save_pretrained(str(folder))
    # transformers 5 writes its own class name ("TokenizersBackend"), unknown to transformers 4;
    # "PreTrainedTokenizerFast" loads the same tokenizer.json under both.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    # Newer transformers no longer writes special_tokens_map.json; older loaders still read it.
    special = {k: ENDOFTEXT for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The raw ``tokenizers.Tokenizer`` from a saved folder (fast batch encoding for training)."""
    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
