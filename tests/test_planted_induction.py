"""The hand-set ``circuitscope/planted-induction`` organism: shipped weights are what the builder
writes, and the planted circuit (L0H2 previous-token -> L1H1 induction, by K-composition) is the
only thing with a causal effect on induction."""

import json

import pytest
import torch

from circuitscope import HookedTransformer, patching
from circuitscope.analysis import detect_heads
from circuitscope.organisms import ORGANISMS, organism_path, planted
from circuitscope.tasks import induction_task
from circuitscope.tasks.metrics import task_span_log_prob

NAME = "circuitscope/planted-induction"
GT = json.loads((organism_path(NAME) / "ground_truth.json").read_text())
PREV, IND = (tuple(h) for h in GT["heads"])
DISTRACTORS = [(int(n[1]), int(n[3])) for n in GT["distractors"]]  # "L0H1" -> (0, 1)


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained(NAME, device="cpu")


@pytest.fixture(scope="module")
def task_ab(model):
    return induction_task(model, seq_len=20, batch=32, corruption="AB")


def _max_distractor(values: torch.Tensor) -> float:
    return max(abs(float(values[h])) for h in DISTRACTORS)


def test_ground_truth_file():
    assert set(GT) == {"task", "heads", "roles", "distractors", "description"}
    assert GT["task"] == "induction" and GT["heads"] == [[0, 2], [1, 1]]
    assert GT["roles"] == {"L0H2": "previous token", "L1H1": "induction"}
    every = {f"L{l}H{h}" for l in range(2) for h in range(4)}
    assert set(GT["distractors"]) == every - set(GT["roles"])
    assert ORGANISMS[NAME] == "planted-induction"


def test_rebuild_is_byte_identical(tmp_path):
    built = planted.build_planted_induction(tmp_path / "planted", card=False)
    shipped = organism_path(NAME)
    assert (built / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()
    for name in ("ground_truth.json", "config.json"):
        assert json.loads((built / name).read_text()) == json.loads((shipped / name).read_text())
    assert (shipped / "model.safetensors").stat().st_size < 700_000
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "L0H2" in card and "L1H1" in card and "python -m circuitscope.organisms.planted" in card


def test_missing_folder_says_how_to_build(monkeypatch):
    monkeypatch.setitem(ORGANISMS, NAME, "no-such-folder")
    with pytest.raises(FileNotFoundError, match="python -m circuitscope.organisms.planted --out"):
        organism_path(NAME)


def test_tokenizer_words_are_single_tokens(model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(organism_path(NAME))
    assert len(tok) == model.cfg.d_vocab == 242 and tok.bos_token_id == 0
    assert sorted(tok.all_special_ids) == [0, 241]
    assert tok("bake badi bake").input_ids == [1, 2, 1]
    assert model.to_str_tokens("bake badi") == ["<|endoftext|>", "bake", "badi"]


def test_loads_exactly_like_hf(model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(organism_path(NAME)).eval()
    raw = HookedTransformer.from_pretrained_no_processing(NAME, device="cpu")
    tokens = induction_task(model, seq_len=25, batch=16, corruption="BC", seed=3).clean_tokens
    gen = torch.Generator().manual_seed(0)
    distinct = torch.stack([torch.randperm(240, generator=gen)[:25] + 1 for _ in range(16)])  # no repeats
    no_ties = torch.cat([torch.zeros(16, 1, dtype=torch.long), distinct, distinct], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(raw(tokens), hf(tokens).logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(model(no_ties), hf(no_ties).logits, atol=1e-4, rtol=0)
        # A token with two earlier occurrences splits the induction head 0.5 / 0.5 between keys whose
        # scores differ only by rounding; weight processing changes that rounding, and the sharp
        # hand-set scores turn it into logit differences of ~1e-4.
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-3, rtol=0)


def test_predicts_the_second_copy(model, task_ab):
    with torch.no_grad():
        clean = task_span_log_prob(model(task_ab.clean_tokens), task_ab).item()
        corrupted = task_span_log_prob(model(task_ab.corrupted_tokens), task_ab).item()
    assert clean > -0.5  # measured -0.298: the only errors are tokens repeated within A
    assert corrupted < clean - 5  # measured -6.52


def test_detectors(model):
    scores = {k: r.values for k, r in detect_heads(model, ci=False).items()}
    prev, dup, ind = scores["previous_token"], scores["duplicate_token"], scores["induction"]
    assert prev[PREV] > 0.99 and ind[IND] > 0.99
    assert dup[PREV] < 0.05 and ind[PREV] < 0.05 and prev[IND] < 0.05 and dup[IND] < 0.05
    # decoys for detector-based labelling: a layer-1 previous-token head and a same-token head
    assert prev[1, 0] > 0.99 and ind[1, 0] < 0.05
    assert 0.4 < dup[0, 1] < 0.6  # attends to itself as much as to the earlier copy
    for head in [(0, 0), (0, 3), (1, 2), (1, 3)]:  # sinks, current token, first token
        assert max(prev[head], dup[head], ind[head]) < 0.1


def test_distractors_attend_as_documented(model, task_ab):
    with torch.no_grad():
        _, cache = model.run_with_cache(task_ab.clean_tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = {(l, h): cache[f"blocks.{l}.attn.hook_pattern"][:, h] for l in range(2) for h in range(4)}  # [b, q, k]
    n = task_ab.clean_tokens.shape[1]
    assert pattern[0, 0][..., 0].min() > 0.99 and pattern[1, 2][..., 0].min() > 0.99  # BOS sinks
    assert pattern[0, 3].diagonal(dim1=-2, dim2=-1).min() > 0.99  # current token
    assert pattern[1, 3][:, 1:, 1].min() > 0.99  # first token after BOS
    assert pattern[PREV].diagonal(offset=-1, dim1=-2, dim2=-1).min() > 0.99
    assert pattern[1, 0].diagonal(offset=-1, dim1=-2, dim2=-1).min() > 0.99
    assert n == 41


def test_activation_patching(model, task_ab):
    denoise = patching.sweep(model, task_ab, "z", by="all", progress=False).values  # [layer, head]
    assert denoise[IND] >= 0.8
    assert _max_distractor(denoise) < 0.02
    noise = patching.sweep(model, task_ab, "z", by="all", direction="noise", progress=False).values - 1.0
    assert noise[IND] <= -0.8
    assert _max_distractor(noise) < 0.02


def test_path_patching_into_induction_keys(model):
    task = induction_task(model, seq_len=20, batch=32, corruption="BA")
    effect = patching.path_patch(model, task, receivers=[IND], receiver_input="k", progress=False).values
    assert effect[PREV] <= -0.5  # measured -0.98
    assert _max_distractor(effect) < 0.02
    denoise = patching.sweep(model, task, "z", by="all", progress=False).values
    assert denoise[IND] >= 0.8 and _max_distractor(denoise) < 0.02
