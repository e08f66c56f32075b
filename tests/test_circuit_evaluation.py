"""Circuit evaluation (faithfulness, completeness, minimality, curves) against cases whose answer
is known and against hand-written hooks."""

import copy
import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
import torch

from circuitscope import HookedTransformer
from circuitscope.analysis.bootstrap import Bootstrap
from circuitscope.circuit.completeness import completeness, minimality
from circuitscope.circuit.curve import curve_areas, curve_sizes, faithfulness_curve
from circuitscope.circuit.evaluate import (
    CircuitEvaluation, evaluate_circuit, faithfulness, normalized_faithfulness,
)
from circuitscope.circuit.node_ablation import CircuitAblation
from circuitscope.tasks import induction_task, ioi_task

FAST = dict(ci=False, progress=False)


def all_heads(model):
    return [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These runs are small: on a shared, busy machine two threads waiting on each other cost far
    more than they gain (10x slower measured), so this module runs on one and restores the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ioi_model():
    return HookedTransformer.from_pretrained("circuitscope/ioi")


@pytest.fixture(scope="module")
def ioi(ioi_model):
    return ioi_task(ioi_model, N=24, seed=0)


@pytest.fixture(scope="module")
def tiny(small_random_model):
    return small_random_model


@pytest.fixture(scope="module")
def tiny_task(tiny):
    return ioi_task(tiny, N=10, seed=1)


def run_hooked(model, task, hooks):
    with torch.no_grad():
        logits = model.run_with_hooks(task.clean_tokens, fwd_hooks=hooks)
    return task.logit_diff(logits, per_prompt=True).double()


# --------------------------------------------------------------------------- known answers
def test_full_model_as_circuit_is_exactly_faithful(ioi_model, ioi):
    ev = evaluate_circuit(ioi_model, ioi, all_heads(ioi_model), n_random=2, greedy=1, minimality=False,
                          progress=False, ci=Bootstrap(n_resamples=200))
    assert ev.faithfulness.value == 1.0 and ev.faithfulness.ci == (1.0, 1.0)
    assert ev.normalized_faithfulness.value == 1.0 and ev.normalized_faithfulness.ci == (1.0, 1.0)
    assert ev.faithfulness_kind == "ratio" and ev.metric == "logit difference"
    assert ev.circuit_value == ev.model_value
    # Complete by construction: C \ K is M \ K for every K.
    assert all(p.score.value == 0.0 for p in ev.completeness.points)
    assert ev.completeness.score.value == 0.0
    # The full model's F(M) is the plain forward pass's logit difference.
    with torch.no_grad():
        expected = ioi.logit_diff(ioi_model(ioi.clean_tokens)).item()
    assert ev.model_value.value == pytest.approx(expected, abs=1e-4)


def test_everything_mean_ablated_against_one_corrupted_prompt_is_that_run(ioi_model):
    task = ioi_task(ioi_model, N=40, seed=1)
    same = (task.answer_pos == task.answer_pos[0]).nonzero().flatten()[:6]
    sub = task.subset(same)
    n = len(sub)
    one = dataclasses.replace(
        sub, corrupted_tokens=sub.corrupted_tokens[:1].repeat(n, 1),
        corrupted_answer_pos=sub.corrupted_answer_pos[:1].repeat(n),
        corrupted_prompts=sub.corrupted_prompts[:1] * n,
    )
    with torch.no_grad():
        expected = one.logit_diff(ioi_model(one.corrupted_tokens), per_prompt=True).double()
        clean = one.logit_diff(ioi_model(one.clean_tokens), per_prompt=True).double()
    runner = CircuitAblation(ioi_model, one, "mean", "all")
    got = runner.score(runner.space.empty())
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)
    assert (got - clean).abs().max() > 1  # the ablation really changed the run
    ev = evaluate_circuit(ioi_model, one, [], nodes="all", completeness=False, minimality=False, **FAST)
    assert ev.circuit_value.value == pytest.approx(expected.mean().item(), abs=2e-4)
    assert ev.n_nodes == 16 + 4 + 1


