"""Embedded engine: OTLP JSON lines loaded once into DuckDB tables.

Loading reads every file with ``read_json`` and the explicit schema of
:mod:`.otlp_json` (nothing is inferred), flattens the nested export requests
into the two normalized tables ``ut_spans`` and ``ut_points`` described in
:mod:`.queries`, and drops the raw data. Questions then run on those tables,
which is what keeps each one well under a second on a million spans.

A file DuckDB refuses (a truncated line, a type that does not fit the schema,
bytes that are not UTF-8) is re-read line by line: each bad line is skipped and
reported as ``file:line: reason`` in :attr:`DuckDBEngine.warnings`, the good
lines are loaded. Lines that are valid JSON but not export requests are
reported the same way. Bytes that are not UTF-8 do not make a line bad: they
are read as U+FFFD, and the file gets one warning saying so.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import otlp_json
from .otlp_json import LineProblem
from .queries import Relations

__all__ = ["DuckDBDialect", "DuckDBEngine", "default_cache_path", "import_duckdb"]

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

    def null_int(self) -> str:
        """A NULL BIGINT."""
        return "CAST(NULL AS BIGINT)"

    def params(self, spans: str) -> str:
        """(fn, install_id, param) rows: one per parameter a sampled call set."""
        return f"(SELECT fn, install_id, unnest(params) AS param FROM {spans} s0 WHERE fn <> '')"

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
-- the string items of an arrayValue read as JSON text; NULL for anything else a hostile writer put there
CREATE OR REPLACE MACRO ut_strings(a) AS
    CASE WHEN json_valid(a) AND json_type(a) = 'OBJECT' AND json_type(a, '$.values') = 'ARRAY'
         THEN json_extract_string(a, '$.values[*].stringValue') END;
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
        ("upload", "usagetrace.upload"),
    ]
    cols = [f"ut_get({attrs}, '{key}') AS {name}" for name, key in pairs]
    cols.append(f"CASE WHEN ut_get({attrs}, 'usagetrace.ci') = 'true' THEN 1 ELSE 0 END AS ci")
    return ", ".join(cols)


_RES = "package, version, install_id, session_id, py_version, os_type, arch, ci, run_context, upload"


def _COPY(res: str) -> str:  # noqa: N802 - reads like the SQL fragment it is
    """The delivery id of a resource block and which copy (file, request line) it came from.

    A request sent again (a retry whose first answer was lost, the spool, a
    re-upload) arrives as another copy under the same ``usagetrace.batch.id``;
    :meth:`DuckDBEngine.relations` keeps one copy per id (``batch.py``).
    """
    return (f"ut_get({res}.resource.attributes, 'usagetrace.batch.id') AS batch_id, "
            "filename || '#' || lpad(CAST(req AS VARCHAR), 12, '0') AS copy_key")

_SPANS_SQL = f"""
CREATE TABLE {{table}} AS
WITH r AS (SELECT filename, rowid AS req, unnest(resourceSpans) AS rs FROM ut_raw WHERE resourceSpans IS NOT NULL),
s AS (SELECT filename, {_resource_cols('rs.resource.attributes')}, {_COPY('rs')}, unnest(rs.scopeSpans) AS ss FROM r),
p AS (SELECT filename, {_RES}, batch_id, copy_key, coalesce(ss.scope.name, '') AS scope_name,
             unnest(ss.spans) AS sp FROM s),
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
       list_filter(coalesce(TRY_CAST(ut_strings(
           (list_filter(sp.attributes, lambda x: x.key = 'usagetrace.params.set'))[1].value.arrayValue)
           AS VARCHAR[]), CAST([] AS VARCHAR[])), lambda x: x IS NOT NULL) AS params,
       list_transform(list_filter(sp.attributes, lambda x: starts_with(x.key, 'usagetrace.measure.')),
                      lambda x: {{'k': substr(x.key, 20), 'v': coalesce(ut_val(x.value), '')}}) AS measures,
       filename, batch_id, copy_key
FROM e
"""

_POINTS_SQL = f"""
CREATE TABLE {{table}} AS
WITH r AS (SELECT filename, rowid AS req, unnest(resourceMetrics) AS rm FROM ut_raw
           WHERE resourceMetrics IS NOT NULL),
s AS (SELECT filename, {_resource_cols('rm.resource.attributes')}, {_COPY('rm')}, unnest(rm.scopeMetrics) AS sm FROM r),
m AS (SELECT filename, {_RES}, batch_id, copy_key, coalesce(sm.scope.name, '') AS scope_name,
             unnest(sm.metrics) AS me FROM s),
