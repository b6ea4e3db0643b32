"""k-anonymity: small groups never reach any output."""

from __future__ import annotations

import json

import fixtures
import pytest

from usagetrace._internal.analytics import kanon

pytest.importorskip("duckdb")

from usagetrace._internal.analytics.core import Analytics, build_report
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine
from usagetrace._internal.analytics.render import FORMATS, render


def _row(label, n, ids=None, calls=10, part="p"):
    return {"part": part, "label": label, "installs": n, "calls": calls, "p50": 1.0,
            "_ids": ids if ids is not None else ([f"{label}-{i}" for i in range(n)] if n < 5 else [])}


def test_small_rows_fold_into_other_with_union_count():
    """Rows under k fold into one "(other)" row: additive columns summed, unit = size of the id union."""
    rows = [_row("big", 9), _row("a", 3), _row("b", 2, ids=["a-0", "x"]), _row("c", 1)]
    res = kanon.apply(rows, k=5, unit="installs", labels=("label",), additive=("calls",), partition=("part",))
    assert res.rows[0] == {"part": "p", "label": "big", "installs": 9, "calls": 10, "p50": 1.0}
    other = res.rows[1]
    assert other["label"] == kanon.OTHER and other["calls"] == 30
    assert other["installs"] == len({"a-0", "a-1", "a-2", "x", "c-0"})
    assert other["p50"] is None  # non-additive values of folded rows are discarded
    assert res.folded == 3 and res.dropped == 0


def test_rows_describing_nobody_are_counted_apart():
    """A dropped row with no unit at all (an empty totals row) is counted as empty: it hides nobody."""
    rows = [_row("big", 9), _row("a", 2), _row("none", 0, ids=[])]
    res = kanon.apply(rows, k=5, unit="installs")
    assert [r["label"] for r in res.rows] == ["big"] and res.dropped == 2 and res.empty == 1


def test_other_row_below_k_is_dropped():
    """When the folded groups together still cover fewer than k ids, nothing of them is returned."""
    rows = [_row("big", 9), _row("a", 2, ids=["u1", "u2"]), _row("b", 2, ids=["u1", "u2"])]
    res = kanon.apply(rows, k=5, unit="installs", labels=("label",), additive=("calls",))
    assert [r["label"] for r in res.rows] == ["big"] and res.dropped == 2


def test_partitions_fold_separately():
    """Folding happens within each partition (e.g. one "other" per adoption period)."""
    rows = [_row("a", 3, part="d1"), _row("b", 3, part="d1"), _row("c", 3, part="d2")]
    res = kanon.apply(rows, k=5, unit="installs", labels=("label",), partition=("part",))
    assert [(r["part"], r["label"]) for r in res.rows] == [("d1", kanon.OTHER)]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "5", True, None])
def test_k_must_be_a_positive_int(bad):
    """k is validated everywhere it enters: only integers >= 1 are accepted."""
    with pytest.raises(ValueError):
        kanon.check_k(bad)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    d = tmp_path_factory.mktemp("k")
    fixtures.write(fixtures.generate(), d)
    return DuckDBEngine.from_path(d)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rare_function_and_small_page_absent_from_every_format(engine, fmt):
    """A function used by two installs and a page seen by two users appear in no output format at k=5."""
    out = render(build_report(Analytics(engine, package=fixtures.PKG, k=5)), fmt)
    assert fixtures.RARE_FUNCTION not in out
    assert "/admin" not in out
    assert "mypkg.core.Model.predict" in out


def test_k1_is_an_explicit_opt_out(engine):
    """With k=1 chosen explicitly the rare function is visible, proving the suppression above is k's doing."""
    out = render(build_report(Analytics(engine, package=fixtures.PKG, k=1)), "json")
    assert fixtures.RARE_FUNCTION in out and "/admin" in out
    meta = json.loads(render(build_report(Analytics(engine, package=fixtures.PKG, k=5)), "json"))["meta"]
    assert meta["k"] == 5 and meta["suppressed"]["feature_usage"]["dropped"] == 1


def test_every_question_row_meets_k(engine):
    """Every row of every report section describes at least k installs or users (or is an "other" row that does)."""
    report = build_report(Analytics(engine, package=fixtures.PKG, k=7))
    checked = 0
    for t in report.sections.values():
        for r in t.rows:
            unit = r.get("installs", r.get("users"))
            assert unit is not None and unit >= 7, (t.name, r)
            checked += 1
    assert checked > 20


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """A maintainer's own development data: one install, written by the real pipeline in development mode."""
    import os
    import subprocess
    import sys

    from tests.conftest import EXAMPLES

    d = tmp_path_factory.mktemp("own")
    env = dict(os.environ, PYTHONPATH=EXAMPLES, TINYSTATS_TELEMETRY="1", USAGETRACE_DEV_FILE=str(d / "dev.jsonl"),
               USAGETRACE_HOME=str(d / "home"))
    env.pop("PYTEST_CURRENT_TEST", None)
    code = ("import tinystats\ntinystats.mean([1, 2])\ntinystats.median([3, 1])\n"
            "try:\n    tinystats.zscore([2, 2], 2)\nexcept ValueError:\n    pass\n"
            "from usagetrace._internal import instrumentation\nassert instrumentation.get('tinystats').flush(10)\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    return DuckDBEngine.from_path(d / "dev.jsonl")


@pytest.mark.parametrize("fmt", FORMATS)
def test_own_data_says_what_k_hid_and_that_k1_shows_it(own_data, fmt):
    """On one install's data every format says how many rows k hid, per section and in all, and that --k 1 shows them."""
    report = build_report(Analytics(own_data, package="tinystats"))
    hidden = report.meta["suppressed"]
    rows = sum(s["dropped"] + s["folded"] for s in hidden.values())
    assert hidden["feature_usage"]["dropped"] == 3  # mean, median, zscore: one install each
    assert all(not t.rows for t in report.sections.values())
    out = render(report, fmt)
    assert f"k-anonymity (k=5) left out {rows} rows in {len(hidden)} sections" in out
    assert "The selected data holds fewer than 5 installs in all." in out
    assert "--k 1 shows every row" in out
    assert "k-anonymity: 3 rows left out, each describing fewer than k=5 installs." in out
    shown = render(build_report(Analytics(own_data, package="tinystats", k=1)), fmt)
    assert "tinystats.zscore" in shown and "--k 1 shows" not in shown and "k-anonymity (k=1)" not in shown
    assert "row left out" not in shown and "rows left out" not in shown


def test_k1_hint_only_when_it_would_show_more(engine):
    """Where nothing was hidden there is no hint; where rows were folded only, the hint counts them."""
    report = build_report(Analytics(engine, package=fixtures.PKG, k=1))
    assert report.meta["hidden_note"] == "" and report.meta["suppressed"] == {}
    assert all(t.hidden == "" for t in report.sections.values())
    k5 = build_report(Analytics(engine, package=fixtures.PKG, k=5))
    assert "--k 1 shows every row" in k5.meta["hidden_note"]
    assert "The selected data holds fewer than" not in k5.meta["hidden_note"]