def test_zero_ablation_equals_a_hook_that_zeroes(tiny, tiny_task):
    circuit = [h for h in all_heads(tiny) if h not in [(1, 2), (0, 0)]] + ["MLP1"]

    def zero_heads(z, hook):
        z = z.clone()
        if hook.name == "blocks.1.attn.hook_z":
            z[:, :, 2] = 0
        else:
            z[:, :, 0] = 0
        return z

    def zero_mlp(out, hook):
        return torch.zeros_like(out)

    expected = run_hooked(tiny, tiny_task, [("blocks.1.attn.hook_z", zero_heads), ("blocks.0.attn.hook_z", zero_heads),
                                            ("blocks.0.hook_mlp_out", zero_mlp)])
    runner = CircuitAblation(tiny, tiny_task, "zero", "heads+mlps")
    got = runner.score(runner.space.mask(runner.space.parse(circuit)))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert runner.cost["reference"]["forward_passes"] == 0  # zero ablation needs no reference run
    labels = [f"L{n[0]}H{n[1]}" if isinstance(n, tuple) else n for n in circuit]  # the same circuit, as labels
    ev = evaluate_circuit(tiny, tiny_task, labels, method="zero", nodes="heads+mlps", completeness=False,
                          minimality=False, **FAST)
    assert ev.circuit_value.value == pytest.approx(expected.mean().item(), abs=1e-4)


