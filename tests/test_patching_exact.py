"""The patching engine is exact: every sweep, path patching and ablation against the naive
references in ``patching_reference.py`` (one ``run_with_hooks`` forward per patch), within 1e-5.

Models: small random checkpoints of each family, loaded the way users load them
(``HookedTransformer.from_pretrained(folder)``, processed weights, float32): GPT-2; GPT-NeoX with
parallel attention/MLP and partial rotary; LLaMA with grouped-query attention (4 query heads, 2
key/value heads). Prompts are right-padded to different lengths, with per-prompt answer
positions; the corruption changes two tokens inside every prompt.

Metrics: a plain callable that reads every position of the full logits (padding included), so no
shortcut applies, and the task's own ``task.patching_metric(model)`` (the fast path).

Reference sweeps are computed once per (family, direction) and shared by the tests. Every entry
is compared, except for the by-position head sweeps when noising and the [dest, src] pattern sweep
outside GPT-2, which are compared on a fixed sample of entries to keep the file fast.
"""

from __future__ import annotations

import functools
import itertools
from types import SimpleNamespace

import pytest
import torch

from hf_models import VOCAB, get_model, make_task

import patching_reference as ref

from circuitscope import patching  # the module under test

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ATOL = 1e-5
FAMILIES = ["gpt2", "neox", "llama"]
LAYER_POS = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
HEAD_ACTS = ["z", "q", "k", "v", "pattern"]
RECEIVERS = [(2, 0), (2, 3), (1, 1)]  # path patching receivers in the 3-layer models


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- models, tasks, metrics

def make_plain_metric(task, seed=0):
    """An arbitrary function of the full logits: a fixed random weighting of every log-probability
    at every position, padding included. No patching shortcut can know where it reads."""
    batch, width = task.clean_tokens.shape
    g = torch.Generator().manual_seed(seed + 100)
    weights = torch.randn(batch, width, VOCAB, generator=g) / (batch * width * VOCAB) ** 0.5

    def metric(logits):
        assert logits.shape == (batch, width, VOCAB), f"a plain metric must get full logits, got {tuple(logits.shape)}"
        return (logits.log_softmax(-1) * weights.to(logits.dtype)).sum()

    return metric


@functools.lru_cache(maxsize=None)
def setup(family: str, n_layers: int = 2) -> SimpleNamespace:
    model = get_model(family, n_layers)
    task = make_task(model)
    plain = make_plain_metric(task)
    task_metric = task.patching_metric(model)

    def both(logits):  # one reference run serves both metrics
        return torch.stack([plain(logits), task_metric(logits)])

    with torch.no_grad():
        _, clean_cache = model.run_with_cache(task.clean_tokens)
        _, corrupted_cache = model.run_with_cache(task.corrupted_tokens)
    return SimpleNamespace(model=model, task=task, plain=plain, task_metric=task_metric, both=both,
                           clean_cache=clean_cache, corrupted_cache=corrupted_cache)


def has_resid_mid(model) -> bool:
    return not model.cfg.parallel_attn_mlp  # parallel blocks have no resid_mid (as in TransformerLens)


# --------------------------------------------------------------------------- references (memoised)

def sample_indices(ranges, n, seed=0):
    """A fixed sample of index tuples, always including the first and the last."""
    full = list(itertools.product(*[range(r) for r in ranges]))
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(full), generator=g)[:n].tolist()
    return sorted({full[i] for i in pick} | {full[0], full[-1]})


def full_by_pos(family, direction) -> bool:
    return direction == "denoise"


@functools.lru_cache(maxsize=None)
def reference(family: str, direction: str, kind: str) -> torch.Tensor:
    """Reference values [..., 2] (plain metric, task metric) for one sweep.

    ``kind``: a layer-pos activation (``resid_pre`` ...), ``<act>_all`` ([layer, head]),
    ``<act>_pos`` ([layer, pos, head]; ``pattern_pos`` is TL's [layer, head, dest_pos]) or
    ``pattern_dest_src`` ([layer, head, dest, src]). Unsampled entries are NaN.
    """
    s = setup(family)
    model = s.model
    if direction == "denoise":
        base, cache = s.task.corrupted_tokens, s.clean_cache
    else:
        base, cache = s.task.clean_tokens, s.corrupted_cache
    L, H, W = model.cfg.n_layers, model.cfg.n_heads, base.shape[1]
    if kind in LAYER_POS:
        return ref.layer_pos_sweep(kind, model, base, cache, s.both)
    what, by = kind.rsplit("_", 1) if kind != "pattern_dest_src" else ("pattern", "dest_src")
    if by == "all":
        if what == "pattern":
            return ref.pattern_all_pos(model, base, cache, s.both)
        return ref.head_all_pos(what, model, base, cache, s.both)
    if by == "pos":
        if what == "pattern":
            idx = None if full_by_pos(family, direction) else sample_indices((L, H, W), 12, seed=5)
            return ref.pattern_by_pos(model, base, cache, s.both, indices=idx)
        idx = None if full_by_pos(family, direction) else sample_indices((L, W, H), 12, seed=HEAD_ACTS.index(what))
        return ref.head_by_pos(what, model, base, cache, s.both, indices=idx)
    idx = None if family == "gpt2" else sample_indices((L, H, W, W), 30, seed=7)
    return ref.pattern_dest_src(model, base, cache, s.both, indices=idx)


