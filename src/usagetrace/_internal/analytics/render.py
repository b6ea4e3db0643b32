"""Render a :class:`~.core.Report` as a terminal table, JSON, CSV or one offline HTML file.

Everything here works on the already k-anonymized report; nothing queries data.
The HTML output is a single self-contained file: inline CSS and inline SVG
charts generated here (no JavaScript, no fonts or scripts fetched). Every value
that came from telemetry is escaped, since a function name is attacker-controlled
text as far as a report viewer is concerned.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from .core import Report, Table

__all__ = ["FORMATS", "csv_safe", "render", "terminal_safe"]

FORMATS = ("table", "json", "csv", "html")

_PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]


def render(report: Report, fmt: str = "table") -> str:
    """Render ``report`` in one of :data:`FORMATS`."""
    if fmt == "table":
        return _render_table(report)
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, sort_keys=False, default=str) + "\n"
    if fmt == "csv":
        return _render_csv(report)
    if fmt == "html":
        return _render_html(report)
    raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


# --- hostile text ------------------------------------------------------------------
# Every value in a report came from telemetry, which anyone who can reach the
# endpoint can send. The collector masks names of the wrong shape, but the
# report does not rely on it: the terminal and CSV outputs are made safe here.

#: Terminal escape sequences (CSI ``ESC [ … final``, OSC ``ESC ] … BEL|ST``, other ``ESC x``, 8-bit CSI):
#: removed whole, so no part of one reaches the terminal.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?|\x9b[0-?]*[ -/]*[@-~]?")
#: What is left of control characters (C0 but newline, DEL, C1) and the bidirectional-text controls
#: that reorder what a terminal shows: each shown as U+FFFD.
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def terminal_safe(text: str, newlines: bool = True) -> str:
    """``text`` without terminal escape sequences and control characters (each remaining one shown as U+FFFD).

    ``newlines=False`` replaces line breaks too (one table cell, one line).
    """
    text = _CONTROLS.sub("\ufffd", _ESCAPES.sub("", text))
    return text if newlines else text.replace("\n", "\ufffd")


def csv_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs: control characters as in :func:`terminal_safe`, and a text
    starting with ``= + - @``, tab or carriage return prefixed with ``'`` (OWASP). Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return terminal_safe(value)


# --- cells ------------------------------------------------------------------------
def _is_ratio(col: str) -> bool:
    return col.endswith(("_share", "_rate")) or col == "share_of_command_installs"


def _cell(col: str, v: Any, width: int | None = 60) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and _is_ratio(col):
        return f"{v * 100:.1f}%"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        v = ", ".join(map(str, v))
    s = str(v)
    if "\n" in s:
        s = s.split("\n", 1)[0] + " …"
    s = terminal_safe(s, newlines=False)
    if width and len(s) > width:
        s = s[: width - 1] + "…"
    return s


def _numeric(rows: Sequence[dict[str, Any]], col: str) -> bool:
    vals = [r.get(col) for r in rows if r.get(col) is not None]
    return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


# --- table ------------------------------------------------------------------------
def _meta_lines(report: Report) -> list[str]:
    m = report.meta
    lines = [
        f"usagetrace report — package {m.get('package') or '(none)'}"
        + (f", since {m['since']}" if m.get("since") else ", all data"),
        f"source: {m.get('source') or '-'} ({m.get('engine')}); k-anonymity threshold k={m.get('k')}; "
        f"{m.get('spans_loaded')} spans, {m.get('points_loaded')} metric points",
    ]
    if m.get("hidden_note"):
        lines.append(m["hidden_note"])
    if m.get("skipped_lines"):
        lines.append(f"WARNING: {m['skipped_lines']} input lines were skipped (see warnings)")
    for w in m.get("warnings", [])[:20]:
        lines.append(f"warning: {w}")
    if len(m.get("warnings", [])) > 20:
        lines.append(f"warning: … and {len(m['warnings']) - 20} more")
    return lines


def _table_text(t: Table) -> str:
    out = [t.title, "=" * len(t.title)]
    if not t.rows:
        out.append("(no rows with at least k installs)")
        out += [t.hidden] if t.hidden else []
        return "\n".join(out)
    cols = t.columns
    cells = [[_cell(c, r.get(c)) for c in cols] for r in t.rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    right = [_numeric(t.rows, c) for c in cols]

    def fmt(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(vals, widths, right)).rstrip()

    out.append(fmt(cols))
    out.append("  ".join("-" * w for w in widths))
    out.extend(fmt(row) for row in cells)
    out += [line for line in (t.note, t.hidden) if line]
    return "\n".join(out)


def _render_table(report: Report) -> str:
    parts = ["\n".join(_meta_lines(report))]
    parts.extend(_table_text(t) for t in report.sections.values())
    return terminal_safe("\n\n".join(parts) + "\n")  # titles, notes and warnings too (they name files)


# --- csv --------------------------------------------------------------------------
def _render_csv(report: Report) -> str:
    """One block per section: a ``# section`` line, ``# k-anonymity: …`` when rows were hidden, a header
    row, data rows, a blank line. The report's own ``# k-anonymity`` line, if any, starts the first block."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if report.meta.get("hidden_note"):
        buf.write(f"# {terminal_safe(report.meta['hidden_note'], newlines=False)}\n")
    for name, t in report.sections.items():
        buf.write(f"# {terminal_safe(name, newlines=False)}\n")
        if t.hidden:
            buf.write(f"# {terminal_safe(t.hidden, newlines=False)}\n")
        w.writerow([csv_safe(c) for c in t.columns])
        for r in t.rows:
            w.writerow([csv_safe(r.get(c)) for c in t.columns])
        buf.write("\n")
    return buf.getvalue()


