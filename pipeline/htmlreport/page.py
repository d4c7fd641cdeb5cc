"""One self-contained HTML page: the DAG's SVG, the charts and plotly.js inlined, no
reference to anything outside the file.

The page records its own health for tests and curious users: a script that runs
before anything else collects uncaught errors and ``console.error`` calls, and after
load writes into ``#report-status`` how many charts were drawn (``data-plots``), how
many DAG nodes the SVG holds (``data-dag-nodes``) and the errors (``data-errors``, a
JSON list).
"""

from __future__ import annotations

import html
import time

from pipeline.htmlreport import dag, plots
from pipeline.htmlreport.data import ReportData, app_list

STATUS_SCRIPT = """
window.__reportErrors = [];
window.addEventListener("error", function (e) {
  window.__reportErrors.push(String(e.message || e));
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__reportErrors.push(Array.prototype.map.call(arguments, String).join(" "));
    return original.apply(console, arguments);
  };
})();
function reportStatus() {
  var status = document.getElementById("report-status");
  var drawn = 0;
  document.querySelectorAll(".js-plotly-plot").forEach(function (div) {
    if (div.querySelector(".main-svg")) { drawn += 1; }
  });
  status.setAttribute("data-plots", drawn);
  status.setAttribute("data-dag-nodes", document.querySelectorAll("#dag svg g.node").length);
  status.setAttribute("data-errors", JSON.stringify(window.__reportErrors));
  status.setAttribute("data-done", "1");
}
window.addEventListener("load", function () { reportStatus(); setTimeout(reportStatus, 200); });
"""

STYLE = """
body { font-family: "DejaVu Sans", sans-serif; margin: 24px; color: #1d2733; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; }
.muted { color: #5d6b7a; }
#dag { overflow: auto; border: 1px solid #d5dbe3; border-radius: 6px; padding: 8px; }
#dag svg { max-width: 100%; height: auto; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 8px; border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border-bottom: 1px solid #e3e7ec; padding: 4px 10px; text-align: left; }
td.num, th.num { text-align: right; white-space: nowrap; }
.plot { margin-top: 12px; }
"""


def render(data: ReportData) -> str:
    """The whole page (see the module docstring)."""
    svg = dag.render_svg(data)
    charts = plots.chart_divs(data)
    made = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rows = "".join(
        f"<tr><td class=num>{s.seconds:.2f} s</td><td>#{s.build}</td>"
        f"<td><code>{html.escape(s.label)}</code></td><td>{html.escape(app_list(s.apps))}</td></tr>"
        for s in data.slowest
    )
    slow_table = (
        "<table><tr><th class=num>time</th><th>build</th><th>step</th><th>apps</th></tr>"
        f"{rows}</table>"
        if rows
        else "<p class=muted>No built steps recorded yet.</p>"
    )
    shared = sum(1 for n in data.nodes if n.shared)
    legend = (
        f'<span style="background:{dag.SHARED_FILL}">shared by 2+ apps</span>'
        f'<span style="background:{dag.OWN_FILL}">one app</span>'
        f'<span style="background:{dag.BASE_FILL}">base image</span>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(data.title)}</title>
<script>{STATUS_SCRIPT}</script>
<style>{STYLE}</style>
<script>{plots.plotly_js()}</script>
</head>
<body>
<h1>{html.escape(data.title)}</h1>
<p class="muted">{html.escape(data.summary)}; {len(data.builds)} recent builds recorded;
written {html.escape(made)} by pipeline report.</p>
<div id="report-status" data-done="0"></div>
<h2>The merged DAG ({len(data.nodes)} nodes, {shared} shared)</h2>
<p class="legend">{legend}</p>
<div id="dag">{svg}</div>
<div class="plot">{charts["bytes"]}</div>
<div class="plot">{charts["timeline"]}</div>
<div class="plot">{charts["slowest"]}</div>
<h2>Slowest steps</h2>
{slow_table}
</body>
</html>
"""
