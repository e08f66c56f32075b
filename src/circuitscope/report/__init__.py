"""The circuit report: one self-contained HTML page, a circuit diagram, PNGs and results.json.

* :func:`analyze` -- the whole walk on a model and a task (what ``circuitscope analyze`` runs);
  ``analyze(model, task).write("out/")`` writes the report;
* :class:`Report` / :class:`Section` -- the document: sections of figures, tables, text and
  attention views; :meth:`Report.to_html` gives one offline page (plotly.js inlined once);
* :class:`CircuitDiagram` -- heads in layer rows, coloured by role, with weighted q/k/v edges,
  as SVG (inline, with hover numbers) or PNG (matplotlib);
* :func:`write_outputs` -- writes ``report.html``, ``results.json`` and ``figures/*.png`` so
  that report.html appears only when everything beside it is complete.

Used by ``circuitscope analyze``; figures need the ``plot`` extra (plotly, matplotlib).
"""

from circuitscope.report.pipeline import Analysis, AnalysisOptions, analyze
from circuitscope.report.diagram import DEFAULT_COLOUR, ROLE_COLOURS, CircuitDiagram, role_colour
from circuitscope.report.document import COMPLETE_MARKER, ITEM_KINDS, Report, Section
from circuitscope.report.writer import clean_stale_staging, to_jsonable, write_outputs

__all__ = [
    "analyze", "Analysis", "AnalysisOptions", "Report", "Section", "CircuitDiagram", "write_outputs", "to_jsonable", "clean_stale_staging",
    "ROLE_COLOURS", "DEFAULT_COLOUR", "role_colour", "COMPLETE_MARKER", "ITEM_KINDS",
]