# --------------------------------------------------------------------------- comparison helpers

def values_of(out) -> torch.Tensor:
    """The tensor of a TL-style function's output (a tensor) or of a PatchResult (.values)."""
    if isinstance(out, torch.Tensor):
        return out
    return out.values


def assert_matches(got, expected, what: str) -> None:
    got = values_of(got).detach().cpu().double()
    assert tuple(got.shape) == tuple(expected.shape), (
        f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)} (TransformerLens 2.x order)")
    mask = torch.isfinite(expected)
    assert mask.any()
    diff = (got - expected).abs()
    diff[~mask] = 0.0
    diff[mask & ~torch.isfinite(got)] = float("inf")
    worst = diff.max().item()
    if not worst <= ATOL:
        at = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        pytest.fail(f"{what}: largest difference {worst:.3g} at {at}: got {got[at].item():.7g}, "
                    f"reference {expected[at].item():.7g}")


def aligned(expected: torch.Tensor, expected_axes, result) -> torch.Tensor:
    """``expected`` permuted to the result's axis order (for the pattern-by-position sweep, whose
    axis order the issue text and TransformerLens state differently)."""
    rename = {"pos": "dest_pos", "head_index": "head", "query_pos": "dest_pos", "dest": "dest_pos"}
    axes = [rename.get(a, a) for a in result.axes]
    assert sorted(axes) == sorted(expected_axes), f"result axes {result.axes}, expected some order of {expected_axes}"
    return expected.permute(*[list(expected_axes).index(a) for a in axes])


TL_LAYER_POS = {"resid_pre": "get_act_patch_resid_pre", "resid_mid": "get_act_patch_resid_mid",
                "attn_out": "get_act_patch_attn_out", "mlp_out": "get_act_patch_mlp_out"}
TL_ALL_POS = {"z": "get_act_patch_attn_head_out_all_pos", "q": "get_act_patch_attn_head_q_all_pos",
              "k": "get_act_patch_attn_head_k_all_pos", "v": "get_act_patch_attn_head_v_all_pos",
              "pattern": "get_act_patch_attn_head_pattern_all_pos"}
TL_BY_POS = {"z": "get_act_patch_attn_head_out_by_pos", "q": "get_act_patch_attn_head_q_by_pos",
             "k": "get_act_patch_attn_head_k_by_pos", "v": "get_act_patch_attn_head_v_by_pos",
             "pattern": "get_act_patch_attn_head_pattern_by_pos"}


def run_tl_style(fn_name, s, direction, metric):
    fn = getattr(patching, fn_name)
    if direction == "denoise":
        return fn(s.model, s.task.corrupted_tokens, s.clean_cache, metric)
    return fn(s.model, s.task.clean_tokens, s.corrupted_cache, metric)


# --------------------------------------------------------------------------- the references themselves

