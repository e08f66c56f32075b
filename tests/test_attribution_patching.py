"""Attribution patching: exact where the metric is linear in the patched activation, IG converging
to the exact value where its path is exact, TransformerLens shapes for every sweep, no hooks left."""

import itertools

import pytest
import torch

from circuitscope import HookedTransformer, TransformerConfig
from circuitscope.patching.attribution import ATTRIBUTION_WHATS, attribution_sweep, correlation
from circuitscope.tasks import Task, logit_diff

L, H, P, B = 2, 4, 7, 6


def make_model(normalization_type="LN", seed=0, attn_only=False):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cfg = TransformerConfig(n_layers=L, d_model=16, n_heads=H, d_head=4, d_vocab=40, n_ctx=16, d_mlp=32,
                                normalization_type=normalization_type, attn_only=attn_only)
        model = HookedTransformer(cfg)
        model.init_weights(std=0.3)  # far from linear: the approximations have something to miss
    return model


def make_task(seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 40, (B, P), generator=gen)  # [batch, pos]
    corrupted = clean.clone()
    corrupted[:, 1:4] = torch.randint(0, 40, (B, 3), generator=gen)
    answers = torch.randint(0, 40, (B, 2), generator=gen)  # [batch, 2]
    answer_pos = torch.tensor([6, 5, 6, 4, 6, 3])  # padded prompts read at different rows
    return Task(clean, corrupted, answers, answer_pos)


@pytest.fixture(scope="module")
def linear_case():
    return make_model(normalization_type=None), make_task()


@pytest.fixture(scope="module")
def attn_only_linear_case():
    return make_model(normalization_type=None, attn_only=True), make_task()


def raw_logit_diff(task):
    return lambda logits: logit_diff(logits, task.answer_tokens, task.answer_pos)


def exact(model, task, what, by, metric, direction="denoise"):
    """The definition: one forward per patch (written plainly, [layer, ...] like TransformerLens)."""
    base, src = (task.corrupted_tokens, task.clean_tokens) if direction == "denoise" else (task.clean_tokens, task.corrupted_tokens)
    suffix = {"z": "attn.hook_z", "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v",
              "pattern": "attn.hook_pattern"}.get(what, f"hook_{what}")
    names = [f"blocks.{l}.{suffix}" for l in range(L)]
    _, cache = model.run_with_cache(src, names_filter=names)
    heads = what in ("z", "q", "k", "v", "pattern")
    dims = ([P] if by == "pos" else []) + ([H] if heads else [])
    if what == "pattern" and by == "pos":
        dims = [H, P]  # TransformerLens's order for the pattern: [layer, head, dest_pos]
    out = torch.zeros([L] + dims)
    for layer, idx in itertools.product(range(L), itertools.product(*[range(d) for d in dims])):
        if what == "pattern":  # [batch, head, dest, src]
            sel = (slice(None), idx[0], idx[1]) if by == "pos" else (slice(None), idx[0])
        elif heads:  # [batch, pos, head, d_head]
            sel = (slice(None), idx[0], idx[1]) if by == "pos" else (slice(None), slice(None), idx[0])
        else:  # [batch, pos, d_model]
            sel = (slice(None), idx[0]) if by == "pos" else (slice(None),)

        def patch(act, hook, sel=sel):
            act = act.clone()
            act[sel] = cache[hook.name][sel]
            return act

        with torch.no_grad():
            out[(layer, *idx)] = metric(model.run_with_hooks(base, fwd_hooks=[(names[layer], patch)]))
    return out


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("what,by", [("resid_post", "pos"), ("resid_post", "all"), ("mlp_out", "pos"),
                                     ("attn_out", "pos"), ("z", "pos"), ("z", "all")])
def test_linear_is_exact_when_the_metric_is_linear_in_the_activation(linear_case, attn_only_linear_case, what,
                                                                     by, direction):
    # No final norm: the last layer's outputs reach the logit difference through linear maps only
    # (the attention layer's only in an attention-only model, where no MLP follows it).
    model, task = attn_only_linear_case if what in ("attn_out", "z") else linear_case
    metric = raw_logit_diff(task)
    approx = attribution_sweep(model, task, what, by, "linear", direction=direction, metric=metric)
    truth = exact(model, task, what, by, metric, direction)
    torch.testing.assert_close(approx.values[-1], truth[-1], atol=1e-4, rtol=1e-4)
    assert approx.values[-1].abs().max() > 0.1  # a real effect, not zeros on both sides
    assert approx.meta["method"] == "linear" and approx.meta["direction"] == direction


