"""``circuitscope/planted-induction``: a 2-layer attention-only GPT-2 whose weights are written by
hand, so that its induction circuit is known by construction (no training).

**The circuit.** L0H2 is a *previous-token head*: every position attends to the one before it and
copies that token's identity into the ``prev`` subspace. L1H1 is an *induction head* that
K-composes with it: its query reads the current token (``tok``), its keys read ``prev``, so
position i attends to the position j whose previous token is token i, i.e. to what followed an
earlier occurrence of the current token; its value/output copies token j into ``out``, the only
subspace the unembedding reads. With no earlier occurrence it falls back to BOS, whose code in
``out`` gives every token the same logit.

**Distractors** (:data:`DISTRACTORS`: BOS sinks, a same-token head, a current-token head, a
layer-1 previous-token head, a first-token head) each write the attended token's *phase* (below)
into a 3-dim subspace of their own that no later weight reads.

**Codes** (one unit-norm, zero-sum code per block; :func:`layout` places the blocks):

* ``tok``, ``prev``, ``out`` (17 dims): word (a, b) is ``(e_a - e_b) / sqrt 2`` over 16 axes (the
  roots of A_15; overlaps 1 same word, -1 swapped pair, +-1/2 one shared axis, else 0), spelled
  as two syllables ("bake" = ba - ke). This packs 240 words into 17 dims: induction on random
  tokens can only fail where a token repeats within A, so the vocabulary must be large. BOS has
  a 17th axis minus the mean of the 16 others, orthogonal to every word; UNK = -BOS.
* ``phase`` (3 dims): token t also writes ``sqrt(2/3) cos(2 pi t / 242 - k 2 pi / 3)``, k = 0, 1,
  2 (three-phase: unit norm, zero sum), the token-dependent, constant-norm value distractors copy.
* ``pos`` (29 dims, n_ctx 56): *signed one-hot*: position i owns axis ``i mod 28`` with sign +
  (i < 28) or - (i >= 28), so "one position back" is a linear map of the code; a 29th *ballast*
  coordinate (-sign) makes the sum zero and is never read.

**Why LayerNorm is harmless.** Every vector written sums to zero, so LN's centring does nothing.
Every head attends sharply to keys holding one and the same token or position, so it writes one
unit code into its own block: the residual norm is sqrt(3) before layer 0, sqrt(7) before layer 1
and sqrt(11) before the unembedding (less only where the induction head averages several matches).
LN is a constant gain (:func:`gain`) folded into the weights (LN weights 1, biases 0; MLPs exactly
zero, ``attn_only``). Distractor outputs change with the prompt, never their norm, so *patching*
them (or resampling them from another prompt) cannot reach the logits through LN either. Mean or
zero ablation is different: it shrinks a distractor's unit code, the residual norm drops, and the
fixed LN gain no longer matches, which costs a few per cent of the metric (2-4% on the induction
task): distractors have no effect under patching, a small norm-mediated one under mean ablation.

**Attention scores** are sums of *match* terms (query code . key code, e.g. ``tok_i . prev_j``)
and *key features* (a constant query bias times a linear function of the key, e.g. "is BOS"),
sized so that the intended keys win by :data:`GAP`. Rebuild with
``python -m circuitscope.organisms.planted --out DIR`` (bit-for-bit deterministic weights).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from circuitscope.organisms.planted_tokenizer import save_word_tokenizer

__all__ = ["build_planted_induction", "build_state_dict", "ground_truth", "config", "layout", "gain", "token_codes",
           "phase_codes", "position_codes", "VOCAB", "PREV_HEAD", "INDUCTION_HEAD", "DISTRACTORS"]

ENDOFTEXT, UNK = "<|endoftext|>", "<|unk|>"
SYLLABLES = ("ba", "ke", "di", "mo", "lu", "fa", "ne", "ri", "so", "tu", "ga", "pe", "vi", "zo", "hu", "ja")
N_AXES = len(SYLLABLES)  # word (a, b) = e_a - e_b: 16 * 15 = 240 words
PAIRS = [(a, b) for a in range(N_AXES) for b in range(N_AXES) if a != b]
VOCAB = (ENDOFTEXT, *(SYLLABLES[a] + SYLLABLES[b] for a, b in PAIRS), UNK)  # token id = index
N_VOCAB, N_CTX, D_MODEL, N_HEADS, D_HEAD, EPS = len(VOCAB), 56, 112, 4, 28, 1e-5
GAP = 25.0  # attention-logit margin of a head's intended keys over every other key
LOGIT_GAP = 15.0  # logit of the copied word (a word sharing one axis with it gets half); hedges ties best

PREV_HEAD, INDUCTION_HEAD = (0, 2), (1, 1)
_UNREAD = "into its own unread subspace"
DISTRACTORS = {
    (0, 0): f"BOS sink: every position attends to BOS; writes BOS's phase (a constant) {_UNREAD}",
    (0, 1): ("same token (duplicate-token-like): attends equally to every occurrence of the current token, "
             f"itself included; writes that token's phase {_UNREAD}"),
    (0, 3): f"current token: attends to itself; writes its token's phase {_UNREAD}",
    (1, 0): ("previous token in layer 1 (too late to compose with the induction head): writes the previous "
             f"token's phase {_UNREAD}"),
    (1, 2): f"BOS sink: every position attends to BOS; writes BOS's phase (a constant) {_UNREAD}",
    (1, 3): f"first token: attends to position 1 (the first token after BOS); writes that token's phase {_UNREAD}",
}


def _name(head: tuple[int, int]) -> str:
    return f"L{head[0]}H{head[1]}"  # (1, 1) -> "L1H1"


def layout() -> dict[str, slice]:
    """Residual subspaces: block name -> slice of ``d_model``."""
    sizes = {"tok": N_AXES + 1, "phase": 3, "pos": N_CTX // 2 + 1, "prev": N_AXES + 1, "out": N_AXES + 1}
    sizes.update({_name(h): 3 for h in DISTRACTORS})
    out, start = {}, 0
    for name, size in sizes.items():
        out[name], start = slice(start, start + size), start + size
    assert start <= D_MODEL, "the blocks do not fit in d_model"
    return out


def gain(n_codes: int) -> float:
    """LayerNorm's gain on a residual holding ``n_codes`` unit-norm, zero-sum, disjoint codes."""
    return (n_codes / D_MODEL + EPS) ** -0.5