d AS (SELECT filename, {_RES}, batch_id, copy_key, me.name AS metric,
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
       ut_get(dp.attributes, 'usagetrace.command.name') AS command,
       ut_get(dp.attributes, 'usagetrace.event.name') AS event_name,
       ut_get(dp.attributes, 'usagetrace.measurement') AS measure,
       ut_get(dp.attributes, 'usagetrace.measurement.value') AS bucket,
       coalesce(TRY_CAST(dp.asInt AS DOUBLE), TRY_CAST(dp.asDouble AS DOUBLE), 0) AS value,
       temporality,
       filename, batch_id, copy_key
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
        cache: str | os.PathLike[str] | None = None,
    ) -> DuckDBEngine:
        """Load a file or a directory of OTLP JSON lines (``.zst`` too).

        With ``cache`` (a DuckDB database file), the flattened tables are kept
        there between runs, tagged with each source file's size and mtime: only
        new or changed files are read again, and rows of files that are gone
        are dropped. A cache that cannot be opened (in use, corrupt) is
        replaced or bypassed with a warning; answers never depend on it.
        """
        import time

        files = otlp_json.discover_files(path)
        duckdb = import_duckdb()
        t0 = time.perf_counter()
        notes: list[str] = []
        con = _open_cache(duckdb, cache, notes) if cache is not None else None
        cached = con is not None
        if con is None:
            con = duckdb.connect(":memory:")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET preserve_insertion_order = false")
        engine = cls(con, warnings=notes)
        if cached:
            engine._sync_cache(files, scope)
        else:
            per_file = engine._load(files, scope, "ut_spans", "ut_points")
            engine._report(per_file)
        engine.load_seconds = time.perf_counter() - t0
        return engine

    def _report(self, per_file: dict[str, list[str]]) -> None:
        for file in sorted(per_file):
            for warning in per_file[file]:
                self.warnings.append(warning)
                if warning.startswith("skipped "):
                    self.skipped_lines += 1

    def _sync_cache(self, files: Sequence[Path], scope: str | None) -> None:
        """Bring the cached tables up to date with ``files``; read only what changed."""
        con = self.con
        files = [Path(os.path.abspath(f)) for f in files]  # the same rows whatever the cwd
        key = [_CACHE_FORMAT, scope or ""]
        con.execute("CREATE TABLE IF NOT EXISTS ut_meta (format VARCHAR, scope VARCHAR)")
        meta = con.execute("SELECT format, scope FROM ut_meta").fetchall()
        if meta != [tuple(key)]:
            for table in ("ut_spans", "ut_points", "ut_files"):
                con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute("DELETE FROM ut_meta")
            con.execute("INSERT INTO ut_meta VALUES (?, ?)", key)
        con.execute(
            "CREATE TABLE IF NOT EXISTS ut_files (filename VARCHAR, size BIGINT, mtime_ns BIGINT, warnings VARCHAR[])"
        )
        current = {}
        for f in files:
            st = os.stat(f)
            current[str(f)] = (st.st_size, st.st_mtime_ns)
        known = {name: (size, mtime) for name, size, mtime in con.execute(
            "SELECT filename, size, mtime_ns FROM ut_files").fetchall()}
        stale = [name for name, stamp in known.items() if current.get(name) != stamp]
        fresh = [f for f in files if known.get(str(f)) != current[str(f)]]
        have_tables = bool(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('ut_spans', 'ut_points')").fetchone()[0] == 2)
        if stale and have_tables:
            placeholders = ", ".join("?" for _ in stale)
            for table in ("ut_spans", "ut_points", "ut_files"):
                con.execute(f"DELETE FROM {table} WHERE filename IN ({placeholders})", stale)
        if not have_tables:
            per_file = self._load(fresh, scope, "ut_spans", "ut_points")
        elif fresh:
            per_file = self._load(fresh, scope, "ut_new_spans", "ut_new_points")
            con.execute("INSERT INTO ut_spans SELECT * FROM ut_new_spans")
            con.execute("INSERT INTO ut_points SELECT * FROM ut_new_points")
            con.execute("DROP TABLE ut_new_spans")
            con.execute("DROP TABLE ut_new_points")
        else:
            per_file = {}
        for f in fresh:
            size, mtime = current[str(f)]
            con.execute("INSERT INTO ut_files VALUES (?, ?, ?, ?)", [str(f), size, mtime, per_file.get(str(f), [])])
        stored = {name: list(w or []) for name, w in con.execute(
            "SELECT filename, warnings FROM ut_files").fetchall()}
        self._report({name: stored.get(name, []) for name in current})
        con.execute("CHECKPOINT")

    def _read_json_sql(self, files: Sequence[Path], compression: str) -> str:
        lit = self.dialect.literal
        cols = "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in otlp_json.RAW_COLUMNS.items()) + "}"
        file_list = "[" + ", ".join(lit(str(f)) for f in files) + "]"
        return (
            f"SELECT filename, resourceSpans, resourceMetrics FROM read_json({file_list}, "
            f"format = 'newline_delimited', columns = {cols}, compression = {lit(compression)}, "
            "filename = true, maximum_object_size = 536870912)"
        )

    def _insert_files(self, files: Sequence[Path], tmpdir: str) -> tuple[list[LineProblem], dict[str, list[str]]]:
        """Insert files into ut_raw, falling back to a line-by-line scan for refused files.

        Returns the skipped lines and, per file, warnings about the file as a whole.
        """
        problems: list[LineProblem] = []
        notes: dict[str, list[str]] = {}
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
                if result.notes(f):
                    notes[str(f)] = result.notes(f)
                if result.good_lines:
                    try:
                        self.con.execute(
                            "INSERT INTO ut_raw SELECT * REPLACE (" + self.dialect.literal(str(f)) + " AS filename) "
                            "FROM (" + self._read_json_sql([clean], "none") + ")"
                        )
                    except Exception as exc:  # noqa: BLE001
                        problems.append(LineProblem(str(f), 0, f"file could not be read even line by line: {exc}"))
        return problems, notes

    def _load(self, files: Sequence[Path], scope: str | None, spans: str, points: str) -> dict[str, list[str]]:
        """Read ``files`` into the tables ``spans`` and ``points``; return warnings per file."""
        con = self.con
        con.execute("DROP TABLE IF EXISTS ut_raw")
        con.execute(
            "CREATE TABLE ut_raw (filename VARCHAR, "
            + ", ".join(f'"{k}" {v}' for k, v in otlp_json.RAW_COLUMNS.items())
            + ")"
        )
        with tempfile.TemporaryDirectory(prefix="usagetrace-load-") as tmpdir:
            problems, notes = self._insert_files(files, tmpdir)
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
        con.execute(_SPANS_SQL.replace("{scope_filter}", scope_filter).replace("{table}", spans))
        con.execute(_POINTS_SQL.replace("{scope_filter}", scope_filter).replace("{table}", points))
        con.execute("DROP TABLE ut_raw")
        per_file: dict[str, list[str]] = {name: list(lines) for name, lines in notes.items()}
        for p in problems:
            per_file.setdefault(str(p.file), []).append(f"skipped {p}")
        for filename, n in con.execute(
            f"SELECT filename, count(*) FROM {points} WHERE temporality <> 1 GROUP BY filename ORDER BY filename"
        ).fetchall():
            per_file.setdefault(str(filename), []).append(
                f"ignored {n} metric points in {filename} that are not delta sums "
                "(usagetrace sends deltas; cumulative data needs a deltatocumulative-free pipeline)"
            )
        con.execute(f"DELETE FROM {points} WHERE temporality <> 1")
        return per_file

    # --- querying --------------------------------------------------------------
    def relations(self, package: str | None, since_ns: int | None) -> Relations:
        """The normalized relations, filtered to one package and a time window, each delivery id counted once.

        Rows with a ``usagetrace.batch.id`` come from the first copy of that id
        only (the same request stored twice, or a report uploaded again after
        a lost answer, counts once); rows without one are all kept.
        """
        conds = []
        if package is not None:
            conds.append(f"package = {self.dialect.literal(package)}")
        if since_ns is not None:
            conds.append(f"ts_ns >= {int(since_ns)}")
        self._first_copies()
        out = []
        for table in ("ut_spans", "ut_points"):
            where = " AND ".join(
                [f"(t.batch_id = '' OR t.copy_key = (SELECT f.copy_key FROM ut_first_{table} f "
                 "WHERE f.batch_id = t.batch_id))", *conds])
            out.append(f"(SELECT t.* FROM {table} t WHERE {where})")
        return Relations(spans=out[0], points=out[1])

    def _first_copies(self) -> None:
        """(Re)build the per-id first copy of each table: temporary, never in the cache."""
        if getattr(self, "_firsts_built", False):
            return
        for table in ("ut_spans", "ut_points"):
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE ut_first_{table} AS SELECT batch_id, min(copy_key) AS copy_key "
                f"FROM {table} WHERE batch_id <> '' GROUP BY batch_id")
        self._firsts_built = True

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


