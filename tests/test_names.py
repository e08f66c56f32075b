"""get_act_name shorthands, the hook list, and name suggestions."""

from __future__ import annotations

import pytest

from circuitscope.names import (
    ALL_HOOK_SUFFIXES,
    HOOK_SHAPES,
    MODEL_HOOK_NAMES,
    all_hook_names,
    get_act_name,
    split_hook_name,
    suggest_names,
    unknown_name_message,
)


@pytest.mark.parametrize(
    "args, expected",
    [
        (("embed",), "hook_embed"),
        (("pos_embed",), "hook_pos_embed"),
        (("resid_pre", 5), "blocks.5.hook_resid_pre"),
        (("resid_mid", 0), "blocks.0.hook_resid_mid"),
        (("resid_post", 11), "blocks.11.hook_resid_post"),
        (("attn_out", 2), "blocks.2.hook_attn_out"),
        (("mlp_out", 2), "blocks.2.hook_mlp_out"),
        (("q", 1), "blocks.1.attn.hook_q"),
        (("k", 1), "blocks.1.attn.hook_k"),
        (("v", 1, "attn"), "blocks.1.attn.hook_v"),
        (("z", 4, "a"), "blocks.4.attn.hook_z"),
        (("result", 3), "blocks.3.attn.hook_result"),
        (("attn_scores", 3), "blocks.3.attn.hook_attn_scores"),
        (("scores", 3), "blocks.3.attn.hook_attn_scores"),
        (("pattern", 3), "blocks.3.attn.hook_pattern"),
        (("attn", 3, "attn"), "blocks.3.attn.hook_pattern"),
        (("rot_q", 0), "blocks.0.attn.hook_rot_q"),
        (("rot_k", 0), "blocks.0.attn.hook_rot_k"),
        (("q_input", 2), "blocks.2.hook_q_input"),
        (("k_input", 2), "blocks.2.hook_k_input"),
        (("v_input", 2), "blocks.2.hook_v_input"),
        (("attn_in", 2), "blocks.2.hook_attn_in"),
        (("mlp_in", 2), "blocks.2.hook_mlp_in"),
        (("pre", 6), "blocks.6.mlp.hook_pre"),
        (("post", 6, "m"), "blocks.6.mlp.hook_post"),
        (("pre_linear", 6, "mlp"), "blocks.6.mlp.hook_pre_linear"),
        (("scale", 2, "ln1"), "blocks.2.ln1.hook_scale"),
        (("normalized", 2, "ln2"), "blocks.2.ln2.hook_normalized"),
        (("scale",), "ln_final.hook_scale"),
        (("normalized",), "ln_final.hook_normalized"),
        (("normalised",), "ln_final.hook_normalized"),
        (("resid_pre", 3, "block"), "blocks.3.hook_resid_pre"),
    ],
)
def test_shorthands(args, expected):
    assert get_act_name(*args) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("k6a", "blocks.6.attn.hook_k"),
        ("resid_pre10", "blocks.10.hook_resid_pre"),
        ("scale4ln1", "blocks.4.ln1.hook_scale"),
        ("pattern0", "blocks.0.attn.hook_pattern"),
    ],
)
def test_compact_shorthands(name, expected):
    assert get_act_name(name) == expected


@pytest.mark.parametrize(
    "name", ["blocks.3.attn.hook_z", "hook_embed", "ln_final.hook_scale", "anything.custom"]
)
def test_full_names_pass_through(name):
    assert get_act_name(name) == name


@pytest.mark.parametrize(
    "args, match",
    [
        (("resid_pre",), "per-layer activation; pass a layer"),
        (("embed", 1), "model-level hook"),
        (("scale", 1), "needs layer_type 'ln1'"),
        (("q", 1, "mlp"), "attn activation"),
        (("attn_out", 1, "attn"), "drop layer_type"),
        (("resdi_pre", 1), "did you mean 'resid_pre'"),
        (("resid_pre", -1), "non-negative layer"),
        (("z", 1, "attnn"), "unknown layer_type 'attnn'"),
        (("blocks.0.hook_resid_pre", 1), "full hook name"),
    ],
)
def test_errors_say_what_was_wrong(args, match):
    with pytest.raises(ValueError, match=match):
        get_act_name(*args)


def test_layer_must_be_integer():
    with pytest.raises(TypeError, match="integer"):
        get_act_name("resid_pre", 1.5)


def test_hook_list_covers_every_shorthand():
    every = set(all_hook_names(3))
    assert len(every) == len(all_hook_names(3))  # no duplicates
    for short in [
        "resid_pre",
        "resid_mid",
        "resid_post",
        "attn_out",
        "mlp_out",
        "q",
        "k",
        "v",
        "z",
        "result",
        "attn_scores",
        "pattern",
        "rot_q",
        "rot_k",
        "q_input",
        "k_input",
        "v_input",
        "attn_in",
        "mlp_in",
        "pre",
        "post",
        "pre_linear",
    ]:
        assert get_act_name(short, 2) in every
    for ln in ("ln1", "ln2"):
        assert get_act_name("scale", 0, ln) in every
    assert set(MODEL_HOOK_NAMES) <= every
    assert set(HOOK_SHAPES) == set(ALL_HOOK_SUFFIXES) | set(MODEL_HOOK_NAMES)
    assert (
        all_hook_names(1)[0] == "hook_tokens" and all_hook_names(1)[-1] == "ln_final.hook_normalized"
    )


def test_split_hook_name():
    assert split_hook_name("blocks.12.attn.hook_z") == (12, "attn.hook_z")
    assert split_hook_name("hook_embed") == (None, "hook_embed")


def test_suggest_names_prefers_closest():
    known = all_hook_names(12)
    assert suggest_names("blocks.9.attn.hook_zz", known)[0] == "blocks.9.attn.hook_z"
    assert suggest_names("ln_final.hook_normalised", known)[0] == "ln_final.hook_normalized"
    assert suggest_names("resid_pre", known)[0] == "blocks.0.hook_resid_pre"  # suffix fallback
    assert suggest_names("qqqqqqqqqqqqqqqqqqqqqqqq", known) == []


def test_unknown_name_message():
    known = all_hook_names(12)
    msg = unknown_name_message("blocks.9.attn.hook_zz", known, n_layers=12)
    assert msg.startswith(
        "unknown hook name 'blocks.9.attn.hook_zz'; did you mean 'blocks.9.attn.hook_z'?"
    )
    msg = unknown_name_message("blocks.12.hook_resid_post", known, n_layers=12)
    assert "out of range" in msg and "did you mean 'blocks.11.hook_resid_post'?" in msg
    assert "no similar names" in unknown_name_message("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", known)