def test_ig_converges_to_the_exact_patch_of_the_embeddings():
    # resid_pre of layer 0 is the embedding, which IG interpolates: completeness makes IG exact
    # as steps grow, while the linear estimate misses the model's curvature.
    model, task = make_model(seed=1), make_task(seed=1)
    metric = raw_logit_diff(task)
    truth = exact(model, task, "resid_pre", "all", metric)[0]
    errors = [abs(attribution_sweep(model, task, "resid_pre", "all", "ig", steps=s, metric=metric).values[0] - truth)
              for s in (1, 4, 32)]
    linear = abs(attribution_sweep(model, task, "resid_pre", "all", "linear", metric=metric).values[0] - truth)
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-2 * abs(truth - metric(model(task.corrupted_tokens))) < linear


@pytest.mark.parametrize("what", ATTRIBUTION_WHATS)
def test_shapes_and_labels_match_the_exact_sweep(what):
    model, task = make_model(), make_task()
    shapes = {"pos": {"resid": (L, P), "head": (L, P, H)}, "all": {"resid": (L,), "head": (L, H)}}
    for by, method in (("pos", "linear"), ("all", "ig")):
        res = attribution_sweep(model, task, what, by, method, steps=2)
        kind = "head" if what in ("z", "q", "k", "v", "pattern") else "resid"
        expected = (L, H, P) if (what, by) == ("pattern", "pos") else shapes[by][kind]
        assert res.values.shape == expected
        assert [len(lab) for lab in res.labels] == list(res.values.shape)
        axes = {("pos", "resid"): ("layer", "pos"), ("all", "resid"): ("layer",), ("all", "head"): ("layer", "head"),
                ("pos", "head"): ("layer", "head", "dest_pos") if what == "pattern" else ("layer", "pos", "head")}
        assert res.axes == axes[by, kind]
        assert torch.isfinite(res.values).all()
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())


def test_approximation_tracks_exact_sweep_of_heads_by_position():
    model, task = make_model(seed=2), make_task(seed=2)
    metric = task.patching_metric(model)
    approx = attribution_sweep(model, task, "z", "pos", "linear")  # default metric: same calibration
    stats = correlation(approx, exact(model, task, "z", "pos", metric))
    assert stats["pearson"] > 0.5 and stats["n"] == L * P * H  # r = 0.71 here: a strongly nonlinear model
    assert approx.meta["clean_baseline"] == pytest.approx(metric.clean_baseline, rel=1e-5)


@pytest.mark.parametrize("span", [None, (2, 6)])
@pytest.mark.parametrize("method,direction", [("ig", "denoise"), ("linear", "noise")])
def test_default_metric_matches_plain_callable(span, method, direction):
    # The default metric is calibrated from the runs attribution makes and read at the answer rows
    # only; a plain callable gets full logits. Same numbers either way (span: induction's metric).
    model, task = make_model(seed=3), make_task(seed=3)
    task.span = span
    plain = task.patching_metric(model)
    fast = attribution_sweep(model, task, "z", "pos", method, steps=3, direction=direction)
    slow = attribution_sweep(model, task, "z", "pos", method, steps=3, direction=direction,
                             metric=lambda logits: plain(logits))
    torch.testing.assert_close(fast.values, slow.values, atol=1e-5, rtol=1e-5)
    declared = attribution_sweep(model, task, "z", "pos", method, steps=3, direction=direction, metric=plain)
    torch.testing.assert_close(declared.values, slow.values, atol=1e-5, rtol=1e-5)  # via its readout
    assert fast.meta["corrupted_baseline"] == pytest.approx(plain.corrupted_baseline, rel=1e-5)


def test_no_hooks_left_after_errors_and_clear_errors(linear_case):
    model, task = linear_case

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError):
        attribution_sweep(model, task, "z", "pos", metric=broken)
    with pytest.raises(ValueError, match="scalar"):
        attribution_sweep(model, task, "z", "pos", metric=lambda logits: logits[:, -1, 0])
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())
    with pytest.raises(ValueError, match="unknown activation"):
        attribution_sweep(model, task, "resid", "pos")
    with pytest.raises(ValueError, match="method"):
        attribution_sweep(model, task, "z", "pos", method="quadratic")
    with pytest.raises(ValueError, match="by must be"):
        attribution_sweep(model, task, "z", "dest_src")


def test_correlation():
    x = torch.tensor([[0.0, 1.0], [3.0, 2.0]])
    stats = correlation(x, 2 * x + 1)
    assert stats["pearson"] == pytest.approx(1.0) and stats["spearman"] == pytest.approx(1.0)
    assert stats["max_abs_error"] == pytest.approx(4.0) and stats["n"] == 4
    assert correlation(x, -x)["pearson"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="differ in size"):
        correlation(x, x[0])


def test_public_names():
    from circuitscope import patching

    assert patching.attribution_sweep is attribution_sweep and patching.correlation is correlation
    assert patching.ablated.__module__ == "circuitscope.patching.ablation"
