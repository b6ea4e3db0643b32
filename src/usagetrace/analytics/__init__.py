"""Answers about how a package is used, from the telemetry usagetrace collected.

Embedded by default (OTLP JSON lines read with DuckDB: ``pip install
'usagetrace[report]'``), or the collector's ClickHouse tables at scale
(``pip install 'usagetrace[clickhouse]'``). Both engines run the same
questions and give the same answers. Every answer is k-anonymized: a row
describing fewer than ``k`` distinct installs (hashed users, for page
questions) is folded into ``"(other)"`` or left out.

Example::

    from usagetrace.analytics import open_analytics, render

    a = open_analytics("collector-data/", package="mypkg", since="30d")
    a.feature_usage()[:5]        # [{'function': 'mypkg.io.read_table', 'calls': ..., 'installs': ...}, ...]
    a.adoption("week")           # [{'period': '2026-01-05', 'version': '1.2.0', 'installs': 41}, ...]
    html = render(a.report(), "html")
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

from .._internal.analytics.clickhouse_engine import ClickHouseEngine
from .._internal.analytics.core import Analytics, AnalyticsError, Report, Table, build_report
from .._internal.analytics.duckdb_engine import DuckDBEngine
from .._internal.analytics.kanon import DEFAULT_K, OTHER
from .._internal.analytics.render import FORMATS, render

__all__ = [
    "DEFAULT_K",
    "FORMATS",
    "OTHER",
    "Analytics",
    "AnalyticsError",
    "ClickHouseEngine",
    "DuckDBEngine",
    "Report",
    "Table",
    "build_report",
    "open_analytics",
    "render",
]


def open_analytics(
    source: str | os.PathLike[str],
    *,
    package: str | None = None,
    since: str | _dt.datetime | _dt.date | None = None,
    k: int = DEFAULT_K,
    **engine_options: Any,
) -> Analytics:
    """Open a data source and return an :class:`Analytics` over it.

    ``source`` is a file or directory of OTLP JSON lines (``.zst`` too) or a
    ``clickhouse://user:pass@host:port/db`` URL. ``since`` is ``"30d"``-style
    or a date. ``k`` is the k-anonymity threshold (>= 1).
    """
    s = os.fspath(source)
    if s.startswith(("clickhouse://", "clickhouses://")):
        engine: Any = ClickHouseEngine.from_url(s, **engine_options)
    else:
        engine = DuckDBEngine.from_path(s, **engine_options)
    return Analytics(engine, package=package, since=since, k=k)