def test_resample_copies_other_prompts_activations(tiny, tiny_task):
    runner = CircuitAblation(tiny, tiny_task, "resample", seed=5)
    src = runner.source.cpu()
    need, have = tiny_task.answer_pos, tiny_task.corrupted_answer_pos
    assert (have[src] >= need).all()  # long enough to copy no padding
    others = (have[None, :] >= need[:, None]) & ~torch.eye(len(need), dtype=torch.bool)  # [prompt, source]
    assert others.any(1).sum() >= len(need) - 2
    assert (src != torch.arange(len(need)))[others.any(1)].all()  # another prompt, wherever one is long enough
    with torch.no_grad():
        _, cache = tiny.run_with_cache(tiny_task.corrupted_tokens, names_filter=lambda n: n.endswith("hook_z"))

    def resample(z, hook):
        z = z.clone()
        z[:, :, 1] = cache[hook.name][src][:, : z.shape[1], 1]
        return z

    expected = run_hooked(tiny, tiny_task, [("blocks.0.attn.hook_z", resample)])
    circuit = [h for h in all_heads(tiny) if h != (0, 1)]
    got = runner.score(runner.space.mask(circuit))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # Seeded: the same seed draws the same sources, another seed others; the global RNG is untouched.
    state = torch.random.get_rng_state()
    assert torch.equal(CircuitAblation(tiny, tiny_task, "resample", seed=5).source, runner.source)
    assert not torch.equal(CircuitAblation(tiny, tiny_task, "resample", seed=6).source, runner.source)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_per_position_means_leave_padding_out(ioi_model, ioi):
    assert not (ioi.corrupted_answer_pos == ioi.corrupted_answer_pos[0]).all()  # padded: lengths differ
    runner = CircuitAblation(ioi_model, ioi, "mean")
    with torch.no_grad():
        _, cache = ioi_model.run_with_cache(ioi.corrupted_tokens, names_filter="blocks.2.attn.hook_z")
    z = cache["blocks.2.attn.hook_z"]  # [batch, pos, head, d_head]
    width = runner.width
    manual = torch.stack([z[ioi.corrupted_answer_pos >= p, p].mean(0) for p in range(width)])  # [pos, head, d_head]
    torch.testing.assert_close(runner.replacement["blocks.2.attn.hook_z"], manual, atol=1e-5, rtol=1e-5)
    naive = z[:, :width].mean(0)
    assert (naive - manual).abs().max() > 1e-3  # including the padding would give other means

    def mean_ablate(act, hook):
        act = act.clone()
        act[:, :width, 1] = manual[None, :, 1]
        return act

    expected = run_hooked(ioi_model, ioi, [("blocks.2.attn.hook_z", mean_ablate)])
    got = runner.score(runner.space.mask([h for h in all_heads(ioi_model) if h != (2, 1)]))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_batching_and_stacking_do_not_change_numbers(ioi_model, ioi):
    circuits = [[(3, 3), (3, 0)], [(3, 3)], all_heads(ioi_model)[:9]]
    whole = CircuitAblation(ioi_model, ioi, "mean")
    small = CircuitAblation(ioi_model, ioi, "mean", batch_size=7)
    for c in circuits:
        torch.testing.assert_close(whole.score(whole.space.mask(c)), small.score(small.space.mask(c)),
                                   atol=1e-4, rtol=1e-4)
    assert whole.forward_passes == 1 + 3  # reference + one pass per call
    assert small.forward_passes == math.ceil(len(ioi) / 7) * 4
    # Asking again runs nothing: circuits are cached.
    whole.score(whole.space.mask(circuits[0]))
    assert whole.forward_passes == 4
    # Several new circuits stacked in one call share forward passes (and show a progress bar).
    masks = torch.stack([small.space.mask(c) for c in ([(0, 0)], [(1, 1)], [(2, 2)])])
    before = small.forward_passes
    stacked = small.scores(masks, progress=True)  # [circuit, prompt]
    assert small.forward_passes - before == math.ceil(3 * len(ioi) / 7)
    torch.testing.assert_close(stacked[1], whole.score(whole.space.mask([(1, 1)])), atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- faithfulness
def test_faithfulness_functions_agree_with_the_evaluation(ioi_model, ioi):
    circuit = [(3, 3), (3, 0), (2, 1)]
    ev = evaluate_circuit(ioi_model, ioi, circuit, completeness=False, minimality=False, progress=False)
    f = faithfulness(ioi_model, ioi, circuit)
    nf = normalized_faithfulness(ioi_model, ioi, circuit)
    assert f == ev.faithfulness and nf == ev.normalized_faithfulness
    assert f.value == pytest.approx(ev.circuit_value.value / ev.model_value.value)
    fe = ev.empty_value.value
    assert nf.value == pytest.approx((ev.circuit_value.value - fe) / (ev.model_value.value - fe))
    assert f.ci[0] <= f.value <= f.ci[1]
    assert ev.cost["faithfulness"]["forward_passes"] == 1 and ev.cost["faithfulness"]["circuits"] == 3
    empty = normalized_faithfulness(ioi_model, ioi, [], ci=False)
    assert empty.value == 0.0
    sketched = SimpleNamespace(heads=circuit)  # a sketched Circuit is read through its .heads
    assert faithfulness(ioi_model, ioi, sketched) == f


def test_span_tasks_report_normalized_faithfulness():
    model = HookedTransformer.from_pretrained("circuitscope/attn-only-2l")
    task = induction_task(model, seq_len=8, batch=8, corruption="BA")
    circuit = [(1, h) for h in range(4)] + [(0, h) for h in range(4)]
    ev = evaluate_circuit(model, task, circuit[:5], n_random=2, greedy=1, nodes="heads+mlps", **FAST)
    assert ev.faithfulness_kind == "normalized" and ev.metric == "span log-probability"
    assert ev.faithfulness == ev.normalized_faithfulness
    assert ev.model_value.value < 0  # a log-probability
    assert ev.n_nodes == 8  # attention-only: no MLP nodes even with nodes="heads+mlps"
    assert ev.minimality.relative_to == "F(M) - F(empty)"
    assert faithfulness(model, task, circuit, ci=False).value == 1.0
    with pytest.raises(ValueError, match="attention-only"):
        faithfulness(model, task, ["MLP0"], nodes="heads+mlps")


# --------------------------------------------------------------------------- completeness / minimality
def test_a_circuit_missing_an_important_head_is_incomplete(ioi_model, ioi):
    everything = all_heads(ioi_model)
    missing = [(3, 0), (2, 1), (2, 2), (1, 2), (0, 0)]  # without L3H3
    full = completeness(ioi_model, ioi, everything, n_random=3, greedy=1, **FAST)
    partial = completeness(ioi_model, ioi, missing, n_random=3, greedy=2, **FAST)
    assert full.score.value == 0.0
    assert partial.score.value > 0.5
    kinds = [p.kind for p in partial.points]
    assert kinds.count("random") == 3 and kinds.count("greedy") == 2 and kinds[:2] == ["empty", "circuit"]
    # K = {}: |F(C) - F(M)|; K = C: |F(empty) - F(M \ C)|, F(M \ C) = the model with only L3H3 ablated.
    ev = evaluate_circuit(ioi_model, ioi, missing, completeness=False, minimality=False, **FAST)
    assert partial.points[0].score.value == pytest.approx(abs(ev.circuit_value.value - ev.model_value.value))
    assert partial.points[1].circuit_value.value == pytest.approx(ev.empty_value.value)
    assert partial.worst.score.value == max(p.score.value for p in partial.points)
    greedy = [p for p in partial.points if p.kind == "greedy"]
    assert len(greedy[0].removed) == 1 and set(greedy[0].removed) < set(greedy[1].removed)


def test_minimality_of_a_head_without_effect_is_zero(tiny, tiny_task):
    model = copy.deepcopy(tiny)
    with torch.no_grad():
        model.blocks[1].attn.W_O[3] = 0  # L1H3 writes nothing: removing it never matters
    circuit = [(0, 1), (1, 3), (1, 0), (0, 2)]
    result = minimality(model, tiny_task, circuit, n_random=4, greedy=2, progress=False)
    assert result[(1, 3)].value == pytest.approx(0.0, abs=1e-5)
    assert result[(1, 0)].value > 1e-2 and result[(1, 0)].ci[0] > 0
    assert set(result) == set(circuit)
    assert all(v not in k and set(k) <= set(circuit) for v, k in result.removed.items())  # K is in C without v
    assert result.relative_to == "|F(C)|"


# --------------------------------------------------------------------------- curve
def test_curve_areas_on_a_hand_checked_curve():
    x = [0.0, 0.25, 0.5, 1.0]
    f = torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64)
    cpr, cmd = curve_areas(x, f)
    assert float(cpr) == pytest.approx(0.25 * 0.25 + 0.25 * 0.625 + 0.5 * 0.875)  # 0.65625
    assert float(cmd) == pytest.approx(0.25 * 0.75 + 0.25 * 0.375 + 0.5 * 0.125)  # 0.34375
    assert float(cpr) + float(cmd) == pytest.approx(1.0)  # f stays in [0, 1] here
    assert curve_sizes(16) == list(range(17))
    big = curve_sizes(144)
    assert big[0] == 0 and big[-1] == 144 and len(big) < 60 and 14 in big  # 10% of the heads
    assert curve_sizes(16, [3, 5]) == [0, 3, 5, 16]