GAINS = {0: gain(3), 1: gain(7), "final": gain(11)}  # tok, phase, pos; + 4 layer-0 heads; + 4 layer-1 heads


def token_codes() -> torch.Tensor:
    """``tok`` / ``prev`` / ``out`` code of every token id: ``[vocab, 17]``."""
    codes = torch.zeros(N_VOCAB, N_AXES + 1, dtype=torch.float64)
    for t, (a, b) in enumerate(PAIRS, start=1):
        codes[t, a], codes[t, b] = 2 ** -0.5, -(2 ** -0.5)
    codes[0, :N_AXES], codes[0, N_AXES] = -1 / N_AXES, 1.0  # BOS: orthogonal to every word
    codes[0] /= codes[0].norm()
    codes[-1] = -codes[0]  # UNK
    return codes


def phase_codes(n: int) -> torch.Tensor:
    """Three-phase codes of n items on a circle: ``[n, 3]``, unit rows with zero sum."""
    rows = [[math.sqrt(2 / 3) * math.cos(2 * math.pi * t / n - k * 2 * math.pi / 3) for k in range(3)]
            for t in range(n)]
    return torch.tensor(rows, dtype=torch.float64)


def position_codes() -> torch.Tensor:
    """Signed one-hot codes of the positions: ``[n_ctx, 29]``, row i = (sign e_{i mod 28}, -sign) / sqrt 2."""
    n = N_CTX // 2
    sign = torch.tensor([1.0] * n + [-1.0] * n, dtype=torch.float64)[:, None]  # [n_ctx, 1]
    return torch.cat([sign * torch.eye(n, dtype=torch.float64).repeat(2, 1), -sign], dim=1) / math.sqrt(2)


def _place(block: str, codes: torch.Tensor) -> torch.Tensor:
    """Codes ``[items, size]`` written into ``block`` of the residual: ``[items, d_model]``."""
    out = torch.zeros(codes.shape[0], D_MODEL, dtype=torch.float64)
    out[:, layout()[block]] = codes
    return out


def _reader(block: str, shift: int = 0) -> torch.Tensor:
    """``[d_model, r]``: reads a block's code so that products of two read codes are the codes'
    overlaps (1 for the same item). For ``pos`` it drops the ballast and scales the axes by sqrt 2;
    ``shift`` moves a position back by that many places (a negacyclic shift of the signed axes)."""
    s = layout()[block]
    if block != "pos":
        return _place(block, torch.eye(s.stop - s.start, dtype=torch.float64)).T
    n = N_CTX // 2
    m = torch.zeros(n + 1, n, dtype=torch.float64)  # ballast row stays 0
    for k in range(n):
        m[k, (k - shift) % n] = math.sqrt(2) * (1.0 if k >= shift else -1.0)
    return _place(block, m.T).T


