"""The figure object every plotting function returns.

A :class:`Figure` holds the numbers and labels of one picture and knows two ways to draw it:

* **interactive** with plotly (:meth:`Figure.to_plotly`): hover labels, zoom, facets. The HTML
  from :meth:`Figure.to_html` carries plotly's JavaScript inline, read from the installed plotly
  package, so a saved report opens offline, years later, with no CDN and no network;
* **static** with matplotlib (:meth:`Figure.to_matplotlib`): PNG, SVG or PDF for papers and CI
  artefacts, drawn without a browser, a GUI backend or kaleido.

In a notebook a figure displays itself (``_repr_html_``); elsewhere :meth:`Figure.show` opens it
in the default web browser. Subclasses (one per kind: :mod:`.heatmap`, :mod:`.line`,
:mod:`.scatter`, :mod:`.bar`) implement ``to_plotly`` and ``draw``.
"""

from __future__ import annotations

import importlib
import tempfile
import webbrowser
from pathlib import Path
from types import ModuleType
from typing import Any

from circuitscope.io import write_text_atomic

__all__ = ["Figure", "STATIC_FORMATS", "require", "INSTALL_HINT"]

STATIC_FORMATS = (".png", ".svg", ".pdf")

# ---------------------------------------------------------------------- optional dependencies
# The core install stays light: plotly (interactive HTML) and matplotlib (PNG / SVG) come with
# the ``plot`` extra and are imported only when a figure is drawn, with an error that says what
# to install instead of a bare "No module named 'plotly'" deep inside a call.
INSTALL_HINT = 'pip install "circuitscope[plot]"'


def require(module: str, purpose: str, hint: str = INSTALL_HINT) -> ModuleType:
    """Import ``module`` or raise an ImportError that says what to install (``hint``).

    >>> go = require("plotly.graph_objects", "interactive figures")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ImportError(
            f"circuitscope.plot needs {top!r} for {purpose}, and it is not installed. "
            f"Install it with: {hint}"
        ) from exc


def plotly_go() -> ModuleType:
    """``plotly.graph_objects``: builds every interactive figure."""
    return require("plotly.graph_objects", "interactive (HTML) figures")


def plotly_io() -> ModuleType:
    """``plotly.io``: turns a plotly figure into self-contained HTML."""
    return require("plotly.io", "HTML output")


def matplotlib_figure() -> ModuleType:
    """``matplotlib.figure``: draws PNG / SVG files without a browser (no pyplot, no GUI)."""
    require("matplotlib", "PNG / SVG output")
    return require("matplotlib.figure", "PNG / SVG output")


# Plotly's modebar logo links to plotly's website; a report should not carry that link.
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


class Figure:
    """Base class: a picture that can be shown, turned into HTML, or saved as HTML/PNG/SVG.

    >>> fig = heatmap(per_head_dla, title="DLA per head")   # doctest: +SKIP
    >>> fig.save("dla.html"); fig.save("dla.png")            # doctest: +SKIP

    ``title`` is shown above the plot; ``width`` / ``height`` are pixels for the interactive
    figure (the static one uses the same aspect ratio at ``dpi`` 100 per inch).
    """

    title: str = ""
    width: int = 720
    height: int = 480

    # -------------------------------------------------------------- for subclasses
    def to_plotly(self) -> Any:
        """The interactive figure as a ``plotly.graph_objects.Figure`` (for further styling)."""
        raise NotImplementedError

    def draw(self, fig: Any) -> None:
        """Draw the static figure onto an empty ``matplotlib.figure.Figure``."""
        raise NotImplementedError

    # -------------------------------------------------------------- outputs
    def to_html(self, full_html: bool = True) -> str:
        """Self-contained HTML: plotly's JavaScript is inlined (about 4.8 MB), nothing is fetched.

        ``full_html=False`` returns a ``<div>`` fragment (with the same inline script) to embed in
        a larger page or a notebook output."""
        pio = plotly_io()
        return pio.to_html(
            self.to_plotly(), include_plotlyjs=True, include_mathjax=False, full_html=full_html,
            config=_PLOTLY_CONFIG, default_width="100%", default_height=f"{self.height}px",
        )

    def to_matplotlib(self) -> Any:
        """The static figure as a ``matplotlib.figure.Figure`` (no pyplot state, no GUI)."""
        mfig = matplotlib_figure().Figure(figsize=(self.width / 100, self.height / 100), layout="constrained")
        self.draw(mfig)
        return mfig

    def save(self, path: str | Path, dpi: int = 150) -> Path:
        """Write the figure; the suffix picks the format.

        ``.html`` -> interactive, self-contained (see :meth:`to_html`); ``.png`` / ``.svg`` /
        ``.pdf`` -> static, drawn by matplotlib at ``dpi``. Returns the path written."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".html", ".htm"):
            return write_text_atomic(path, self.to_html())
        if suffix in STATIC_FORMATS:
            path.parent.mkdir(parents=True, exist_ok=True)
            mfig = self.to_matplotlib()
            mfig.savefig(path, dpi=dpi, format=suffix[1:])
            return path
        raise ValueError(f"cannot save a figure as {suffix or 'a file without a suffix'!r}: use .html, .png, .svg or .pdf")

    def show(self) -> None:
        """Display the figure: inline in a notebook, otherwise in the default web browser.

        Outside a notebook the HTML goes to a temporary file (it is self-contained, so the
        browser needs no network) and that file's path is printed in case no browser opens."""
        if _in_notebook():
            from IPython.display import display

            display(self)
            return
        with tempfile.NamedTemporaryFile("w", suffix=".html", prefix="circuitscope-", delete=False, encoding="utf-8") as fh:
            fh.write(self.to_html())
        print(f"figure written to {fh.name}")
        webbrowser.open(Path(fh.name).as_uri())

    def _repr_html_(self) -> str:
        """Notebook display: the HTML fragment, with plotly's JavaScript inline (works offline,
        and in a notebook saved and reopened without a kernel)."""
        return self.to_html(full_html=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.title!r})"


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``display`` renders HTML), False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