def test_faithfulness_curve_endpoints_and_areas(ioi_model, ioi):
    scores = -torch.arange(16, dtype=torch.float32).reshape(4, 4)  # ranked by |score|: L3H3, L3H2, ... first
    curve = faithfulness_curve(ioi_model, ioi, scores, progress=False, ci=Bootstrap(n_resamples=200))
    assert curve.sizes == list(range(17)) and curve.x[-1] == 1.0
    assert curve.values[0].value == 0.0 and curve.values[0].ci == (0.0, 0.0)
    assert curve.values[-1].value == 1.0 and curve.values[-1].ci == (1.0, 1.0)
    assert curve.ranking[:4] == [(3, 3), (3, 2), (3, 1), (3, 0)]
    f = torch.tensor([v.value for v in curve.values], dtype=torch.float64)
    cpr, cmd = curve_areas(curve.x, f)
    assert curve.cpr.value == pytest.approx(float(cpr)) and curve.cmd.value == pytest.approx(float(cmd))
    assert curve.cpr.ci[0] <= curve.cpr.value <= curve.cpr.ci[1]
    # The same order as an explicit list gives the same curve.
    again = faithfulness_curve(ioi_model, ioi, curve.ranking, sizes=[4], **FAST)
    assert again.sizes == [0, 4, 16] and again.values[1].value == pytest.approx(curve.values[4].value)


