"""The command line never shows a traceback: each failure is one line on stderr and a non-zero code.

Also: ``--out`` is checked before the model is loaded, ``--top`` must be positive, and results
get the user's normal file mode (0644 under umask 022), not mkstemp's private 0600.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch
import transformers as tf

import circuitscope.cli as cli
from circuitscope.cli import main
from circuitscope.io import check_writable, write_json_atomic


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("cli_err_model")
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(tiny_tokenizer), n_positions=64)
    tf.GPT2LMHeadModel(cfg).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("circuitscope")
    return lines[0]


def copy_model(folder, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(folder, dst)
    return dst


def test_truncated_weights(folder, tmp_path, capsys):
    bad = copy_model(folder, tmp_path)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    assert main(["demo", "--model", str(bad)]) != 0
    assert "model.safetensors" in one_line_error(capsys)


def test_pickle_only_folder_with_code_in_the_pickle(folder, tmp_path, capsys):
    bad = copy_model(folder, tmp_path)
    (bad / "model.safetensors").unlink()
    torch.save({"w": shutil.copytree}, bad / "pytorch_model.bin")  # a global weights_only refuses
    assert main(["demo", "--model", str(bad)]) != 0
    assert "pytorch_model.bin" in one_line_error(capsys)


def test_unknown_model(capsys):
    assert main(["demo", "--model", "no-such-org/no-such-model"]) == 2
    assert "no-such-org/no-such-model" in one_line_error(capsys)


@pytest.mark.parametrize("device, says", [("foo", "unknown device 'foo'"), ("cuda:7", "cuda")])
def test_bad_device(folder, device, says, capsys, monkeypatch):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    monkeypatch.setattr("circuitscope.HookedTransformer.from_pretrained", _must_not_load)
    assert main(["demo", "--model", str(folder), "--device", device]) == 2
    assert says in one_line_error(capsys)


def _must_not_load(*args, **kwargs):
    raise AssertionError("the model was loaded before the arguments were checked")


@pytest.mark.parametrize("make_out, says", [
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt" / "out.json", "is a file, not a folder"),
])
def test_unusable_out_is_refused_before_loading(folder, tmp_path, capsys, monkeypatch, make_out, says):
    monkeypatch.setattr("circuitscope.HookedTransformer.from_pretrained", _must_not_load)
    assert main(["demo", "--model", str(folder), "--out", str(make_out(tmp_path))]) == 2
    line = one_line_error(capsys)
    assert line.startswith("circuitscope: error: --out:") and says in line


def test_read_only_folder_is_refused(tmp_path, monkeypatch):
    # Simulated: these tests may run as root, who can write anywhere; the folder refuses the
    # probe file exactly as a read-only folder would.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("circuitscope.io.tempfile.TemporaryFile", refuse)
    with pytest.raises(PermissionError, match="not writable"):
        check_writable(tmp_path / "sub" / "out.json")


@pytest.mark.parametrize("flag, value", [("--top", "0"), ("--top", "-3"), ("--prompts", "0"), ("--top", "two"),
                                         ("--max-memory-mb", "0"), ("--batch-size", "-1")])
def test_numeric_arguments_must_be_positive(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", flag, value])
    assert exit_.value.code == 2
    line = one_line_error(capsys)
    assert f"argument {flag}:" in line and "--help" in line


def test_unexpected_error_is_one_line_and_verbose_shows_the_traceback(folder, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("circuitscope.tasks.summary.summarize_task", boom)
    assert main(["demo", "--model", str(folder), "--prompts", "4"]) == 1
    assert "RuntimeError: boom second line (rerun with -v" in one_line_error(capsys)
    assert main(["-v", "demo", "--model", str(folder), "--prompts", "4"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_exits_130(folder, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("circuitscope.tasks.summary.summarize_task", interrupt)
    assert main(["demo", "--model", str(folder), "--prompts", "4"]) == 130
    assert one_line_error(capsys) == "circuitscope: interrupted"


# ------------------------------------------------------------------ file modes


@pytest.fixture
def umask():
    def set_(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_results_get_the_users_file_mode(tmp_path, umask):
    umask(0o022)
    assert stat.S_IMODE(write_json_atomic(tmp_path / "a.json", {"x": 1}).stat().st_mode) == 0o644
    umask(0o077)
    assert stat.S_IMODE(write_json_atomic(tmp_path / "b.json", {"x": 1}).stat().st_mode) == 0o600
    existing = tmp_path / "c.json"
    existing.write_text("{}")
    existing.chmod(0o640)
    umask(0o022)
    write_json_atomic(existing, {"x": 2})
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and '"x": 2' in existing.read_text()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_demo_out_file_mode(folder, tmp_path, umask, capsys):
    umask(0o022)
    out = tmp_path / "new" / "demo.json"
    assert main(["demo", "--model", str(folder), "--prompts", "4", "--top", "1", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert cli.COMMANDS["demo"][2] is cli.demo  # the registry the parser is built from