_CACHE_FORMAT = hashlib.sha256(
    (_SPANS_SQL + _POINTS_SQL + _MACROS + repr(sorted(otlp_json.RAW_COLUMNS.items()))).encode()
).hexdigest()[:16]


def default_cache_path(source: str | os.PathLike[str]) -> str:
    """Return the per-user cache database for one report source (a file or directory)."""
    from .. import paths

    digest = hashlib.sha256(os.path.abspath(os.fspath(source)).encode()).hexdigest()[:20]
    return os.path.join(paths.user_dir("cache"), "report", f"{digest}.duckdb")


def _open_cache(duckdb: Any, cache: str | os.PathLike[str], notes: list[str]) -> Any:
    """Connect to the cache database; replace it if corrupt; None (no cache) if it is in use."""
    from .. import paths

    path = os.fspath(cache)
    try:
        paths.private_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        notes.append(f"report cache {path} unusable ({exc}); reading everything")
        return None
    for attempt in (1, 2):
        try:
            con = duckdb.connect(path)
            paths.make_private(path)  # DuckDB creates it with the umask's mode; the data is private
            return con
        except Exception as exc:  # noqa: BLE001 - any failure: fall back, never fail the report
            if "lock" in str(exc).lower() or attempt == 2:
                notes.append(f"report cache {path} not used ({str(exc).splitlines()[0]}); reading everything")
                return None
            try:
                os.unlink(path)  # corrupt or from an incompatible DuckDB: rebuild it
            except OSError:
                return None
    return None