# --- html -------------------------------------------------------------------------
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _noun(n: int, noun: str) -> str:
    return noun if n == 1 else noun + "s"


def _count(n: int, noun: str) -> str:
    """``1 install``, ``2 installs``, ``1,234 calls``."""
    return f"{n:,} {_noun(n, noun)}"


def _count_ticks(top: float, most: int = 5) -> list[int]:
    """Integer axis ticks 0, step, 2*step ... for counts up to ``top``: a 1-2-5 step, at most ``most`` ticks."""
    step = next(m * 10**e for e in range(19) for m in (1, 2, 5) if m * 10**e * (most - 1) >= top)
    return [i * step for i in range(max(1, math.ceil(top / step)) + 1)]


def _bar_chart(title: str, items: Sequence[tuple[str, float, str]], *, max_value: float | None = None,
               chart_id: str) -> str:
    """Horizontal bars: (label, value, value text)."""
    if not items:
        return ""
    label_w, bar_w, row_h, top = 300, 420, 22, 34
    height = top + row_h * len(items) + 10
    mx = max_value or max(v for _, v, _ in items) or 1
    parts = [
        f'<svg class="chart" id="{chart_id}" role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_w + bar_w + 90}" height="{height}" viewBox="0 0 {label_w + bar_w + 90} {height}">',
        f'<text x="0" y="18" class="ct">{_e(title)}</text>',
    ]
    for i, (label, value, text) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, bar_w * (value / mx)) if value else 0
        short = label if len(label) <= 42 else "…" + label[-41:]
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="cl">{_e(short)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                     f'fill="{_PALETTE[0]}"><title>{_e(label)}: {_e(text)}</title></rect>')
        parts.append(f'<text x="{label_w + w + 5:.1f}" y="{y + 15}" class="cv">{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(title: str, rows: Sequence[dict[str, Any]], *, chart_id: str) -> str:
    """Installs per version over time: one polyline per version."""
    periods = sorted({str(r["period"]) for r in rows})
    versions: list[str] = []
    for r in rows:
        if r["version"] not in versions:
            versions.append(r["version"])
    if not periods:
        return ""
    w, h, left, right, top, bottom = 760, 300, 50, 150, 34, 40
    pw, ph = w - left - right, h - top - bottom
    ticks = _count_ticks(max(r["installs"] for r in rows))
    mx = ticks[-1]
    xs = {p: left + (pw * i / max(1, len(periods) - 1) if len(periods) > 1 else pw / 2) for i, p in enumerate(periods)}

    def y(v: float) -> float:
        return top + ph - ph * v / mx

    parts = [
        f'<svg class="chart" id="{chart_id}" role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
        f'<text x="0" y="18" class="ct">{_e(title)}</text>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" class="axis"/>',
    ]
    for v in ticks:
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="cv">{v:,}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" class="grid"/>')
    step = max(1, len(periods) // 8)
    for i, p in enumerate(periods):
        if i % step == 0 or i == len(periods) - 1:
            parts.append(f'<text x="{xs[p]:.1f}" y="{top + ph + 16}" text-anchor="middle" class="cv">{_e(p[5:])}</text>')
    for vi, ver in enumerate(versions):
        color = "#999999" if ver == "(other)" else _PALETTE[vi % len(_PALETTE)]
        pts = sorted((str(r["period"]), r["installs"]) for r in rows if r["version"] == ver)
        # one polyline per run of consecutive periods: never draw a line across a period with no row
        index = {p: i for i, p in enumerate(periods)}
        runs: list[list[tuple[str, Any]]] = []
        for p, v in pts:
            if runs and index[p] == index[runs[-1][-1][0]] + 1:
                runs[-1].append((p, v))
            else:
                runs.append([(p, v)])
        for run in runs:
            if len(run) < 2:
                continue
            coords = " ".join(f"{xs[p]:.1f},{y(v):.1f}" for p, v in run)
            parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2.5" '
                         f'points="{coords}"><title>{_e(ver)}</title></polyline>')
        for p, v in pts:
            parts.append(f'<circle cx="{xs[p]:.1f}" cy="{y(v):.1f}" r="3" fill="{color}">'
                         f'<title>{_e(ver)} {_e(p)}: {_e(_count(v, "install"))}</title></circle>')
        ly = top + 10 + vi * 18
        parts.append(f'<rect x="{left + pw + 15}" y="{ly - 9}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{left + pw + 32}" y="{ly + 1}" class="cl">{_e(ver)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .warn{color:#a33}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums} .note{color:#666;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:18px} svg.chart{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:8px}
.ct{font-size:14px;font-weight:600;fill:#222} .cl{font-size:12px;fill:#333} .cv{font-size:11px;fill:#555}
.axis{stroke:#888} .grid{stroke:#eee}
"""


def _html_table(t: Table) -> str:
    hidden = f"<p class='note'>{_e(t.hidden)}</p>" if t.hidden else ""
    if not t.rows:
        return f"<h2>{_e(t.title)}</h2><p class='note'>No rows describe at least k installs.</p>{hidden}"
    head = "".join(f"<th>{_e(c)}</th>" for c in t.columns)
    num = {c: _numeric(t.rows, c) for c in t.columns}
    body = []
    for r in t.rows:
        tds = []
        for c in t.columns:
            v = r.get(c)
            full = "" if v is None else str(v)
            title = f' title="{_e(full)}"' if "\n" in full or len(full) > 60 else ""
            tds.append(f"<td{' class=n' if num[c] else ''}{title}>{_e(_cell(c, v))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    note = f"<p class='note'>{_e(t.note)}</p>" if t.note else ""
    return f"<h2 id='{_e(t.name)}'>{_e(t.title)}</h2><table><tr>{head}</tr>{''.join(body)}</table>{note}{hidden}"


def _render_html(report: Report) -> str:
    m = report.meta
    s = report.sections
    charts = []
    fu = s.get("feature_usage")
    if fu and fu.rows:
        items = [(r["function"], r["installs"], _count(r["installs"], "install")) for r in fu.rows[:15]]
        charts.append(_bar_chart("Feature usage: distinct installs per function", items, chart_id="chart-features"))
    ad = s.get("adoption")
    if ad and ad.rows:
        charts.append(_line_chart(ad.title, ad.rows, chart_id="chart-adoption"))
    er = s.get("error_rates")
    if er and er.rows:
        items = [(r["function"], r["error_rate"] or 0.0, f"{(r['error_rate'] or 0) * 100:.1f}%") for r in er.rows[:15]]
        charts.append(_bar_chart("Error rate per function", items, chart_id="chart-errors"))
    warn = "".join(f"<li class='warn'>{_e(w)}</li>" for w in m.get("warnings", [])[:50])
    ov = s.get("overview")
    ov_txt = ""
    if ov and ov.rows:
        o = ov.rows[0]
        counts = " · ".join(f"<b>{o[c]:,}</b> {_noun(o[c], c[:-1])}" for c in ("installs", "sessions", "calls"))
        ov_txt = (f"<p>{counts} · error rate <b>{_cell('error_rate', o['error_rate'])}</b> · "
                  f"{_e(o['first_seen'])} → {_e(o['last_seen'])}</p>")
    body = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>usagetrace report — {_e(m.get('package') or '')}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>usagetrace report — {_e(m.get('package') or '(no package)')}</h1>",
        f"<p class='meta'>{_e('since ' + m['since'] if m.get('since') else 'all data')} · "
        f"source {_e(m.get('source') or '-')} ({_e(m.get('engine'))}) · k-anonymity k={_e(m.get('k'))}: "
        "rows describing fewer than k installs (or users) are folded into “(other)” or left out · "
        f"generated {_e(m.get('generated_at'))}</p>",
        f"<p class='warn'>{_e(m['hidden_note'])}</p>" if m.get("hidden_note") else "",
        ov_txt,
        f"<ul>{warn}</ul>" if warn else "",
        f"<div class='charts'>{''.join(charts)}</div>",
    ]
    body.extend(_html_table(t) for n, t in s.items() if n != "overview")
    body.append("</body></html>")
    return "\n".join(b for b in body if b) + "\n"
