"""Plain sentences that say what a sketched circuit does, generated only from its numbers.

The text names the direct heads and how they write the answer (raising the correct answer or
suppressing the incorrect one, and where they look), which heads drive them, and whether
anything takes over when they are knocked out. A negative finding is stated too ("no head
drives their queries"), with the largest effect that fell under the threshold.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["describe"]

_INPUT_WORDS = {"q": "queries", "k": "keys", "v": "values"}


def _names(records) -> str:
    return ", ".join(f"{r.label} ({r.role}, {r.score:.2f})" for r in records)


def _attention_sentence(rec, attn) -> Optional[str]:
    result, holds = attn
    layer, head = rec.layer, rec.head
    weights = result.values[:, layer, head]  # [key]
    k = int(weights.argmax())
    label = result.meta["keys"][k]
    w = float(weights[k])
    if w < 0.3:
        return f"{rec.label} spreads its attention from the end (at most {w:.2f} on any labelled position)."
    share = holds[label]
    what = ""
    if share["incorrect"] >= 0.9:
        what = f"; {label} holds the incorrect answer in {share['incorrect']:.0%} of prompts"
    elif share["correct"] >= 0.9:
        what = f"; {label} holds the correct answer in {share['correct']:.0%} of prompts"
    return f"{rec.label} attends from the end to {label} ({w:.2f} of its attention{what})."


def describe(circuit, attn: Optional[tuple[Any, dict]] = None, split: Optional[dict] = None) -> list[str]:
    """The description sentences of ``circuit`` (see the module docstring)."""
    cfg = circuit.config
    metric = "logit difference" if split is not None else "task metric (mean log-probability of the scored tokens)"
    out = [f"The {metric} is {circuit.baselines['clean']:.3g} on the clean prompts and "
           f"{circuit.baselines['corrupted']:.3g} on the corrupted ones."]
    recs = sorted(circuit.records.values(), key=lambda r: (-r.layer, r.head))
    direct = [r for r in recs if r.level == "direct"]
    if not direct:
        res = circuit.results["direct_path"]
        big = int((res.values.abs() >= cfg.direct_threshold).sum())
        if big:
            why = "their interval includes 0 or their direct logit attribution disagrees" if split is not None \
                else "their interval includes 0"
            out.append(f"No head writes the answer directly: {big} head(s) reach |direct-path effect| >= "
                       f"{cfg.direct_threshold} (largest {float(res.values.abs().max()):.3f}), but {why}.")
        else:
            out.append(f"No head writes the answer directly: the largest |direct-path effect| is "
                       f"{float(res.values.abs().max()):.3f}, under the threshold {cfg.direct_threshold}.")
    else:
        out.append(f"Heads that write the answer directly (direct-path effect, fraction of the clean-corrupted "
                   f"gap; negative = the head helps): {_names(direct)}.")
        if attn is not None:
            out += [s for r in direct if r.role in ("mover", "suppressor", "direct", "negative mover")
                    for s in [_attention_sentence(r, attn)] if s]
        helpers = [r for r in direct if r.score.value < 0]
        total = sum(-r.score.value for r in helpers)
        if helpers and total > 0:
            shares = {role: sum(-r.score.value for r in helpers if r.role == role) / total
                      for role in ("suppressor", "mover", "induction")}
            top = max(shares, key=shares.get)
            heads = ", ".join(r.label for r in helpers if r.role == top)
            if top == "suppressor" and shares[top] > 0.5:
                contrast = (", unlike GPT-2 small's name movers, which copy the indirect object"
                            if circuit.task.startswith("ioi") else "")
                out.append(f"Most of the direct effect ({shares[top]:.0%}) comes through suppressors ({heads}): "
                           f"they push the incorrect answer down rather than copying the correct one up{contrast}.")
            elif top == "mover" and shares[top] > 0.5:
                out.append(f"Most of the direct effect ({shares[top]:.0%}) comes through movers ({heads}) "
                           f"that raise the correct answer's logit.")
            elif top == "induction" and shares[top] > 0.5:
                out.append(f"Most of the direct effect ({shares[top]:.0%}) comes through induction heads ({heads}).")
    for depth in range(1, cfg.max_depth + 1):
        for inp in "qkv":
            name = f"path_{inp}_depth{depth}"
            if name not in circuit.results:
                continue
            found = circuit.drivers.get(name, [])
            whose = "the direct heads'" if depth == 1 else f"the depth-{depth - 1} heads'"
            if found:
                named = ", ".join(f"{label} ({circuit.records[label].role}, {e:.2f})" if label in circuit.records
                                  else f"{label} ({e:.2f})" for label, e in found)
                out.append(f"Heads driving {whose} {_INPUT_WORDS[inp]}: {named}.")
            else:
                res = circuit.results[name]
                out.append(f"No head drives {whose} {_INPUT_WORDS[inp]}: none has |effect| >= {cfg.path_threshold} "
                           f"with a {cfg.confidence:.0%} interval excluding 0 "
                           f"(largest |effect| {float(res.values.abs().max()):.3f}).")
    if "backup" in circuit.results:
        meta = circuit.results["backup"].meta
        backups = [r for r in recs if r.role == "backup"]
        knocked = ", ".join(f"L{l}H{h}" for l, h in meta["knocked_out"])
        moved = (f"Knocking out the direct heads that help ({knocked}; {cfg.ablation} ablation) moves the logit "
                 f"difference from {meta['logit_diff_before']:.3g} to {meta['logit_diff_after']:.3g}")
        if backups:
            out.append(f"{moved}; these heads take over part of the work (DLA rise): {_names(backups)}.")
        else:
            out.append(f"{moved}, and no head's direct effect rises significantly: no backup heads.")
    return out
