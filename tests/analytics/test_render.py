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
