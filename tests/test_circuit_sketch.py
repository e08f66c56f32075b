"""The circuit sketch: role rules on constructed numbers, and what it finds on the organisms."""

import pytest
import torch

from circuitscope import HookedTransformer
from circuitscope.circuit.estimate import Estimate
from circuitscope.circuit.roles import HeadFacts, SketchConfig, assign_role, detector_matches
from circuitscope.circuit.sketch import sketch_circuit
from circuitscope.tasks import induction_task, ioi_task

CFG = SketchConfig()
HELPS = Estimate(-0.4, (-0.45, -0.35))
HURTS = Estimate(0.2, (0.15, 0.25))
STRONG = Estimate(0.9, (0.85, 0.95))
WEAK = Estimate(0.1, (0.05, 0.15))
NOISY = Estimate(0.6, (0.2, 0.95))  # a high mean whose interval reaches far below the threshold


def role(level, effect=HELPS, correct=None, incorrect=None, depth=1, **detectors):
    return assign_role(HeadFacts(level, effect, correct, incorrect, detectors, depth), CFG)[0]


# ------------------------------------------------------------------ role rules on constructed facts

def test_direct_heads_are_movers_or_suppressors_by_which_answer_they_move():
    assert role("direct", correct=Estimate(3.0, (2.5, 3.5)), incorrect=Estimate(-0.5, (-0.9, -0.1))) == "mover"
    assert role("direct", correct=Estimate(0.5, (0.1, 0.9)), incorrect=Estimate(-3.0, (-3.5, -2.5))) == "suppressor"
    # lowering the incorrect answer must itself be significant to call a head a suppressor
    # neither answer's logit moves significantly on its own: no mover/suppressor label
    assert role("direct", correct=Estimate(0.2, (-0.5, 0.9)), incorrect=Estimate(-1.0, (-2.5, 0.3))) == "direct"
    # both move, lowering dominates only in the point estimate of a small share: mover
    assert role("direct", correct=Estimate(2.0, (1.5, 2.5)), incorrect=Estimate(-0.5, (-0.9, -0.1))) == "mover"
    assert role("direct", effect=HURTS, correct=Estimate(-2.0, (-2.5, -1.5)), incorrect=Estimate(0.1, (0.0, 0.2))) == "negative mover"
    assert role("direct") == "direct"  # no answer split (span task): writes directly, mechanism unnamed


def test_detectors_name_roles_only_with_a_confident_score():
    assert role("direct", induction=STRONG) == "induction"
    assert role("direct", induction=NOISY) == "direct"  # the interval's low end is under 0.8 x threshold
    assert role("k", previous_token=STRONG, duplicate_token=WEAK) == "previous token"
    assert role("v", duplicate_token=STRONG) == "duplicate token"
    assert role("v", duplicate_token=NOISY) == "feeder"
    assert detector_matches({"induction": Estimate(0.95, (0.9, 0.97)), "previous_token": STRONG}, CFG) == ["induction", "previous_token"]


def test_feeders_inhibition_and_backup():
    assert role("q") == "inhibition"
    assert role("q", depth=2) == "feeder"
    assert role("k") == "feeder"
    assert role("backup", effect=Estimate(0.8, (0.5, 1.1))) == "backup"
    with pytest.raises(ValueError, match="unknown level"):
        role("sideways")


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="direct_threshold"):
        SketchConfig(direct_threshold=0)
    with pytest.raises(ValueError, match="ablation"):
        SketchConfig(ablation="median")


# ------------------------------------------------------------------ the organisms

FAST = SketchConfig(n_resamples=200, n_detector_prompts=30)


@pytest.fixture(scope="module")
def ioi_circuit():
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    return sketch_circuit(model, ioi_task(model, N=40, seed=1), FAST, progress=False)


