"""The planted-induction organism's word-level tokenizer, saved so that ``AutoTokenizer`` loads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

__all__ = ["save_word_tokenizer"]


def save_word_tokenizer(vocab: Sequence[str], folder: str | Path, bos: str, unk: str, max_length: int) -> None:
    """Write a whitespace-split, word-level tokenizer (token id = index in ``vocab``) into ``folder``.

    ``bos`` is also EOS and PAD; ``bos`` and ``unk`` are special tokens (left out of task token pools).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([bos, unk])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=bos, pad_token=bos,
                                   unk_token=unk, model_max_length=max_length)
    fast.save_pretrained(str(folder))
    # transformers 5 writes its own class name, unknown to transformers 4; this one loads under both.
    path = folder / "tokenizer_config.json"
    config = {**json.loads(path.read_text()), "tokenizer_class": "PreTrainedTokenizerFast"}
    path.write_text(json.dumps(config, indent=2) + "\n")
    # Newer transformers no longer writes special_tokens_map.json; older loaders still read it.
    special = {"bos_token": bos, "eos_token": bos, "pad_token": bos, "unk_token": unk}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
