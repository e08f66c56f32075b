// circuitscope attention view: plain JavaScript, no libraries, no network.
// Inlined by circuitscope/plot/attention.py as `(<this function>)(rootElement, data)`.
// data = {title, heads: [name], prompts: [{name, tokens: [str], pattern: [head][query][key]}]}
// The elements of a prompt (head buttons, token spans, heatmap cells) are built once when the
// prompt is chosen; hovering and clicking only restyle them, so nothing moves under the pointer.
(function (root, data) {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg"; // an XML namespace name, not a request
  var state = { prompt: 0, head: 0, preview: null, token: null, locked: false, mode: "dest" };
  var q = function (sel) { return root.querySelector(sel); };
  var promptSel = q(".csv-prompt"), headsBox = q(".csv-heads"), tokensBox = q(".csv-tokens");
  var info = q(".csv-info"), svg = q(".csv-heatmap"), modeBtn = q(".csv-mode");
  var spans = [], cells = [], focus = null, geometry = null; // cells[i][j]: rect of query i, key j

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; // textContent: tokens are never parsed as HTML
    return e;
  }
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  }
  function show(tok) { return tok.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5"); }
  function label(tokens, i) { return '"' + show(tokens[i]) + '"_' + i; }
  function blue(w) { // white -> #2166ac as w goes 0 -> 1
    w = Math.max(0, Math.min(1, w));
    return "rgb(" + Math.round(255 - 222 * w) + "," + Math.round(255 - 153 * w) + "," + Math.round(255 - 83 * w) + ")";
  }
  function prompt() { return data.prompts[state.prompt]; }
  function shownHead() { return state.preview === null ? state.head : state.preview; }
  function hoverToken(i) { if (!state.locked) { state.token = i; render(); } }

  // ---- built once per prompt --------------------------------------------------------------
  function thumbnail(pattern) { // a small canvas picture of one head's pattern
    var n = pattern.length, c = el("canvas"), px = Math.max(1, Math.floor(48 / n));
    c.width = c.height = n * px;
    var ctx = c.getContext("2d");
    for (var i = 0; i < n; i++) for (var j = 0; j < n; j++) { ctx.fillStyle = blue(pattern[i][j]); ctx.fillRect(j * px, i * px, px, px); }
    return c;
  }
  function build() {
    var p = prompt(), n = p.tokens.length;
    headsBox.textContent = ""; tokensBox.textContent = ""; svg.textContent = "";
    data.heads.forEach(function (name, h) {
      var b = el("button", "csv-head"); b.type = "button"; b.dataset.head = h;
      b.appendChild(thumbnail(p.pattern[h])); b.appendChild(el("span", null, name));
      b.addEventListener("mouseenter", function () { state.preview = h; render(); });
      b.addEventListener("mouseleave", function () { state.preview = null; render(); });
      b.addEventListener("click", function () { state.head = h; state.preview = null; render(); });
      headsBox.appendChild(b);
    });
    spans = p.tokens.map(function (tok, i) {
      var s = el("span", "csv-token", show(tok)); s.dataset.index = i;
      s.addEventListener("mouseenter", function () { hoverToken(i); });
      s.addEventListener("click", function () { state.locked = !(state.locked && state.token === i); state.token = i; render(); });
      tokensBox.appendChild(s);
      return s;
    });
    // the full pattern as an SVG heatmap: rows = destination (query), columns = source (key)
    var cell = Math.max(8, Math.min(28, Math.floor(420 / n)));
    var longest = Math.max.apply(null, p.tokens.map(function (t, i) { return Math.min(18, label(p.tokens, i).length); }));
    var pad = 12 + 6.5 * longest, font = Math.min(12, cell - 1); // pad: room for row / column labels
    geometry = { cell: cell, pad: pad, n: n };
    svg.setAttribute("width", pad + n * cell + 80); svg.setAttribute("height", pad + n * cell + 10);
    cells = [];
    for (var i = 0; i < n; i++) {
      var name = label(p.tokens, i).slice(0, 18);
      svgEl("text", { x: pad - 4, y: pad + i * cell + cell * 0.7, "text-anchor": "end", "font-size": font }, name);
      svgEl("text", { transform: "translate(" + (pad + i * cell + cell * 0.7) + "," + (pad - 4) + ") rotate(-60)", "font-size": font }, name);
      cells.push([]);
      for (var j = 0; j < n; j++) {
        var r = svgEl("rect", { x: pad + j * cell, y: pad + i * cell, width: cell, height: cell, "class": "csv-cell" });
        r.appendChild(document.createElementNS(SVG, "title"));
        r.dataset.q = i; r.dataset.k = j;
        r.addEventListener("mouseenter", function (ev) { hoverToken(+ev.target.dataset[state.mode === "dest" ? "q" : "k"]); });
        cells[i].push(r);
      }
    }
    focus = svgEl("rect", { fill: "none", stroke: "#f4a30b", "stroke-width": 2, "class": "csv-focus", visibility: "hidden" });
  }

  // ---- restyled on every change --------------------------------------------------------------
  function weightsFor(pattern, t) { // [key] for mode "dest", [query] for mode "src"
    if (t === null) return null;
    return state.mode === "dest" ? pattern[t] : pattern.map(function (row) { return row[t]; });
  }
  function render() {
    var p = prompt(), h = shownHead(), pat = p.pattern[h], g = geometry, dest = state.mode === "dest";
    Array.prototype.forEach.call(headsBox.children, function (b) { b.classList.toggle("csv-selected", +b.dataset.head === state.head); });
    var w = weightsFor(pat, state.token), top = w ? Math.max.apply(null, w) || 1 : 1;
    spans.forEach(function (s, i) {
      s.style.background = w ? blue(w[i] / top) : "";
      s.title = w ? label(p.tokens, i) + ": " + w[i].toFixed(3) : "";
      s.classList.toggle("csv-active", i === state.token);
    });
    svg.dataset.head = h; svg.dataset.prompt = state.prompt;
    cells.forEach(function (row, i) {
      row.forEach(function (r, j) {
        r.setAttribute("fill", blue(pat[i][j]));
        r.firstChild.textContent = data.heads[h] + " " + label(p.tokens, i) + " \u2192 " + label(p.tokens, j) + ": " + pat[i][j].toFixed(3);
      });
    });
    if (state.token === null) {
      focus.setAttribute("visibility", "hidden");
    } else { // outline the token's row (where it attends) or column (what attends to it)
      focus.setAttribute("x", g.pad + (dest ? 0 : state.token * g.cell)); focus.setAttribute("y", g.pad + (dest ? state.token * g.cell : 0));
      focus.setAttribute("width", dest ? g.n * g.cell : g.cell); focus.setAttribute("height", dest ? g.cell : g.n * g.cell);
      focus.setAttribute("visibility", "visible");
    }
    if (w) {
      var best = w.indexOf(Math.max.apply(null, w));
      info.textContent = data.heads[h] + ": " + label(p.tokens, state.token) +
        (dest ? " attends most to " : " is attended most by ") + label(p.tokens, best) +
        " (" + w[best].toFixed(3) + ")" + (state.locked ? "  [locked: click the token again to release]" : "");
    } else {
      info.textContent = data.heads[h] + ": hover a token (or a cell below) to see its attention; click to lock.";
    }
  }

  // ---- controls ---------------------------------------------------------------------------
  data.prompts.forEach(function (p, i) { var o = el("option", null, p.name); o.value = i; promptSel.appendChild(o); });
  promptSel.addEventListener("change", function () {
    state.prompt = +promptSel.value; state.token = null; state.locked = false; build(); render();
  });
  modeBtn.addEventListener("click", function () {
    state.mode = state.mode === "dest" ? "src" : "dest";
    modeBtn.textContent = state.mode === "dest" ? "hover shows: where a token attends" : "hover shows: what attends to a token";
    render();
  });
  tokensBox.addEventListener("mouseleave", function () { hoverToken(null); });
  svg.addEventListener("mouseleave", function () { hoverToken(null); });
  build(); render();
})