class _Head:
    """One head's ``W_Q, W_K, W_V [d_model, d_head]``, ``b_Q [d_head]``, ``W_O [d_head, d_model]``,
    built term by term; ``g`` is the LayerNorm gain at its layer's input."""

    def __init__(self, g: float):
        self.g, self.used = g, 0
        self.W_Q, self.W_K, self.W_V = (torch.zeros(D_MODEL, D_HEAD, dtype=torch.float64) for _ in range(3))
        self.b_Q = torch.zeros(D_HEAD, dtype=torch.float64)
        self.W_O = torch.zeros(D_HEAD, D_MODEL, dtype=torch.float64)

    def _dims(self, n: int) -> slice:
        dims, self.used = slice(self.used, self.used + n), self.used + n
        assert self.used <= D_HEAD, "out of head dimensions"
        return dims

    def match(self, q_block: str, k_block: str, margin: float, shift: int = 0) -> "_Head":
        """Score ``margin * overlap(query item moved back by shift, key item)``."""
        q, k = _reader(q_block, shift), _reader(k_block)  # [d_model, r]
        dims = self._dims(k.shape[1])
        self.W_K[:, dims] = k
        self.W_Q[:, dims] = margin * math.sqrt(D_HEAD) / self.g ** 2 * q  # undo LN gains and 1/sqrt(d_head)
        return self

    def key_feature(self, direction: torch.Tensor, margin: float) -> "_Head":
        """Score ``margin * (residual at j) . direction`` for every query (via a constant query bias)."""
        dim = self._dims(1).start
        self.W_K[:, dim] = direction
        self.b_Q[dim] = margin * math.sqrt(D_HEAD) / self.g
        return self

    def copy(self, src_block: str, dst_block: str) -> "_Head":
        """Value/output: write the attended position's ``src_block`` code, unchanged, into ``dst_block``."""
        src, dst = _reader(src_block), _reader(dst_block)  # [d_model, r] each, r equal
        self.W_V[:, :src.shape[1]] = src / self.g
        self.W_O[:dst.shape[1]] = dst.T
        return self


def _heads() -> dict[tuple[int, int], _Head]:
    """Every head of the model, by ``(layer, head)``."""
    is_bos = _place("tok", token_codes()[:1])[0]  # . tok_j: BOS 1, UNK -1, every word 0
    first = _reader("pos")[:, 1]  # . pos_j: 1 at position 1, -1 at position 29, else 0
    g0, g1 = GAINS[0], GAINS[1]
    return {
        (0, 0): _Head(g0).key_feature(is_bos, GAP).copy("phase", "L0H0"),
        (0, 1): _Head(g0).match("tok", "tok", 2 * GAP).copy("phase", "L0H1"),  # words sharing an axis: 1/2
        PREV_HEAD: _Head(g0).match("pos", "pos", GAP, shift=1).copy("tok", "prev"),
        (0, 3): _Head(g0).match("pos", "pos", GAP).copy("phase", "L0H3"),
        (1, 0): _Head(g1).match("pos", "pos", GAP, shift=1).copy("phase", "L1H0"),
        # an earlier match (4 GAP) > the BOS fallback (3 GAP) > a half match (2 GAP) > the rest (<= 0)
        INDUCTION_HEAD: _Head(g1).match("tok", "prev", 4 * GAP).key_feature(is_bos, 3 * GAP).copy("tok", "out"),
        (1, 2): _Head(g1).key_feature(is_bos, GAP).copy("phase", "L1H2"),
        (1, 3): _Head(g1).key_feature(first, GAP).copy("phase", "L1H3"),
    }


def _unembed() -> torch.Tensor:
    """``lm_head.weight [vocab, d_model]``: word t reads its own code in ``out``; BOS and UNK rows are
    zero. Rows sum to zero, and BOS in ``out`` (the induction head's "no match") is orthogonal to
    every row: a uniform prediction."""
    rows = _place("out", token_codes())
    rows[[0, -1]] = 0.0
    return LOGIT_GAP / GAINS["final"] * rows