def test_reference_resid_pre_entry_is_a_forward_from_the_patched_stream():
    """Independently of hooks: start the model at layer l on the corrupted residual stream with
    position p taken from the clean run."""
    s = setup("gpt2")
    expected = reference("gpt2", "denoise", "resid_pre")
    for layer, pos in [(0, 1), (1, 3), (1, 5)]:
        name = ref.act_name("resid_pre", layer)
        resid = s.corrupted_cache[name].clone()
        resid[:, pos] = s.clean_cache[name][:, pos]
        with torch.no_grad():
            logits = s.model(resid, start_at_layer=layer)
        assert abs(s.task_metric(logits).item() - expected[layer, pos, 1].item()) <= ATOL


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_patching_the_whole_difference(family):
    model, task = single_corruption(family)
    metric = task.patching_metric(model)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(task.clean_tokens)
    values = ref.resid_pre(model, task.corrupted_tokens, clean_cache, metric)
    assert abs(values[0, 2].item() - 1.0) <= ATOL
    assert values[0, [0, 1, 3, 4, 5]].abs().max().item() <= ATOL
    assert values[:, :2].abs().max().item() <= ATOL


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_direct_path_is_a_w_o_delta(family):
    """With MLPs frozen, a sender's direct effect is the clean final residual stream plus
    (corrupted z - clean z) @ W_O of that head, then ln_final and the unembedding."""
    s = setup(family, 3)
    model, task = s.model, s.task
    metric = task.patching_metric(model, convention="ioi")
    expected = path_reference(family, "resid", "resid", None, False, "ioi")
    L = model.cfg.n_layers
    with torch.no_grad():
        _, clean = model.run_with_cache(task.clean_tokens)
        _, corrupted = model.run_with_cache(task.corrupted_tokens)
        final = clean[ref.act_name("resid_post", L - 1)]
        for layer, head in [(0, 0), (1, 2), (2, 3)]:
            dz = corrupted[ref.act_name("z", layer)][:, :, head] - clean[ref.act_name("z", layer)][:, :, head]
            resid = final + dz @ model.W_O[layer, head]
            value = metric(model.unembed(model.ln_final(resid))).item()
            assert abs(value - expected[layer, head].item()) <= ATOL


def test_reference_ablations_with_trivial_references():
    """Resampling each prompt from itself, or a per-position mean over the prompt itself, is no
    ablation at all; zero ablation of a head equals removing its W_O contribution."""
    s = setup("llama")
    model = s.model
    tokens = reference_tokens(n=1)
    with torch.no_grad():
        plain_logits = model(tokens)
    same = ref.run_ablated(model, tokens, heads=[(1, 2)], mlps=[0], method="resample", reference=tokens,
                           resample_index=[0])
    assert_close_logits(same, plain_logits, "resample from itself")
    mean = ref.run_ablated(model, tokens, heads=[(1, 2)], mlps=[0], method="mean", reference=tokens,
                           per_position=True)
    assert_close_logits(mean, plain_logits, "per-position mean over itself")
    zero = ref.run_ablated(model, tokens, heads=[(1, 2)], method="zero")

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)

    def remove_head(attn_out, hook):
        return attn_out - cache[ref.act_name("z", 1)][:, :, 2] @ model.W_O[1, 2]

    with torch.no_grad():
        by_w_o = model.run_with_hooks(tokens, fwd_hooks=[(ref.act_name("attn_out", 1), remove_head)])
    assert_close_logits(zero, by_w_o, "zero ablation as a W_O delta")


# --------------------------------------------------------------------------- TransformerLens-style functions

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("what", list(TL_LAYER_POS))
def test_tl_layer_pos_functions(family, what):
    """[layer, pos]: denoising with both metrics, noising with the plain one."""
    s = setup(family)
    if what == "resid_mid" and not has_resid_mid(s.model):
        with pytest.raises(ValueError, match="no resid_mid"):
            run_tl_style(TL_LAYER_POS[what], s, "denoise", s.plain)
        return
    fn = TL_LAYER_POS[what]
    expected = reference(family, "denoise", what)
    assert_matches(run_tl_style(fn, s, "denoise", s.plain), expected[..., 0], f"{fn} plain metric")
    assert_matches(run_tl_style(fn, s, "denoise", s.task_metric), expected[..., 1], f"{fn} task metric")
    assert_matches(run_tl_style(fn, s, "noise", s.plain), reference(family, "noise", what)[..., 0], f"{fn} noising")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("what", HEAD_ACTS)
def test_tl_head_all_pos_functions(family, what):
    """[layer, head], every position of one head at once."""
    s = setup(family)
    fn = TL_ALL_POS[what]
    expected = reference(family, "denoise", f"{what}_all")
    assert_matches(run_tl_style(fn, s, "denoise", s.plain), expected[..., 0], f"{fn} plain metric")
    assert_matches(run_tl_style(fn, s, "denoise", s.task_metric), expected[..., 1], f"{fn} task metric")
    assert_matches(run_tl_style(fn, s, "noise", s.task_metric), reference(family, "noise", f"{what}_all")[..., 1],
                   f"{fn} noising")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("what", HEAD_ACTS)
