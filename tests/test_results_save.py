"""Result.save picks the format from the suffix; top_indices gives indices ready for other calls."""

import json

import pytest
import torch

from circuitscope.results import Result


def test_save_json_or_figure_by_suffix(tmp_path):
    r = Result(torch.tensor([[1.0, -5.0], [3.0, 0.5]]), ("layer", "head"), title="t")
    assert json.loads(r.save(tmp_path / "r.json").read_text())["values"] == [[1.0, -5.0], [3.0, 0.5]]
    html = r.save(tmp_path / "r.html").read_text()
    assert "<script" in html and not html.lstrip().startswith("{")
    assert r.save(tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="cannot save a result as '.txt'"):
        r.save(tmp_path / "r.txt")


def test_top_indices_match_top_labels():
    r = Result(torch.tensor([[1.0, -5.0], [3.0, 0.5]]), ("layer", "head"))
    assert r.top_indices(3) == [(0, 1), (1, 0), (0, 0)]
    assert [label for label, _, _ in r.top(3)] == ["L0H1", "L1H0", "L0H0"]
    assert r.top_indices(2, by_abs=False) == [(1, 0), (0, 0)]
