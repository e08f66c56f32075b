"""The attention view drawn by circuitsvis's own JavaScript, inlined (no CDN).

The circuitsvis package (PyPI) ships its React components as one pre-built browser bundle,
``circuitsvis/dist/cdn/iife.js`` (about 1.3 MB), which defines a global ``CircuitsVis``. Its own
Python helper links that bundle from a CDN whenever the machine is online, so a saved page
breaks offline. Here the bundle is read from the installed package and inlined, and a prompt
menu switches between one ``AttentionHeads`` panel per prompt (circuitsvis shows one prompt).

Used by ``attention_view(..., backend="circuitsvis")``; needs ``pip install circuitsvis``.
"""

from __future__ import annotations

import html
import re
import uuid
from importlib import resources

from circuitscope.plot.figure import require

__all__ = ["circuitsvis_bundle", "circuitsvis_html"]


def circuitsvis_bundle() -> str:
    """The text of circuitsvis's bundled browser script, safe to put inside ``<script>``."""
    require("circuitsvis", "the circuitsvis attention view", hint="pip install circuitsvis")
    path = resources.files("circuitsvis").joinpath("dist", "cdn", "iife.js")
    if not path.is_file():
        raise ImportError("this circuitsvis install has no dist/cdn/iife.js bundle; use backend='circuitscope'")
    text = path.read_text(encoding="utf-8")
    # a source-map comment makes browser dev tools fetch a file that is not there: drop it
    text = re.sub(r"^//# sourceMappingURL=.*$", "", text, flags=re.MULTILINE)
    # "</script" would end the inline script early; "<\/script" means the same inside JS strings.
    return text.replace("</script", "<\\/script")


def circuitsvis_html(view) -> str:
    """An HTML fragment: prompt menu + circuitsvis ``AttentionHeads`` for the chosen prompt.

    ``view`` is an :class:`~circuitscope.plot.attention.AttentionView`; panels are rendered the
    first time their prompt is chosen."""
    from circuitscope.plot.attention import _script_json

    root = f"cv-{uuid.uuid4().hex[:12]}"
    data = view.data()
    options = "".join(f'<option value="{b}">{html.escape(p["name"])}</option>' for b, p in enumerate(data["prompts"]))
    panels = "".join(f'<div class="cv-panel" id="{root}-{b}" style="display:none"></div>' for b in range(len(data["prompts"])))
    title = f"<h3>{html.escape(view.title)}</h3>" if view.title else ""
    script = f"""
(function () {{
  var data = JSON.parse(document.getElementById("{root}-data").textContent);
  var select = document.querySelector("#{root} select"), done = {{}};
  function choose(b) {{
    data.prompts.forEach(function (_, i) {{ document.getElementById("{root}-" + i).style.display = i === b ? "" : "none"; }});
    if (!done[b]) {{
      done[b] = true;
      var p = data.prompts[b];
      CircuitsVis.render("{root}-" + b, CircuitsVis.AttentionHeads,
        {{tokens: p.tokens, attention: p.pattern, attentionHeadNames: data.heads}});
    }}
  }}
  select.addEventListener("change", function () {{ choose(+select.value); }});
  choose(0);
}})();"""
    return (
        f'<div id="{root}" class="cv-attn">{title}<label>prompt <select>{options}</select></label>{panels}</div>'
        f'<script type="application/json" id="{root}-data">{_script_json(data)}</script>'
        f"<script>{circuitsvis_bundle()}</script><script>{script}</script>"
    )