def test_tl_head_by_pos_functions(family, what):
    """[layer, pos, head] for z/q/k/v; [layer, head, dest_pos] for the pattern.

    The pattern order is TransformerLens 2.x's (``index_axis_names=("layer", "head_index",
    "dest_pos")`` in its patching.py; TL 2.16.1 returns that shape when run), which the issue's
    summary misstates as [layer, dest_pos, head]. Only ``..._by_pos_every`` moves it to
    [layer, pos, head]. The task-level ``sweep`` may use either order: its test aligns by axis name.
    """
    s = setup(family)
    fn = TL_BY_POS[what]
    expected = reference(family, "denoise", f"{what}_pos")
    assert_matches(run_tl_style(fn, s, "denoise", s.plain), expected[..., 0], f"{fn} plain metric")
    assert_matches(run_tl_style(fn, s, "denoise", s.task_metric), expected[..., 1], f"{fn} task metric")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_tl_pattern_dest_src(family):
    """[layer, head, dest_pos, src_pos] (TL 2.x's order), on a sample of entries."""
    s = setup(family)
    fn = "get_act_patch_attn_head_pattern_dest_src_pos"
    expected = reference(family, "denoise", "pattern_dest_src")
    assert_matches(run_tl_style(fn, s, "denoise", s.plain), expected[..., 0], f"{fn} plain metric")
    assert_matches(run_tl_style(fn, s, "denoise", s.task_metric), expected[..., 1], f"{fn} task metric")


def test_tl_every_functions():
    """The stacked helpers: [3, layer, pos], [5, layer, head], [5, layer, pos, head]."""
    family = "gpt2"
    s = setup(family)
    r = functools.partial(reference, family, "denoise")
    block = torch.stack([r("resid_pre"), r("attn_out"), r("mlp_out")])
    all_pos = torch.stack([r(f"{w}_all") for w in HEAD_ACTS])
    by_pos = torch.stack([r(f"{w}_pos") for w in HEAD_ACTS[:4]] + [r("pattern_pos").transpose(1, 2)])
    for k, metric in enumerate([s.plain, s.task_metric]):
        assert_matches(run_tl_style("get_act_patch_block_every", s, "denoise", metric), block[..., k],
                       f"get_act_patch_block_every metric {k}")
        assert_matches(run_tl_style("get_act_patch_attn_head_all_pos_every", s, "denoise", metric), all_pos[..., k],
                       f"get_act_patch_attn_head_all_pos_every metric {k}")
    assert_matches(run_tl_style("get_act_patch_attn_head_by_pos_every", s, "denoise", s.task_metric), by_pos[..., 1],
                   "get_act_patch_attn_head_by_pos_every")


def test_tl_functions_reject_mismatched_shapes():
    s = setup("gpt2")
    with pytest.raises(ValueError):
        patching.get_act_patch_resid_pre(s.model, s.task.corrupted_tokens[:, :-1], s.clean_cache, s.plain)


# --------------------------------------------------------------------------- task-level sweep