# --------------------------------------------------------------------------- the result object
def test_evaluation_reports_serialises_and_plots(ioi_model, ioi):
    from circuitscope.analysis import head_attribution

    dla = head_attribution(ioi_model, ioi, ioi, ci=False)
    state = torch.random.get_rng_state()
    ev = evaluate_circuit(ioi_model, ioi, [(3, 3), "L3H0", (2, 1)], ranking=dla, n_random=3, greedy=2,
                          progress=False, ci=Bootstrap(n_resamples=100))
    assert torch.equal(torch.random.get_rng_state(), state)  # no global randomness
    assert isinstance(ev, CircuitEvaluation) and ev.n_prompts == len(ioi) and ev.heads[1] == (3, 0)
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["heads"] == [[3, 3], [3, 0], [2, 1]] and data["labels"] == ["L3H3", "L3H0", "L2H1"]
    assert set(data["faithfulness"]) == {"value", "ci"} and len(data["faithfulness"]["ci"]) == 2
    assert data["curve"]["sizes"] == list(range(17)) and data["minimality"]["nodes"][0]["node"] in ev.labels
    assert data["forward_passes"] == ev.forward_passes == sum(c["forward_passes"] for c in ev.cost.values())
    assert set(ev.cost) == {"reference", "faithfulness", "completeness", "minimality", "curve"}
    text = str(ev)
    for piece in ("L3H3", "faithfulness F(C) / F(M)", "incompleteness", "minimality", "CPR", "cost"):
        assert piece in text
    figs = ev.figures()
    assert set(figs) == {"curve", "completeness", "minimality"}
    assert figs["completeness"].diagonal and len(figs["completeness"].x) == len(ev.completeness.points)
    assert figs["curve"].ci is not None and figs["curve"].y.shape == (1, 17)
    assert list(figs["minimality"].labels) == ev.labels
    assert ev.curve.ranking[0] == max(all_heads(ioi_model), key=lambda h: abs(float(dla.values[h])))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="median"), ValueError, "unknown ablation method"),
    (dict(nodes="mlps"), ValueError, "unknown nodes"),
    (dict(heads=[(4, 0)]), ValueError, "out of range"),
    (dict(heads=[(0, 9)]), ValueError, "out of range"),
    (dict(heads=[(3, 3), (3, 3)]), ValueError, "more than once"),
    (dict(heads=[(3, 3), "L3H3"]), ValueError, "more than once"),
    (dict(heads=(3, 3)), TypeError, r"wrap a single head"),
    (dict(heads=[3, 3, 1]), TypeError, "bare number"),
    (dict(heads="L3H3"), TypeError, "single string"),
    (dict(heads=None), TypeError, "is None"),
    (dict(heads=["head7"]), ValueError, "cannot read"),
    (dict(heads=["MLP2"]), ValueError, "nodes='heads\\+mlps'"),
    (dict(heads=["MLP7"], nodes="heads+mlps"), ValueError, "out of range"),
    (dict(heads=["embed"]), ValueError, "nodes='all'"),
    (dict(ranking=[(3, 3), (3, 0)]), ValueError, "covers 2 of the 16"),
    (dict(ranking=torch.zeros(3, 4)), ValueError, r"\[n_layers, n_heads\]"),
    (dict(ranking=torch.zeros(4, 4), nodes="heads+mlps"), ValueError, "score map covers heads only"),
    (dict(greedy=-1), ValueError, "greedy must be"),
    (dict(n_random=1.5), ValueError, "n_random"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(search_prompts=0), ValueError, "search_prompts"),
    (dict(ranking=list(range(16))), TypeError, "bare number"),
])
def test_bad_inputs_say_what_is_wrong(ioi_model, ioi, kwargs, error, match):
    args = dict(heads=[(3, 3)], completeness=False, minimality=False, **FAST)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        evaluate_circuit(ioi_model, ioi, **args)


