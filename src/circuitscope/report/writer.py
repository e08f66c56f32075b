"""Writing a report's files so that report.html exists only when everything beside it is complete.

:func:`write_outputs` renders every file into a hidden staging folder inside the output folder
(``out/.staging-<random>``, so the final renames stay on one file system), then moves them into
place with :func:`os.replace`: the PNGs (``figures/<name>.png``) and ``results.json`` first,
``report.html`` last. So:

* an exception (a figure that fails to draw, a full disk, Ctrl-C) removes the staging folder and
  leaves the output folder as it was: no report.html from this run, an older run's files intact;
* once the moves start, the old report.html is removed first (it describes the files about to be
  replaced), so a folder caught half-way has no report.html at all;
* a process killed outright (SIGKILL, power loss before the moves) leaves at most a hidden
  ``.staging-*`` folder, which a later run deletes once it is an hour old
  (:func:`clean_stale_staging`).

A report.html, which ends with the completeness marker, therefore always sits beside the
results.json and figures of the same run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from circuitscope.io import write_text_atomic
from circuitscope.plot.figure import Figure
from circuitscope.report.document import Report, check_name

__all__ = ["write_outputs", "to_jsonable", "clean_stale_staging", "STAGING_PREFIX", "STALE_AFTER_S"]

STAGING_PREFIX = ".staging-"
STALE_AFTER_S = 3600.0


def to_jsonable(obj: Any, where: str = "results") -> Any:
    """``obj`` as plain JSON data: NaN and infinities -> None, tensors and arrays -> lists,
    objects with ``to_dict()`` (Estimate, Result) -> their dict, paths -> strings.

    Anything else raises TypeError naming where it sits (``results['dla']['heads']``)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else float(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if callable(getattr(obj, "to_dict", None)):
        return to_jsonable(obj.to_dict(), where)
    if hasattr(obj, "detach"):  # torch tensor, possibly on a GPU
        obj = obj.detach().cpu()
    if callable(getattr(obj, "tolist", None)):  # numpy / torch arrays and scalars
        return to_jsonable(obj.tolist(), where)
    raise TypeError(f"{where}: cannot write a {type(obj).__name__} to results.json")


def clean_stale_staging(out_dir: str | os.PathLike, older_than: float = STALE_AFTER_S) -> list[Path]:
    """Delete ``.staging-*`` folders in ``out_dir`` last modified more than ``older_than`` seconds
    ago (left by killed runs; younger ones may belong to a run still going). Returns those removed."""
    removed, now = [], time.time()
    for path in Path(out_dir).glob(f"{STAGING_PREFIX}*"):
        try:
            if path.is_dir() and not path.is_symlink() and now - path.stat().st_mtime > older_than:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:  # vanished or unreadable: not ours to fight over
            continue
    return removed


def write_outputs(out_dir: str | os.PathLike, report: Report, results: dict[str, Any],
                  figures: Optional[dict[str, Figure]] = None, progress: bool = True,
                  dpi: int = 150) -> dict[str, Any]:
    """Write ``report.html``, ``results.json`` and ``figures/<name>.png`` into ``out_dir`` atomically.

    ``figures``: name -> Figure to save as PNG (default: every named item of ``report``);
    ``progress``: a tqdm bar on stderr while the PNGs are drawn. Returns
    ``{"report": Path, "results": Path, "figures": {name: Path}}``. See the module doc for what
    a failure or a kill leaves behind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out)
    figures = report.figures() if figures is None else dict(figures)
    for name, fig in figures.items():
        check_name(name)
        if not isinstance(fig, Figure):
            raise TypeError(f"figures[{name!r}] must be a circuitscope.plot Figure, got {type(fig).__name__}")
    payload = json.dumps(to_jsonable(results), indent=2, allow_nan=False) + "\n"  # fails before any drawing

    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        staged = _stage(staging, report, payload, figures, progress, dpi)
        return _commit(staging, out, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(staging: Path, report: Report, payload: str, figures: dict[str, Figure], progress: bool,
           dpi: int) -> dict[str, Path]:
    """Render everything into ``staging``; report.html is written last."""
    from tqdm.auto import tqdm

    staged: dict[str, Path] = {}
    (staging / "figures").mkdir()
    bar = tqdm(figures.items(), total=len(figures), desc="figures", unit="png", disable=not progress or not figures)
    for name, fig in bar:
        bar.set_postfix_str(name, refresh=False)
        staged[name] = Path(fig.save(staging / "figures" / f"{name}.png", dpi=dpi))
    bar.close()
    write_text_atomic(staging / "results.json", payload)
    write_text_atomic(staging / "report.html", report.to_html(complete=True))
    return staged


def _commit(staging: Path, out: Path, staged: dict[str, Path]) -> dict[str, Any]:
    """Move the staged files into ``out``: the old report.html goes first, then earlier runs' PNGs
    this run does not replace, the new one last."""
    report_path, results_path = out / "report.html", out / "results.json"
    report_path.unlink(missing_ok=True)
    final: dict[str, Path] = {}
    if staged:
        (out / "figures").mkdir(exist_ok=True)
    keep = {f"{name}.png" for name in staged}
    for old in (out / "figures").glob("*.png") if (out / "figures").is_dir() else []:
        if old.name not in keep:  # a figure of an earlier run that this run does not have
            old.unlink(missing_ok=True)
    for name, path in staged.items():
        final[name] = out / "figures" / f"{name}.png"
        os.replace(path, final[name])
    os.replace(staging / "results.json", results_path)
    os.replace(staging / "report.html", report_path)
    return {"report": report_path, "results": results_path, "figures": final}
