"""The report's charts, drawn by plotly.js in the page. The only plotly importer: the
figures are plain dicts, plotly turns them into ``<div>`` + script, and its JS bundle
is inlined once per page (``plotly_js``) so the file needs no network to view."""

from __future__ import annotations

import time
from typing import Any

from pipeline.digest import short
from pipeline.htmlreport.data import ReportData, app_list, short_app

MIB = 1024 * 1024
CONFIG = {"displaylogo": False, "responsive": True}
FONT = {"family": "DejaVu Sans, sans-serif", "size": 12}


def plotly_js() -> str:
    """plotly.js itself, to inline in a ``<script>`` element."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _div(figure: dict[str, Any], div_id: str) -> str:
    import plotly.io

    return str(
        plotly.io.to_html(
            figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=CONFIG
        )
    )


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0},
        "height": height,
        "font": FONT,
        "margin": {"l": 150, "r": 30, "t": 50, "b": 50},
        "plot_bgcolor": "#ffffff",
        **extra,
    }


def bytes_figure(data: ReportData) -> dict[str, Any]:
    """Per app: MiB in layers shared with other apps vs in layers of its own."""
    apps = [short_app(a.app) for a in data.apps]
    bars = [
        ("shared with other apps", [a.shared / MIB for a in data.apps], "#f6c667"),
        ("exclusive to the app", [a.exclusive / MIB for a in data.apps], "#5b8ccf"),
    ]
    traces = [
        {
            "type": "bar",
            "orientation": "h",
            "name": name,
            "y": apps,
            "x": values,
            "marker": {"color": color},
            "hovertemplate": "%{y}: %{x:.1f} MiB<extra>" + name + "</extra>",
        }
        for name, values, color in bars
    ]
    layout = _layout(
        "Bytes per app: shared vs exclusive layers",
        max(260, 28 * len(apps) + 120),
        barmode="stack",
        xaxis={"title": {"text": "MiB"}, "gridcolor": "#e5e5e5"},
        yaxis={"autorange": "reversed"},
        legend={"orientation": "h", "y": -0.2},
    )
    return {"data": traces, "layout": layout}


def timeline_figure(data: ReportData) -> dict[str, Any]:
    """Each recorded build: duration (bars) and cache hit ratio (line), by start time."""
    when = [f"#{b.id}" for b in data.builds]
    colors = {"ok": "#5b8ccf", "failed": "#d9534f", "error": "#d9534f", "running": "#aaaaaa"}
    text = [
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(b.started))} {b.status}:"
        f" {b.built} built, {b.cached} cached"
        for b in data.builds
    ]
    traces = [
        {
            "type": "bar",
            "name": "duration (s)",
            "x": when,
            "y": [round(b.seconds, 3) for b in data.builds],
            "text": text,
            "marker": {"color": [colors.get(b.status, "#888888") for b in data.builds]},
            "textposition": "none",
            "hovertemplate": "%{x} %{text}<br>%{y:.2f} s<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "cache hit ratio",
            "x": when,
            "y": [b.hit_ratio for b in data.builds],
            "yaxis": "y2",
            "line": {"color": "#2e9e5b"},
            "text": text,
            "hovertemplate": "%{x} %{text}<br>%{y:.0%} hits<extra></extra>",
        },
    ]
    layout = _layout(
        "Recent builds: duration and cache hit ratio",
        360,
        xaxis={"title": {"text": "build (oldest first)"}, "type": "category"},
        yaxis={"title": {"text": "seconds"}, "gridcolor": "#e5e5e5", "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "hit ratio"},
            "overlaying": "y",
            "side": "right",
            "range": [-0.02, 1.05],
            "tickvals": [0, 0.25, 0.5, 0.75, 1],
            "tickformat": ".0%",
        },
        legend={"orientation": "h", "y": -0.3},
        margin={"l": 60, "r": 60, "t": 50, "b": 90},
    )
    return {"data": traces, "layout": layout}


def slowest_figure(data: ReportData) -> dict[str, Any]:
    """The slowest built steps of the recorded builds."""
    labels = [
        f"{s.label[:44]}{'…' if len(s.label) > 44 else ''} ({short(s.key, 8)})"
        for s in data.slowest
    ]
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": labels,
        "x": [round(s.seconds, 3) for s in data.slowest],
        "text": [f"build #{s.build}: {app_list(s.apps)}" for s in data.slowest],
        "marker": {"color": "#8e6cc4"},
        "hovertemplate": "%{y}<br>%{x:.2f} s<br>%{text}<extra></extra>",
    }
    layout = _layout(
        "Slowest steps (built, in recent builds)",
        max(260, 28 * len(labels) + 120),
        xaxis={"title": {"text": "seconds"}, "gridcolor": "#e5e5e5"},
        yaxis={"autorange": "reversed", "automargin": True},
        margin={"l": 20, "r": 30, "t": 50, "b": 50},
    )
    if not data.slowest:
        layout["annotations"] = [
            {"text": "no built steps recorded", "showarrow": False, "x": 0.5, "y": 0.5,
             "xref": "paper", "yref": "paper"}
        ]  # fmt: skip
    return {"data": [trace], "layout": layout}


def chart_divs(data: ReportData) -> dict[str, str]:
    """Chart id -> its HTML (a div and the script that draws it)."""
    return {
        "bytes": _div(bytes_figure(data), "plot-bytes"),
        "timeline": _div(timeline_figure(data), "plot-timeline"),
        "slowest": _div(slowest_figure(data), "plot-slowest"),
    }