SWEEPS = [(w, "pos") for w in LAYER_POS] + [(w, by) for w in HEAD_ACTS for by in ("all", "pos")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("what,by", SWEEPS)
def test_sweep_task_metric(family, direction, what, by):
    """``patching.sweep`` with its default metric (the task's normalised metric: the fast path)."""
    s = setup(family)
    if what == "resid_mid" and not has_resid_mid(s.model):
        with pytest.raises(ValueError, match="no resid_mid"):
            patching.sweep(s.model, s.task, what, by=by, direction=direction)
        return
    kind = what if what in LAYER_POS else f"{what}_{by}"
    expected = reference(family, direction, kind)[..., 1]
    result = patching.sweep(s.model, s.task, what, by=by, direction=direction)
    if what == "pattern" and by == "pos":
        expected = aligned(expected, ("layer", "head", "dest_pos"), result)
    assert_matches(result, expected, f"sweep({what!r}, by={by!r}, direction={direction!r})")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("what,by", [("resid_pre", "pos"), ("mlp_out", "pos"), ("z", "all"), ("v", "pos")])
def test_sweep_plain_metric(family, direction, what, by):
    """``patching.sweep`` with a plain callable metric (no shortcut on where the metric reads)."""
    s = setup(family)
    kind = what if what in LAYER_POS else f"{what}_{by}"
    expected = reference(family, direction, kind)[..., 0]
    result = patching.sweep(s.model, s.task, what, by=by, direction=direction, metric=s.plain)
    assert_matches(result, expected, f"sweep({what!r}, by={by!r}, direction={direction!r}, metric=plain)")


# --------------------------------------------------------------------------- patching everything

@functools.lru_cache(maxsize=None)
def single_corruption(family):
    """A task whose clean and corrupted prompts differ only at position 2."""
    model = get_model(family, 2)
    return model, make_task(model, diff_positions=(2,), seed=3)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_the_whole_difference_reproduces_the_other_run(family):
    """resid_pre at layer 0 holds a position's whole input: patching the one position where the
    prompts differ gives the other run exactly (1 when denoising, 0 when noising), any other
    position at layer 0 changes nothing, and no layer's patch before position 2 changes anything."""
    model, task = single_corruption(family)
    den = values_of(patching.sweep(model, task, "resid_pre", by="pos", direction="denoise")).double()
    noi = values_of(patching.sweep(model, task, "resid_pre", by="pos", direction="noise")).double()
    W = task.clean_tokens.shape[1]
    others = [p for p in range(W) if p != 2]
    assert abs(den[0, 2].item() - 1.0) <= ATOL and abs(noi[0, 2].item()) <= ATOL
    assert den[0, others].abs().max().item() <= ATOL
    assert (noi[0, others] - 1.0).abs().max().item() <= ATOL
    assert den[:, :2].abs().max().item() <= ATOL and (noi[:, :2] - 1.0).abs().max().item() <= ATOL

    # the same through the TransformerLens-style function and a plain metric
    plain = make_plain_metric(task)
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(task.clean_tokens)
        corrupted_value = plain(model(task.corrupted_tokens)).item()
    got = values_of(patching.get_act_patch_resid_pre(model, task.corrupted_tokens, clean_cache, plain)).double()
    assert abs(got[0, 2].item() - plain(clean_logits).item()) <= ATOL
    assert (got[0, others] - corrupted_value).abs().max().item() <= ATOL


@pytest.mark.parametrize("family", FAMILIES)
def test_resid_pre_all_positions_at_layer_0_is_the_clean_run(family):
    """by="all" for the residual stream: every position of layer L at once ([layer])."""
    s = setup(family)
    den = values_of(patching.sweep(s.model, s.task, "resid_pre", by="all", direction="denoise")).double()
    noi = values_of(patching.sweep(s.model, s.task, "resid_pre", by="all", direction="noise")).double()
    assert tuple(den.shape) == (s.model.cfg.n_layers,)
    # patching the whole residual stream at any layer gives the source run
    assert (den - 1.0).abs().max().item() <= ATOL
    assert noi.abs().max().item() <= ATOL


# --------------------------------------------------------------------------- path patching

@functools.lru_cache(maxsize=None)
def path_reference(family, receivers, receiver_input, positions_key, include_mlps, metric_name):
    s = setup(family, 3)
    metric = s.plain if metric_name == "plain" else s.task.patching_metric(s.model, convention="ioi")
    positions = None
    if positions_key == "end":
        positions = s.task.positions["end"]
    elif positions_key == "tensor":
        positions = per_prompt_positions()
    recv = "resid" if receivers == "resid" else list(receivers)
    return ref.path_patch(s.model, s.task.clean_tokens, s.task.corrupted_tokens, metric, recv, receiver_input,
                          positions, include_mlps)


def per_prompt_positions():
    return torch.tensor([3, 2, 4])


def run_path_patch(family, receivers, receiver_input, positions_key, include_mlps, metric_name):
    s = setup(family, 3)
    positions = {None: None, "end": "end", "tensor": per_prompt_positions()}[positions_key]
    kwargs = dict(receiver_input=receiver_input, positions=positions, include_mlps=include_mlps)
    if metric_name == "plain":
        kwargs["metric"] = s.plain
    recv = "resid" if receivers == "resid" else list(receivers)
    return patching.path_patch(s.model, s.task, recv, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("include_mlps", [True, False])
def test_path_patch_to_resid(family, include_mlps):
    """Direct paths: every head into the final residual stream; default (IOI-convention) metric."""
    args = (family, "resid", "resid", None, include_mlps, "ioi")
    expected = path_reference(*args)
    assert_matches(run_path_patch(*args), expected, f"path_patch(resid, include_mlps={include_mlps})")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("receiver_input", ["q", "k", "v"])
@pytest.mark.parametrize("include_mlps", [True, False])
def test_path_patch_to_heads(family, receiver_input, include_mlps):
    """Every head into three receivers' q/k/v at every position. Senders that cannot reach a
    receiver (layer >= the last receiver layer) leave the clean run unchanged: 0 under the
    default (IOI) metric."""
    args = (family, tuple(RECEIVERS), receiver_input, None, include_mlps, "ioi")
    expected = path_reference(*args)
    got = run_path_patch(*args)
    assert_matches(got, expected, f"path_patch({RECEIVERS}, {receiver_input!r}, include_mlps={include_mlps})")
    assert values_of(got)[max(l for l, _ in RECEIVERS):].abs().max().item() <= ATOL


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("positions_key", ["end", "tensor"])
def test_path_patch_receiver_positions(family, positions_key):
    """Receivers' queries at one position per prompt: a task.positions label or a [batch] tensor."""
    args = (family, tuple(RECEIVERS), "q", positions_key, True, "ioi")
    expected = path_reference(*args)
    assert_matches(run_path_patch(*args), expected, f"path_patch(q, positions={positions_key})")


@pytest.mark.parametrize("receivers,receiver_input,positions_key",
                         [("resid", "resid", None), (tuple(RECEIVERS), "v", "end")])
def test_path_patch_plain_metric(receivers, receiver_input, positions_key):
    """Any callable metric: unreachable senders then read the clean run's value, as the three-step
    algorithm gives (the issue's "0" assumes the IOI convention, where that value is 0)."""
    args = ("llama", receivers, receiver_input, positions_key, False, "plain")
    expected = path_reference(*args)
    assert_matches(run_path_patch(*args), expected, f"path_patch({receivers}, metric=plain)")


# --------------------------------------------------------------------------- ablation

ABLATE_HEADS = [(0, 1), (1, 2)]


def reference_tokens(n=4, width=6, seed=11):
    """An unpadded reference batch as wide as the task's prompts."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (n, width), generator=g)


def ablated_logits(model, tokens, **kwargs):
    with torch.no_grad(), patching.ablated(model, **kwargs):
        return model(tokens)


def assert_close_logits(got, expected, what):
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= ATOL, f"{what}: largest logit difference {diff:.3g}"


POSITIONS = {"all": None, "list": [1, 3], "per_prompt": torch.tensor([3, 1, 4])}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("positions_key", list(POSITIONS))
def test_zero_ablation(family, positions_key):
    s = setup(family)
    tokens, positions = s.task.clean_tokens, POSITIONS[positions_key]
    kwargs = dict(heads=ABLATE_HEADS, mlps=[1], method="zero", positions=positions)
    expected = ref.run_ablated(s.model, tokens, **kwargs)
    assert_close_logits(ablated_logits(s.model, tokens, **kwargs), expected, f"zero ablation at {positions_key}")
    with torch.no_grad():  # the context manager leaves no hook behind
        assert_close_logits(s.model(tokens), s.model.run_with_hooks(tokens, fwd_hooks=[]), "after the context")
        assert not torch.allclose(expected, s.model(tokens))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("per_position", [False, True])
@pytest.mark.parametrize("positions_key", ["all", "per_prompt"])
def test_mean_ablation(family, per_position, positions_key):
    """Mean over the reference batch (and its positions unless per_position)."""
    s = setup(family)
    tokens, reference = s.task.clean_tokens, reference_tokens()
    kwargs = dict(heads=ABLATE_HEADS, mlps=[0], method="mean", reference=reference,
                  positions=POSITIONS[positions_key], per_position=per_position)
    expected = ref.run_ablated(s.model, tokens, **kwargs)
    assert_close_logits(ablated_logits(s.model, tokens, **kwargs), expected,
                        f"mean ablation per_position={per_position} at {positions_key}")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("component", ["head", "mlp"])
def test_resample_ablation(family, component):
    """Each prompt's activation is replaced by the one of *some* reference prompt (the engine may
    pick which at random): every prompt's logits must equal those of a hand-written hook that
    takes reference prompt j's activation, for some j."""
    s = setup(family)
    tokens, reference = s.task.clean_tokens, reference_tokens()
    parts = dict(heads=[(1, 2)], mlps=[]) if component == "head" else dict(heads=[], mlps=[0])
    got = ablated_logits(s.model, tokens, method="resample", reference=reference, **parts)
    batch = tokens.shape[0]
    candidates = [ref.run_ablated(s.model, tokens, method="resample", reference=reference,
                                  resample_index=[j] * batch, **parts) for j in range(reference.shape[0])]
    for b in range(batch):
        best = min((got[b].double() - c[b].double()).abs().max().item() for c in candidates)
        assert best <= ATOL, f"prompt {b}: no reference prompt's activation reproduces it (closest {best:.3g})"