def build_state_dict() -> dict[str, torch.Tensor]:
    """The HF ``GPT2LMHeadModel`` state dict (float32), keys as in ``model.safetensors``."""
    zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
    ones = lambda n: torch.ones(n, dtype=torch.float64)  # noqa: E731
    sd = {"transformer.wte.weight": _place("tok", token_codes()) + _place("phase", phase_codes(N_VOCAB)),
          "transformer.wpe.weight": _place("pos", position_codes()),  # [n_ctx, d_model]
          "transformer.ln_f.weight": ones(D_MODEL), "transformer.ln_f.bias": zeros(D_MODEL),
          "lm_head.weight": _unembed()}  # wte, lm_head: [vocab, d_model]
    heads = _heads()
    for layer in range(2):
        p = f"transformer.h.{layer}."
        hs = [heads[layer, h] for h in range(N_HEADS)]
        qkv = [torch.cat([getattr(h, name) for h in hs], dim=1) for name in ("W_Q", "W_K", "W_V")]
        sd[p + "attn.c_attn.weight"] = torch.cat(qkv, dim=1)  # [d_model, 3 * d_model]
        sd[p + "attn.c_attn.bias"] = torch.cat([torch.cat([h.b_Q for h in hs]), zeros(2 * D_MODEL)])
        sd[p + "attn.c_proj.weight"] = torch.cat([h.W_O for h in hs], dim=0)  # [d_model, d_model]
        sd[p + "attn.c_proj.bias"] = zeros(D_MODEL)
        for ln in ("ln_1", "ln_2"):
            sd[p + ln + ".weight"], sd[p + ln + ".bias"] = ones(D_MODEL), zeros(D_MODEL)
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = zeros(D_MODEL, 1), zeros(1)  # attn_only: MLP is 0
        sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = zeros(1, D_MODEL), zeros(D_MODEL)
    return {k: v.to(torch.float32).contiguous() for k, v in sorted(sd.items())}


def config() -> dict:
    """``config.json``: a plain HF GPT-2 config (untied unembedding) marked ``attn_only``."""
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "attn_only": True, "vocab_size": N_VOCAB,
            "n_positions": N_CTX, "n_embd": D_MODEL, "n_layer": 2, "n_head": N_HEADS, "n_inner": 1,
            "activation_function": "gelu_new", "layer_norm_epsilon": EPS, "attn_pdrop": 0.0, "embd_pdrop": 0.0,
            "resid_pdrop": 0.0, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0,
            "pad_token_id": 0, "dtype": "float32", "use_cache": True}


def ground_truth() -> dict:
    """``ground_truth.json``: the planted heads, their roles, and what every distractor does."""
    return {
        "task": "induction",
        "heads": [list(PREV_HEAD), list(INDUCTION_HEAD)],
        "roles": {_name(PREV_HEAD): "previous token", _name(INDUCTION_HEAD): "induction"},
        "distractors": {_name(h): text for h, text in DISTRACTORS.items()},
        "description": (
            f"Hand-set weights. {_name(PREV_HEAD)} copies the previous token into a 'prev' subspace; "
            f"{_name(INDUCTION_HEAD)} K-composes with it (query: current token, keys: 'prev') and copies "
            "the token after the earlier occurrence into the only subspace the unembedding reads. "
            "Distractors write unit-norm codes into subspaces nobody reads: patching or resampling them has "
            "no effect; mean or zero ablation shrinks the residual norm and moves the metric by a few per cent."
        ),
    }


def build_planted_induction(out_dir: str | Path, card: bool = True) -> Path:
    """Write the HF folder (config, weights, tokenizer, ground_truth.json and, with ``card``, a
    MODEL_CARD.md with detector scores and patching effects measured on the result)."""
    from safetensors.torch import save_file

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(build_state_dict(), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config(), indent=2) + "\n")
    (folder / "ground_truth.json").write_text(json.dumps(ground_truth(), indent=2) + "\n")
    save_word_tokenizer(VOCAB, folder, bos=ENDOFTEXT, unk=UNK, max_length=N_CTX)
    if card:
        from circuitscope.organisms.planted_card import write_card

        write_card(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the hand-set circuitscope/planted-induction organism.")
    parser.add_argument("--out", required=True, help="folder to write the organism into")
    parser.add_argument("--no-card", action="store_true", help="skip measuring and writing MODEL_CARD.md")
    args = parser.parse_args(argv)
    print(f"wrote {build_planted_induction(args.out, card=not args.no_card)}")


if __name__ == "__main__":
    main()
