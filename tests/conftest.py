"""Shared test fixtures: a tiny tokenizer trained on the spot and fake models built on it.

Nothing here touches the network: the tokenizer is a byte-level BPE trained in well under a second
on sentences built from ``circuitscope.tasks.vocab``, so every name, place, object and day in that
file is a single token with its leading space (as in GPT-2), and ``<|endoftext|>`` is BOS, EOS and
pad. Words outside the corpus (``" Zyzzyva"``) still tokenize, byte by byte, into several tokens.
"""

from __future__ import annotations

import os

# Tests never reach the network: fail fast instead of retrying the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from circuitscope.tasks import vocab

SPECIAL = "<|endoftext|>"


def _corpus() -> list[str]:
    """Sentences in which every vocab word appears often enough to be merged into one token."""
    lines: list[str] = []
    names, places, objects = vocab.NAMES, vocab.PLACES, vocab.OBJECTS
    for i, template in enumerate(vocab.IOI_TEMPLATES):
        for j, name in enumerate(names):
            other = names[(j + 1 + i) % len(names)]
            text = (
                template.replace("[A]", name)
                .replace("[B]", other)
                .replace("[PLACE]", places[(i + j) % len(places)])
                .replace("[OBJECT]", objects[(i * 3 + j) % len(objects)])
            )
            lines.append(text)
    for template in vocab.DAY_TEMPLATES:
        for day in vocab.DAYS:
            lines.extend([template.replace("[DAY]", day) + " " + day] * 3)
    for word in names + places + objects + vocab.DAYS:
        lines.extend([f"{word}: the {word} and {word}."] * 3)
    lines.extend(
        [
            "Who asked about the game? Who said it? Question: who spoke first? Answer:",
            "I think so. Yes, that is right. No, I was not there. Did you see it?",
        ]
        * 5
    )
    return lines


def build_tiny_tokenizer():
    """Train the byte-level BPE tokenizer used across the test suite (about 0.3 s)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4000,
        min_frequency=1,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL
    )


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


class FakeModel:
    """A tiny causal 'language model' built from random embeddings.

    Logits at a position come from the token there plus (unless ``bigram=True``) the running mean
    of the embeddings so far, so earlier tokens matter and clean/corrupted runs differ. A pure
    bigram model (``bigram=True``) sees only the current token: two prompts ending in the same
    token get identical answer logits. It has a ``.tokenizer`` and maps ``tokens [batch, pos] ->
    logits [batch, pos, vocab]``, which is all the task and metric code asks of a model.
    """

    def __init__(self, tokenizer, seed: int = 0, bigram: bool = False, d_model: int = 16):
        self.tokenizer = tokenizer
        self.bigram = bigram
        gen = torch.Generator().manual_seed(seed)
        d_vocab = len(tokenizer)
        self.embed = torch.nn.Embedding(d_vocab, d_model)
        self.unembed = torch.nn.Linear(d_model, d_vocab, bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(d_vocab, d_model, generator=gen))
            self.unembed.weight.copy_(torch.randn(d_vocab, d_model, generator=gen))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # [batch, pos, d_model]
        if not self.bigram:
            counts = torch.arange(1, tokens.shape[1] + 1, device=tokens.device).view(1, -1, 1)
            x = x + x.cumsum(1) / counts
        return self.unembed(x)  # [batch, pos, vocab]


@pytest.fixture(scope="session")
def fake_model(tiny_tokenizer):
    return FakeModel(tiny_tokenizer)


@pytest.fixture(scope="session")
def bigram_model(tiny_tokenizer):
    return FakeModel(tiny_tokenizer, bigram=True)


# ---------------------------------------------------------------------------- headless Chromium

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _browser_unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests; .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A persistent Chromium context (Debian's chromium via playwright) with a fresh profile,
    offline, recording every network attempt in ``.network_attempts``. Skipped when Chromium is
    absent, except under CI (``CI`` set), where that is a failure."""
    import shutil

    exe = os.environ.get("CIRCUITSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(exe):
        _browser_unavailable(f"Chromium not found at {exe} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable('playwright is not installed (pip install -e ".[test]")')
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=exe, headless=True,
            args=CHROMIUM_FLAGS, offline=True, viewport={"width": 1200, "height": 900},
        )
        context.network_attempts = []

        def route(r):
            if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
                r.continue_()
            else:
                context.network_attempts.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        yield context
        context.close()


@pytest.fixture()
def open_page(browser):
    """Open a saved HTML file; yields (page, errors). Checks afterwards that nothing was fetched."""
    pages = []

    def opener(path):
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        pages.append(page)
        return page, errors

    before = len(browser.network_attempts)
    yield opener
    for page in pages:
        page.close()
    assert browser.network_attempts[before:] == []


@pytest.fixture(scope="module")
def small_random_model(tiny_tokenizer):
    """A 2-layer random model on the tiny tokenizer, weights large enough (std 0.3) that every
    ablation visibly moves the logits."""
    from circuitscope import HookedTransformer, TransformerConfig

    with torch.random.fork_rng():
        torch.manual_seed(3)
        cfg = TransformerConfig(n_layers=2, d_model=24, n_heads=4, d_head=6, d_vocab=len(tiny_tokenizer),
                                n_ctx=32, d_mlp=48)
        model = HookedTransformer(cfg, tokenizer=tiny_tokenizer)
        model.init_weights(std=0.3)
    return model


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is faster than two, and much faster on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
