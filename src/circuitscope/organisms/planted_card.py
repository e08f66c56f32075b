"""Measure the planted-induction organism and write its MODEL_CARD.md.

:func:`measure` loads a built folder through ``HookedTransformer.from_pretrained`` and records the
behaviour, the head detectors and the patching effects that the card (and the tests) rely on;
:func:`write_card` renders them, so the card's numbers always come from the weights it describes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from circuitscope.organisms import planted

__all__ = ["measure", "write_card", "SEED", "SEQ_LEN", "BATCH"]

SEED, SEQ_LEN, BATCH = 0, 20, 32  # induction_task(model, seq_len=20, batch=32, seed=0)


def _heads_of(values: torch.Tensor) -> dict[str, float]:
    """``[layer, head]`` values as ``{"L0H2": value}``."""
    return {f"L{l}H{h}": float(values[l, h]) for l in range(values.shape[0]) for h in range(values.shape[1])}


def measure(folder: str | Path) -> dict[str, Any]:
    """Span log-probs, detector scores and patching effects of the model in ``folder``.

    Effects are per head (``"L1H1"``): ``denoise_AB`` / ``noise_AB`` are ``sweep(model, task, "z",
    by="all")`` on the AB task (1 = clean, 0 = corrupted; a noising effect is its value minus 1),
    ``path_k_BA`` is ``path_patch`` of each sender into the induction head's keys on the BA task
    (0 = no effect, -1 = the whole clean -> corrupted drop).
    """
    from circuitscope import HookedTransformer, patching
    from circuitscope.analysis import detect_heads
    from circuitscope.tasks import induction_task
    from circuitscope.tasks.metrics import task_span_log_prob

    model = HookedTransformer.from_pretrained(str(folder), device="cpu")
    tasks = {c: induction_task(model, seq_len=SEQ_LEN, batch=BATCH, corruption=c, seed=SEED) for c in ("AB", "BA")}
    out: dict[str, Any] = {}
    with torch.no_grad():
        for c, task in tasks.items():
            out[f"logprob_{c}"] = {run: task_span_log_prob(model(getattr(task, f"{run}_tokens")), task).item()
                                   for run in ("clean", "corrupted")}
    detected = detect_heads(model, ci=False)  # 100 x [BOS] A A, len(A) = 20, generator seed 0
    out["detectors"] = {kind: _heads_of(result.values) for kind, result in detected.items()}
    kw = dict(by="all", progress=False)
    out["denoise_AB"] = _heads_of(patching.sweep(model, tasks["AB"], "z", direction="denoise", **kw).values)
    noised = patching.sweep(model, tasks["AB"], "z", direction="noise", **kw).values
    out["noise_AB"] = _heads_of(noised - 1.0)
    path = patching.path_patch(model, tasks["BA"], receivers=[planted.INDUCTION_HEAD], receiver_input="k",
                               progress=False)
    out["path_k_BA"] = _heads_of(path.values)
    return out


_TEMPLATE = """\
# circuitscope/planted-induction

A 2-layer, attention-only GPT-2 (`GPT2LMHeadModel`, d_model {d_model}, {n_heads} heads of {d_head}
dims, n_ctx {n_ctx}, vocabulary {vocab}) whose weights are **set by hand, not trained**, so that its
induction circuit is known by construction. It is the ground truth for checking automatic circuit
discovery: `ground_truth.json` lists the planted heads and what every other head does.

Load it with `HookedTransformer.from_pretrained("circuitscope/planted-induction")` or, as a plain
model, `transformers.AutoModelForCausalLM.from_pretrained(<this folder>)` (same logits).

## The circuit

| head | role | mechanism |
|---|---|---|
| {prev} | previous token | query: position i moved back one place; key: position j. Copies token i-1 into the `prev` subspace. |
| {ind} | induction | query: current token (`tok`); key: `prev` (**K-composition** with {prev}); falls back to BOS when nothing matches. Copies the attended token into `out`, the only subspace the unembedding reads. |

