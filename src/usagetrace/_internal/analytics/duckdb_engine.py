"""Embedded engine: OTLP JSON lines loaded once into DuckDB tables.

Loading reads every file with ``read_json`` and the explicit schema of
:mod:`.otlp_json` (nothing is inferred), flattens the nested export requests
into the two normalized tables ``ut_spans`` and ``ut_points`` described in
:mod:`.queries`, and drops the raw data. Questions then run on those tables,
which is what keeps each one well under a second on a million spans.

A file DuckDB refuses (a truncated line, a type that does not fit the schema)
is re-read line by line: each bad line is skipped and reported as
``file:line: reason`` in :attr:`DuckDBEngine.warnings`, the good lines are
loaded. Lines that are valid JSON but not export requests are reported the
same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import otlp_json
from .otlp_json import LineProblem
from .queries import Relations

__all__ = ["DuckDBDialect", "DuckDBEngine", "import_duckdb"]

_INSTALL_HINT = "pip install 'usagetrace[report]'"


def import_duckdb() -> Any:
    """Import duckdb or raise a RuntimeError naming the extra to install."""
    try:
        import duckdb
    except ImportError as exc:
        raise RuntimeError(
            f"the embedded report engine needs DuckDB, which is not installed: {_INSTALL_HINT}"
        ) from exc
    return duckdb


class DuckDBDialect:
    """DuckDB spellings for :class:`.queries.Dialect`."""

    name = "duckdb"

    def literal(self, value: str) -> str:
        """A quoted string literal."""
        return "'" + str(value).replace("'", "''") + "'"

    def week(self, day_col: str) -> str:
        """The Monday starting the ISO week of a DATE column."""
        return f"CAST(date_trunc('week', {day_col}) AS DATE)"

    def quantile(self, col: str, q: float) -> str:
        """Linearly interpolated (R-7) exact quantile."""
        return f"quantile_cont({col}, {q!r})"

    def ids_if_small(self, col: str, k: int) -> str:
        """Distinct ``col`` values of the group if fewer than ``k``, else an empty list."""
        return f"CASE WHEN count(DISTINCT {col}) < {int(k)} THEN list(DISTINCT {col}) ELSE CAST([] AS VARCHAR[]) END"

    def distinct_list(self, col: str) -> str:
        """All distinct values of ``col`` in the group."""
        return f"list(DISTINCT {col})"

    def try_float(self, expr: str) -> str:
        """``expr`` as a double, or NULL."""
        return f"TRY_CAST({expr} AS DOUBLE)"

    def measures(self, spans: str) -> str:
        """(command, install_id, measure, value) rows from command spans."""
        return (
            "(SELECT command, install_id, m.k AS measure, m.v AS value FROM "
            f"(SELECT command, install_id, unnest(measures) AS m FROM {spans} s0 "
            "WHERE span_name = 'usagetrace.command') u)"
        )


_MACROS = """
CREATE OR REPLACE MACRO ut_val(v) AS coalesce(v.stringValue, v.intValue, lower(v.boolValue), v.doubleValue);
CREATE OR REPLACE MACRO ut_get(attrs, name) AS
    coalesce(ut_val((list_filter(attrs, lambda x: x.key = name))[1].value), '');
