"""Optional dependencies of :mod:`circuitscope.plot`, imported only when a figure is drawn.

The core install stays light: plotly (interactive HTML) and matplotlib (PNG / SVG without a
browser) come with the ``plot`` extra. Each importer raises an :class:`ImportError` that says
exactly what to install, instead of a bare ``No module named 'plotly'`` deep in a call.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "require"]

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
