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
