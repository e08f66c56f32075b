"""The organism corpus is deterministic by seed and keeps the evaluation frames held out."""

from __future__ import annotations

import random
import re

from circuitscope.organisms.batches import DataMix, make_batch
from circuitscope.organisms.corpus import (
    day_sentence,
    filler_sentence,
    ioi_sentence,
    matches_eval_template,
    text_sample,
)
from circuitscope.tasks.vocab import DAY_TEMPLATES, DAYS, IOI_TEMPLATES, NAMES, OBJECTS, PLACES


def test_same_seed_same_text_different_seed_different_text():
    assert text_sample(200, seed=3) == text_sample(200, seed=3)
    assert text_sample(200, seed=3) != text_sample(200, seed=4)


def test_batches_are_a_function_of_seed_and_step():
    from circuitscope.organisms.tokenizer import build_tokenizer

    tok = build_tokenizer(n_docs=500)
    mix = DataMix(pure_repeat=0.3, repeat_doc=0.3)
    a = make_batch(tok, mix, seed=1, step=7, batch_size=6, seq_len=48)
    assert a.shape == (6, 48)
    assert (make_batch(tok, mix, seed=1, step=7, batch_size=6, seq_len=48) == a).all()
    assert not (make_batch(tok, mix, seed=1, step=8, batch_size=6, seq_len=48) == a).all()
    assert not (make_batch(tok, mix, seed=2, step=7, batch_size=6, seq_len=48) == a).all()


def test_eval_frames_are_recognised():
    for template in IOI_TEMPLATES:
        text = (template.replace("[A]", "Mary").replace("[B]", "John")
                .replace("[PLACE]", PLACES[0]).replace("[OBJECT]", OBJECTS[0]))
        assert matches_eval_template("Some words. " + text + ".")


def test_generated_ioi_sentences_avoid_eval_frames():
    rng = random.Random(0)
    for _ in range(5000):
        assert not matches_eval_template(ioi_sentence(rng))


def test_every_eval_word_appears_elsewhere_in_the_corpus():
    rng = random.Random(0)
    text = " ".join(
        [ioi_sentence(rng) for _ in range(5000)]
        + [filler_sentence(rng) for _ in range(5000)]
        + [day_sentence(rng) for _ in range(2000)]
    )
    corpus_words = set(re.findall(r"[A-Za-z]+", text))
    eval_words = set()
    for template in IOI_TEMPLATES + DAY_TEMPLATES:
        stripped = re.sub(r"\[[A-Z]+\]", " ", template)
        eval_words |= set(re.findall(r"[A-Za-z]+", stripped))
    eval_words |= set(NAMES) | set(DAYS) | set(PLACES) | set(OBJECTS)
    assert eval_words - corpus_words == set()


def test_day_sentences_state_the_successor():
    rng = random.Random(1)
    for _ in range(200):
        s = day_sentence(rng)
        if s.startswith("The day before"):  # the one frame that names the later day first
            continue
        days = [w for w in re.findall(r"[A-Za-z]+", s) if w in DAYS]
        for x, y in zip(days, days[1:]):
            assert DAYS.index(y) == (DAYS.index(x) + 1) % 7, s
