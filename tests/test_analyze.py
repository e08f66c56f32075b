"""``circuitscope analyze``: one fast run on the default model, its files, its numbers, its page in
a real browser; the CLI's errors; a killed run leaves no report; ``models`` and ``tasks``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from circuitscope.cli import main

COMPLETE = '<meta name="circuitscope-report" content="complete">'


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze") / "report"
    assert main(["analyze", "--fast", "--out", str(out), "--no-progress"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_default_run_writes_report_results_and_pngs(fast_run):
    out, res = fast_run
    html = (out / "report.html").read_text()
    assert COMPLETE in html[-200:]
    assert res["model"]["name"] == "circuitscope/ioi" and res["task"]["name"] == "ioi"
    assert res["circuitscope_version"] and res["seed"] == 0 and res["timings"]["total"] > 0
    circuit = res["circuit"]
    assert all(isinstance(h, list) and len(h) == 2 for h in circuit["heads"])
    assert circuit["roles"]["L3H3"] == "suppressor" and circuit["roles"]["L3H0"] == "suppressor"
    faith = circuit["faithfulness"]
    assert set(faith) == {"value", "ci"} and faith["ci"][0] <= faith["value"] <= faith["ci"][1]
    assert faith["value"] >= 0.8  # the ioi organism's circuit keeps most of the logit difference
    assert circuit["evaluation"]["completeness"] and circuit["evaluation"]["minimality"]
    assert set(circuit["faithfulness_by_method"]) == {"mean", "template_mean", "zero", "resample"}
    assert circuit["faithfulness_by_method"]["mean"] == faith
    # every figure in the page has its PNG
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    for name in ("logit_lens", "dla_heads", "patch_resid_pre_pos", "patch_z_all", "sketch_direct_path",
                 "circuit_diagram", "attention_circuit", "evaluation_curve"):
        assert name in pngs and (out / "figures" / f"{name}.png").stat().st_size > 2000
    for name in pngs:
        assert f'id="plot-{name}"' in html or f"{name}" in html
    assert 'href="#fig-sketch_direct_path"' in html and 'id="fig-sketch_direct_path"' in html  # evidence links
    assert "suppressors" in html and "http://" not in html.split("<body", 1)[1].replace("http://www.w3.org", "")


@pytest.mark.browser
def test_report_renders_in_headless_chromium(fast_run, open_page, tmp_path):
    out, res = fast_run
    page, errors = open_page(out / "report.html")
    plots = page.locator(".plotly-graph-div")
    assert plots.count() >= 20
    page.wait_for_function("() => [...document.querySelectorAll('.plotly-graph-div')]"
                           ".every(d => d.querySelector('svg.main-svg'))", timeout=60_000)
    diagram = page.locator("svg.cs-diagram")
    assert diagram.count() == 1
    assert diagram.locator("g.cs-node").count() == len(res["circuit"]["heads"])
    assert diagram.locator("g.cs-edge").count() == len(res["circuit"]["edges"])
    assert page.locator(".csv-attn").count() == 1
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    diagram.screenshot(path=tmp_path / "diagram.png")
    assert (tmp_path / "report.png").stat().st_size > 100_000
    assert errors == []


def test_a_task_the_model_cannot_do_stops_after_the_baselines(tmp_path):
    out = tmp_path / "speaker"
    assert main(["analyze", "--task", "speaker", "--fast", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["baselines"]["does_task"] is False
    assert res["circuit"]["heads"] == [] and "does not do this task" in res["circuit"]["skipped"]
    assert "No circuit to find" in (out / "report.html").read_text()


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse rejects bad option values before the command runs
        return stop.code


@pytest.mark.parametrize("args,message", [
    (["--task", "nonsense"], "--task 'nonsense': not one of ioi, days, induction, speaker"),
    (["--model", "/nonexistent/model-folder"], "/nonexistent/model-folder"),
    (["--ablation", "median"], "invalid choice"),
    (["--direct-threshold", "-1"], "must be a positive number"),
    (["--task", "/tmp"], "is a folder; give a task name"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, capsys):
    code = _exit_code(["analyze", *args, "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "report.html").exists()


def test_task_file_with_bad_lines(tmp_path, capsys):
    bad = tmp_path / "task.jsonl"
    bad.write_text('{"prompt": "When Mary and John went out, John gave it to", "answer": " Mary", "wrong_answer": " John"}\n'
                   '{"prompt": "no answers here"}\n'
                   'not json at all\n')
    assert main(["analyze", "--task", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.jsonl:2" in err and "task.jsonl:3" in err


def test_killed_run_leaves_no_report(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "circuitscope", "analyze", "--fast", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(8)  # loaded and part-way through the walk
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "report.html").exists()
    assert not (out / "results.json").exists()


def test_models_and_tasks_list_what_is_available(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "circuitscope/ioi" in text and "circuitscope/attn-only-2l" in text and "4 layers x 4 heads" in text
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["ioi", "days", "induction", "speaker"]
    for cmd in ("analyze", "models", "tasks"):
        with pytest.raises(SystemExit) as exit_info:
            main([cmd, "--help"])
        assert exit_info.value.code == 0
        assert "usage: circuitscope " + cmd in capsys.readouterr().out


def test_out_must_be_a_folder_and_a_rerun_replaces_the_report(tmp_path, capsys):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert _exit_code(["analyze", "--out", str(afile), "--no-progress"]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    out = tmp_path / "again"
    for _ in range(2):  # the second run into the same folder replaces the first one's files
        assert main(["analyze", "--task", "speaker", "--fast", "--out", str(out), "--no-progress"]) == 0
    assert COMPLETE in (out / "report.html").read_text()[-200:]
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]