def test_empty_task_and_missing_ranking_are_refused(ioi_model, ioi):
    with pytest.raises(ValueError, match="no prompts"):
        faithfulness(ioi_model, ioi.subset([]), [(3, 3)])
    with pytest.raises(ValueError, match="needs a ranking"):
        faithfulness_curve(ioi_model, ioi, None)
    with pytest.raises(ValueError, match="outside 0..16"):
        faithfulness_curve(ioi_model, ioi, all_heads(ioi_model), sizes=[17], **FAST)
    with pytest.raises(TypeError, match="Task"):
        faithfulness(ioi_model, "not a task", [(3, 3)])


def test_normalizing_by_a_null_ablation_is_refused(tiny, tiny_task):
    model = copy.deepcopy(tiny)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_O.zero_()  # no head writes anything: ablating them all changes nothing
    assert faithfulness(model, tiny_task, [(0, 0)], ci=False).value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="F\\(M\\) - F\\(empty\\)"):
        normalized_faithfulness(model, tiny_task, [(0, 0)])


def test_template_means_match_a_grouped_mean_ablation(ioi_model):
    from circuitscope.patching import ablated

    task = ioi_task(ioi_model, N=24, seed=5)
    assert task.groups is not None and len(task.groups.unique()) > 1
    circuit = [(3, 3), (3, 0), (0, 2), (0, 3)]
    outside = [(l, h) for l in range(4) for h in range(4) if (l, h) not in circuit]
    got = faithfulness(ioi_model, task, circuit, method="template_mean", ci=False)
    width = task.corrupted_tokens.shape[1]
    real = (torch.arange(width)[None] <= task.corrupted_answer_pos[:, None]).float()  # [prompt, pos]
    with torch.no_grad(), ablated(ioi_model, heads=outside, method="mean", reference=task.corrupted_tokens,
                                  per_position=True, groups=task.groups, reference_mask=real):
        circuit_ld = task.logit_diff(ioi_model(task.clean_tokens))
    with torch.no_grad():
        model_ld = task.logit_diff(ioi_model(task.clean_tokens))
    assert abs(got.value - float(circuit_ld / model_ld)) < 1e-4
    pooled = faithfulness(ioi_model, task, circuit, method="mean", ci=False)
    assert abs(got.value - pooled.value) > 1e-3  # grouping changes the replacement


def test_template_means_need_template_ids(ioi_model, ioi):
    from dataclasses import replace

    with pytest.raises(ValueError, match="template_mean.*task.groups"):
        faithfulness(ioi_model, replace(ioi, groups=None), [(3, 3)], method="template_mean", ci=False)


def test_minimality_is_never_below_removing_the_node_alone(ioi_model):
    # the search for K ranks candidates on a few prompts; the reported max is over every prompt and
    # includes K = {}, so it can never fall below |F(C \ v) - F(C)|
    task = ioi_task(ioi_model, N=16, seed=0)
    circuit = [(3, 0), (3, 1), (2, 2), (1, 3), (0, 1)]
    mini = evaluate_circuit(ioi_model, task, circuit, n_random=3, ci=False, search_prompts=8, progress=False).minimality
    runner = CircuitAblation(ioi_model, task)
    full = runner.space.mask(circuit)
    base = runner.score(full).mean()
    for v in circuit:
        alone = runner.space.mask([n for n in circuit if n != v])
        assert mini[v].value >= float((runner.score(alone).mean() - base).abs()) - 1e-6


def test_curve_figure_spaces_points_evenly_for_large_models():
    from circuitscope.circuit.curve import FaithfulnessCurve
    from circuitscope.circuit.estimate import Estimate

    ks = curve_sizes(144)  # MIB's small fractions plus every 1/32: uneven
    c = FaithfulnessCurve(ks, [k / 144 for k in ks], [Estimate(k / 144, (0, 1)) for k in ks], Estimate(0.5),
                          Estimate(0.5), [], 144)
    labels = c.figure().to_plotly().data[-1].x
    kept = [int(str(label).split()[0]) for label in labels]
    gaps = {b - a for a, b in zip(kept, kept[1:])}
    assert len(kept) == 33 and max(gaps) - min(gaps) <= 1  # a categorical axis that is also even