CREATE OR REPLACE MACRO ut_ns(v) AS coalesce(TRY_CAST(v AS BIGINT), 0);
CREATE OR REPLACE MACRO ut_day(ns) AS CAST(make_timestamp(ns // 1000) AS DATE);
"""


def _resource_cols(attrs: str) -> str:
    pairs = [
        ("package", "service.name"),
        ("version", "service.version"),
        ("install_id", "usagetrace.install.id"),
        ("session_id", "usagetrace.session.id"),
        ("py_version", "process.runtime.version"),
        ("os_type", "os.type"),
        ("arch", "host.arch"),
        ("run_context", "usagetrace.run.context"),
    ]
    cols = [f"ut_get({attrs}, '{key}') AS {name}" for name, key in pairs]
    cols.append(f"CASE WHEN ut_get({attrs}, 'usagetrace.ci') = 'true' THEN 1 ELSE 0 END AS ci")
    return ", ".join(cols)


_RES = "package, version, install_id, session_id, py_version, os_type, arch, ci, run_context"

_SPANS_SQL = f"""
CREATE TABLE ut_spans AS
WITH r AS (SELECT unnest(resourceSpans) AS rs FROM ut_raw WHERE resourceSpans IS NOT NULL),
s AS (SELECT {_resource_cols('rs.resource.attributes')}, unnest(rs.scopeSpans) AS ss FROM r),
p AS (SELECT {_RES}, coalesce(ss.scope.name, '') AS scope_name, unnest(ss.spans) AS sp FROM s),
e AS (SELECT *, (list_filter(sp.events, lambda ev: ev.name = 'exception'))[1].attributes AS exc,
             ut_ns(sp.startTimeUnixNano) AS start_ns FROM p WHERE {{scope_filter}})
SELECT start_ns AS ts_ns, ut_day(start_ns) AS day, {_RES},
       coalesce(sp.name, '') AS span_name,
       ut_get(sp.attributes, 'code.function.name') AS fn,
       ut_get(sp.attributes, 'usagetrace.module') AS module,
       CASE WHEN sp.status.code IN ('2', 'STATUS_CODE_ERROR') THEN 1 ELSE 0 END AS is_error,
       ut_get(sp.attributes, 'error.type') AS error_type,
       ut_get(sp.attributes, 'usagetrace.exception.signature') AS signature,
       ut_get(exc, 'exception.type') AS exc_type,
       ut_get(exc, 'exception.stacktrace') AS stacktrace,
       ut_ns(sp.endTimeUnixNano) - start_ns AS duration_ns,
       ut_get(sp.attributes, 'usagetrace.command.name') AS command,
       TRY_CAST(nullif(ut_get(sp.attributes, 'process.exit.code'), '') AS BIGINT) AS exit_code,
       ut_get(sp.attributes, 'usagetrace.event.name') AS event_name,
       ut_get(sp.attributes, 'url.path') AS url_path,
       ut_get(sp.attributes, 'usagetrace.page.kind') AS page_kind,
       ut_get(sp.attributes, 'usagetrace.user.hash') AS user_hash,
       ut_get(sp.attributes, 'usagetrace.callback.id') AS callback_id,
       list_transform(list_filter(sp.attributes, lambda x: starts_with(x.key, 'usagetrace.measure.')),
                      lambda x: {{'k': substr(x.key, 20), 'v': coalesce(ut_val(x.value), '')}}) AS measures
FROM e
"""

_POINTS_SQL = f"""
CREATE TABLE ut_points AS
WITH r AS (SELECT unnest(resourceMetrics) AS rm FROM ut_raw WHERE resourceMetrics IS NOT NULL),
s AS (SELECT {_resource_cols('rm.resource.attributes')}, unnest(rm.scopeMetrics) AS sm FROM r),
m AS (SELECT {_RES}, coalesce(sm.scope.name, '') AS scope_name, unnest(sm.metrics) AS me FROM s),
d AS (SELECT {_RES}, me.name AS metric,
             CASE WHEN me.sum.aggregationTemporality IN ('1', 'AGGREGATION_TEMPORALITY_DELTA') THEN 1
                  WHEN me.sum.aggregationTemporality IN ('2', 'AGGREGATION_TEMPORALITY_CUMULATIVE') THEN 2
                  ELSE 0 END AS temporality,
             unnest(me.sum.dataPoints) AS dp
      FROM m WHERE me.sum IS NOT NULL AND {{scope_filter}})
SELECT ut_ns(dp.timeUnixNano) AS ts_ns, ut_day(ut_ns(dp.timeUnixNano)) AS day, {_RES},
       coalesce(metric, '') AS metric,
       ut_get(dp.attributes, 'code.function.name') AS fn,
       ut_get(dp.attributes, 'usagetrace.outcome') AS outcome,
       ut_get(dp.attributes, 'error.type') AS error_type,
       ut_get(dp.attributes, 'usagetrace.drop.reason') AS drop_reason,
       coalesce(TRY_CAST(dp.asInt AS DOUBLE), TRY_CAST(dp.asDouble AS DOUBLE), 0) AS value,
       temporality
FROM d
"""


class DuckDBEngine:
    """Questions over OTLP JSON lines, answered by an in-process DuckDB."""

    dialect = DuckDBDialect()

    def __init__(self, con: Any, *, warnings: Sequence[str] = (), skipped_lines: int = 0) -> None:
        self.con = con
        self.warnings: list[str] = list(warnings)
        self.skipped_lines = skipped_lines
        self.load_seconds: float = 0.0

    # --- loading ---------------------------------------------------------------
    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        scope: str | None = "usagetrace",
        threads: int | None = None,
    ) -> DuckDBEngine:
        """Load a file or a directory of OTLP JSON lines (``.zst`` too)."""
        import time

        files = otlp_json.discover_files(path)
        duckdb = import_duckdb()
        t0 = time.perf_counter()
        con = duckdb.connect(":memory:")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET preserve_insertion_order = false")
        engine = cls(con)
        engine._load(files, scope)
        engine.load_seconds = time.perf_counter() - t0
        return engine

    def _read_json_sql(self, files: Sequence[Path], compression: str) -> str:
        lit = self.dialect.literal
        cols = "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in otlp_json.RAW_COLUMNS.items()) + "}"
        file_list = "[" + ", ".join(lit(str(f)) for f in files) + "]"
        return (
            f"SELECT filename, resourceSpans, resourceMetrics FROM read_json({file_list}, "
            f"format = 'newline_delimited', columns = {cols}, compression = {lit(compression)}, "
            "filename = true, maximum_object_size = 536870912)"
        )

    def _insert_files(self, files: Sequence[Path], tmpdir: str) -> list[LineProblem]:
        """Insert files into ut_raw, falling back to a line-by-line scan for refused files."""
        problems: list[LineProblem] = []
        groups: dict[str, list[Path]] = {}
        for f in files:
            groups.setdefault("zstd" if otlp_json.is_zstd(f) else "none", []).append(f)
        for compression, group in groups.items():
            try:
                self.con.execute("INSERT INTO ut_raw " + self._read_json_sql(group, compression))
                continue
            except Exception:  # noqa: BLE001 - find out which file(s), below
                pass
            for f in group:
                try:
                    self.con.execute("INSERT INTO ut_raw " + self._read_json_sql([f], compression))
                    continue
                except Exception:  # noqa: BLE001 - re-read line by line
                    pass
                clean = Path(tmpdir) / f"clean-{len(os.listdir(tmpdir))}.jsonl"
                with open(clean, "w", encoding="utf-8") as out:
                    result = otlp_json.scan_file(f, out)
                problems.extend(result.problems)
                if result.good_lines:
                    try:
                        self.con.execute(
                            "INSERT INTO ut_raw SELECT * REPLACE (" + self.dialect.literal(str(f)) + " AS filename) "
                            "FROM (" + self._read_json_sql([clean], "none") + ")"
                        )
                    except Exception as exc:  # noqa: BLE001
                        problems.append(LineProblem(str(f), 0, f"file could not be read even line by line: {exc}"))
        return problems

    def _load(self, files: Sequence[Path], scope: str | None) -> None:
        con = self.con
        con.execute(
            "CREATE TABLE ut_raw (filename VARCHAR, "
            + ", ".join(f'"{k}" {v}' for k, v in otlp_json.RAW_COLUMNS.items())
            + ")"
        )
        with tempfile.TemporaryDirectory(prefix="usagetrace-load-") as tmpdir:
            problems = self._insert_files(files, tmpdir)
        # valid JSON that is not an export request reads as an all-NULL row: locate those lines
        empty = con.execute(
            "SELECT filename, count(*) FROM ut_raw WHERE resourceSpans IS NULL AND resourceMetrics IS NULL "
            "GROUP BY filename ORDER BY filename"
        ).fetchall()
        seen = {(p.file, p.line) for p in problems}
        for filename, _n in empty:
            for p in otlp_json.scan_file(Path(filename)).problems:
                if (p.file, p.line) not in seen:
                    problems.append(p)
                    seen.add((p.file, p.line))
        con.execute(_MACROS)
        scope_filter = "TRUE" if scope is None else f"scope_name = {self.dialect.literal(scope)}"
        con.execute(_SPANS_SQL.replace("{scope_filter}", scope_filter))
        con.execute(_POINTS_SQL.replace("{scope_filter}", scope_filter))
        con.execute("DROP TABLE ut_raw")
        non_delta = con.execute("SELECT count(*) FROM ut_points WHERE temporality <> 1").fetchone()[0]
        if non_delta:
            self.warnings.append(
                f"ignored {non_delta} metric points that are not delta sums "
                "(usagetrace sends deltas; cumulative data needs a deltatocumulative-free pipeline)"
            )
        con.execute("DELETE FROM ut_points WHERE temporality <> 1")
        self.skipped_lines = len(problems)
        for p in problems:
            self.warnings.append(f"skipped {p}")

    # --- querying --------------------------------------------------------------
    def relations(self, package: str | None, since_ns: int | None) -> Relations:
        """The normalized relations, filtered to one package and a time window."""
        conds = []
        if package is not None:
            conds.append(f"package = {self.dialect.literal(package)}")
        if since_ns is not None:
            conds.append(f"ts_ns >= {int(since_ns)}")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        return Relations(spans=f"(SELECT * FROM ut_spans{where})", points=f"(SELECT * FROM ut_points{where})")

    def execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one query; return column names and rows."""
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        return names, cur.fetchall()

    def counts(self) -> dict[str, int]:
        """How many spans and metric points are loaded."""
        return {
            "spans": self.con.execute("SELECT count(*) FROM ut_spans").fetchone()[0],
            "points": self.con.execute("SELECT count(*) FROM ut_points").fetchone()[0],
        }

    def close(self) -> None:
        """Release the DuckDB connection."""
        self.con.close()