On `[BOS] A A` the second copy is predicted by induction. The only losses come from tokens that
occur more than once in A (the head then averages the continuations of every earlier occurrence).

## Distractors (no effect under patching, by construction)

{distractor_table}

Each writes into a 3-dim subspace of its own that no later weight reads, a code of constant norm,
so patching it (or resampling it from another prompt) reaches the logits not even through
LayerNorm. Mean or zero ablation is the exception: it shrinks that code, the residual norm drops
and the fixed LayerNorm gain no longer matches, so ablating distractors that way moves the
induction metric by a few per cent (faithfulness of the planted circuit 0.96-0.98 with mean
ablation, 1.00 with resample ablation).

## Construction

{construction}

## Measured (induction_task(model, seq_len={seq_len}, batch={batch}, seed={seed}))

Mean log-prob per token of the second copy: clean {lp_clean:.3f}, corrupted AB {lp_ab:.3f},
corrupted BA {lp_ba:.3f}.

| head | prev-token score | duplicate-token score | induction score | denoise z (AB) | noise z (AB) | path -> {ind} keys (BA) |
|---|---|---|---|---|---|---|
{effect_table}

Detector scores: `detect_heads(model)` (100 x `[BOS] A A`, len(A) = 20, seed 0). Patching:
`patching.sweep(model, task, "z", by="all")` (1 = clean, 0 = corrupted; the noising column is the
change from 1), `patching.path_patch(model, task, receivers=[{ind_tuple}], receiver_input="k")`
(0 = no effect, -1 = the whole clean -> corrupted drop). Largest distractor effect in any column:
{max_distractor:.1e}.

## Rebuild

`python -m circuitscope.organisms.planted --out <folder>` writes this folder (the weights are
bit-for-bit deterministic; this card is measured on the result). Source:
`circuitscope/organisms/planted.py`.
"""


def write_card(folder: str | Path) -> Path:
    """Measure the model in ``folder`` and write ``folder/MODEL_CARD.md``."""
    folder = Path(folder)
    m = measure(folder)
    gt = planted.ground_truth()
    names = sorted(m["denoise_AB"])
    distractors = [n for n in names if n in gt["distractors"]]
    det = m["detectors"]
    fmt = lambda x: f"{x + 0.0:+.3f}".replace("-0.000", "+0.000")  # noqa: E731
    rows = []
    for n in names:
        role = gt["roles"].get(n)
        label = f"**{n}** ({role})" if role else n
        path = fmt(m["path_k_BA"][n]) if int(n[1]) < planted.INDUCTION_HEAD[0] else "n/a (same layer)"
        rows.append(f"| {label} | {det['previous_token'][n]:.3f} | {det['duplicate_token'][n]:.3f} | "
                    f"{det['induction'][n]:.3f} | {fmt(m['denoise_AB'][n])} | {fmt(m['noise_AB'][n])} | {path} |")
    max_distractor = max(abs(m[k][n]) for k in ("denoise_AB", "noise_AB", "path_k_BA") for n in distractors)
    doc = planted.__doc__
    construction = re.sub(r":\w+:`([^`]+)`", r"`\1`", doc[doc.index("**Codes**"):].strip())  # Sphinx roles
    text = _TEMPLATE.format(
        d_model=planted.D_MODEL, n_heads=planted.N_HEADS, d_head=planted.D_HEAD, n_ctx=planted.N_CTX,
        vocab=planted.N_VOCAB, prev=planted._name(planted.PREV_HEAD), ind=planted._name(planted.INDUCTION_HEAD),
        ind_tuple=tuple(planted.INDUCTION_HEAD),
        distractor_table="\n".join(f"- **{n}**: {text}" for n, text in gt["distractors"].items()),
        construction=construction, seq_len=SEQ_LEN, batch=BATCH, seed=SEED,
        lp_clean=m["logprob_AB"]["clean"], lp_ab=m["logprob_AB"]["corrupted"], lp_ba=m["logprob_BA"]["corrupted"],
        effect_table="\n".join(rows), max_distractor=max_distractor,
    )
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