def test_ioi_organism_writes_through_subject_suppressing_layer3_heads(ioi_circuit):
    c = ioi_circuit
    assert {(3, 3), (3, 0)} <= set(c.by_role("suppressor"))
    assert c.by_role("mover") == [] and c.by_role("inhibition") == []
    for label in ("L3H3", "L3H0"):
        rec = c.records[label]
        assert rec.score.value < -0.1 and rec.score.ci[1] < 0
        assert {e.figure for e in rec.evidence} >= {"direct_path", "dla", "head_output_patching"}
    text = " ".join(c.description)
    assert "suppressors" in text and "S2" in text and "incorrect answer" in text
    assert "No head drives the direct heads' queries" in text
    # their values are fed by layer-0 heads (path patching into v), and every edge is significant
    assert c.records["L0H2"].level == "v@1"
    assert all(e.effect.excludes_zero for e in c.edges)
    data = c.to_dict()
    assert data["roles"]["L3H3"] == "suppressor" and [3, 3] in data["heads"]


def test_a_high_threshold_leaves_no_direct_heads():
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    c = sketch_circuit(model, ioi_task(model, N=16, seed=2), SketchConfig(direct_threshold=5.0, n_resamples=100,
                                                                         n_detector_prompts=10), progress=False)
    assert c.heads == []
    assert any("No head writes the answer directly" in s for s in c.description)


def test_attn_only_induction_heads_are_the_heads_whose_output_restores_most():
    model = HookedTransformer.from_pretrained("circuitscope/attn-only-2l")
    task = induction_task(model, seq_len=12, batch=24, corruption="BA", seed=0)
    c = sketch_circuit(model, task, FAST, progress=False)
    induction = c.results["detector_induction"].values[1]  # layer 1: [head]
    restore = c.results["head_output_patching"].values[1]
    top_score = set(induction.argsort(descending=True)[:2].tolist())
    top_restore = set(restore.argsort(descending=True)[:2].tolist())
    assert top_score == top_restore
    for h in top_score:
        assert c.records[f"L1H{h}"].role == "induction"
    assert c.records["L0H3"].role == "previous token"
    assert c.records["L0H3"].level == "k@1"


def test_planted_induction_circuit_is_recovered_exactly():
    from circuitscope.circuit.ground_truth import discovery_scores, load_ground_truth

    model = HookedTransformer.from_pretrained("circuitscope/planted-induction")
    truth = load_ground_truth("circuitscope/planted-induction")
    task = induction_task(model, seq_len=16, batch=24, corruption="BA", seed=3)
    c = sketch_circuit(model, task, FAST, progress=False)
    scores = discovery_scores(c.heads, c.roles, truth)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["role_accuracy"] == 1.0
    # the decoys score high on a detector but change nothing, so none is labelled
    detectors = c.results["detector_previous_token"].values
    assert detectors[1, 0] > 0.9 and "L1H0" not in c.records


def test_discovery_scores_count_misses_and_extras():
    from circuitscope.circuit.ground_truth import discovery_scores

    truth = {"heads": [[0, 2], [1, 1]], "roles": {"L0H2": "previous token", "L1H1": "induction"}}
    s = discovery_scores([(1, 1), (1, 3)], {"L1H1": "mover", "L1H3": "feeder"}, truth)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["role_accuracy"] == 0.0
    assert s["missed"] == [[0, 2]] and s["extra"] == [[1, 3]]


def test_a_task_the_model_fails_is_refused():
    model = HookedTransformer.from_pretrained("circuitscope/ioi")
    task = ioi_task(model, N=8, seed=0)
    task.answer_tokens = task.answer_tokens.flip(1)  # (incorrect, correct): clean now scores below corrupted
    with pytest.raises(ValueError, match="does not do this task.*clean must be higher"):
        sketch_circuit(model, task, FAST, progress=False)


def test_untouched_heads_have_exactly_zero_effect(ioi_circuit):
    # senders in the receivers' layer or later cannot reach them: paired effect exactly 0, interval [0, 0]
    res = ioi_circuit.results["path_q_depth1"]
    assert bool((res.values[3] == 0).all()) and bool((res.ci[0][3] == 0).all() and (res.ci[1][3] == 0).all())
