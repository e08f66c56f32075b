"""The README's Python tour runs as written (on the shipped organism)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(circuit: bool = False) -> list[str]:
    """The README's Python blocks: the circuit example, or the tour blocks in order."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if ("sketch_circuit" in b) == circuit]


def test_readme_circuit_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_blocks(circuit=True)[0], str(README), "exec"), scope)
    assert scope["circuit"].roles["L3H3"] == "suppressor"
    assert scope["evaluation"].faithfulness.value > 0.8
    assert (tmp_path / "circuit.svg").read_text().lstrip().startswith("<svg")


def test_readme_tour_runs():
    block = _blocks()[0]
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    assert scope["logits"].shape == scope["ablated"].shape
    assert not torch.allclose(scope["logits"], scope["ablated"])


def test_readme_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    commands = [lines[i + 1] for i, line in enumerate(lines[:12]) if line == "```bash"]
    assert len(commands) == 2
    assert commands[0].endswith("circuitscope analyze") and commands[1].endswith("-m pytest")
    assert (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text().strip().endswith(commands[1])


def test_readme_patching_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in _blocks()[:2]:
        exec(compile(block, str(README), "exec"), scope)
    n_layers, n_heads = scope["model"].cfg.n_layers, scope["model"].cfg.n_heads
    width = scope["task"].clean_tokens.shape[1]
    assert scope["heads"].values.shape == (n_layers, width, n_heads)
    assert scope["movers"].values.shape == (n_layers, n_heads)
    assert scope["fast"].values.shape == scope["heads"].values.shape
    assert scope["dla"].ci is not None
    html = (tmp_path / "z_by_pos.html").read_text()
    assert "<script" in html and 'src="http' not in html
