"""The ClickHouse SQL (run on chdb over the exporter's DDL) gives the same answers as DuckDB."""

from __future__ import annotations

import fixtures
import pytest

pytest.importorskip("duckdb")
chdb_session = pytest.importorskip("chdb.session")

import ch_load

from usagetrace._internal.analytics.clickhouse_engine import ClickHouseEngine
from usagetrace._internal.analytics.core import Analytics, build_report
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine

QUESTIONS = [
    ("overview", {}), ("feature_usage", {}), ("rollup", {"level": "module"}), ("rollup", {"level": "class"}),
    ("adoption", {"interval": "day"}), ("adoption", {"interval": "week"}), ("python_versions", {}),
    ("platforms", {}), ("run_contexts", {}), ("error_rates", {}), ("exceptions", {}), ("signatures", {}),
    ("parameters", {}), ("crashes", {}), ("commands", {}), ("command_measures", {}), ("events", {}), ("page_views", {}),
    ("page_activity", {"path": "/"}), ("user_activity", {}), ("user_count", {}), ("user_count_by_path", {}),
    ("callbacks", {}), ("dropped", {}),
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    truth = fixtures.generate()
    d = tmp_path_factory.mktemp("both")
    fixtures.write(truth, d / "files")
    session = chdb_session.Session(str(d / "chdb"))
    ch_load.load(session, truth.lines, d, db="otel")
    ch = ClickHouseEngine.from_chdb(session, database="otel")
    duck = DuckDBEngine.from_path(d / "files")
    yield duck, ch
    duck.close()
    session.close()


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize(("name", "params"), QUESTIONS, ids=[q[0] + "-" + "-".join(map(str, q[1].values())) for q in QUESTIONS])
def test_same_answer_on_both_engines(engines, name, params, k):
    """Each question returns identical rows from DuckDB over files and ClickHouse over the exporter tables."""
    duck, ch = engines
    got_duck = getattr(Analytics(duck, package=fixtures.PKG, k=k), name)(**params)
    got_ch = getattr(Analytics(ch, package=fixtures.PKG, k=k), name)(**params)
    assert got_duck == got_ch
    assert got_duck not in (None, [], {})  # every question has data in the fixture


def test_since_and_package_filters_agree(engines):
    """Time-window and package filters are applied identically by both engines."""
    duck, ch = engines
    for pkg, since in (("mypkg", "2025-11-15"), ("otherpkg", None)):
        d = Analytics(duck, package=pkg, since=since, k=1)
        c = Analytics(ch, package=pkg, since=since, k=1)
        assert d.feature_usage() == c.feature_usage()
        assert d.adoption() == c.adoption()


def test_full_report_identical(engines):
    """The whole report (every section) is identical across engines, apart from the engine name."""
    duck, ch = engines
    rd = build_report(Analytics(duck, package=fixtures.PKG)).to_dict()
    rc = build_report(Analytics(ch, package=fixtures.PKG)).to_dict()
    assert rd["sections"] == rc["sections"]
    assert len(rd["sections"]) >= 15
