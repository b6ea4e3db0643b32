"""Scale engine: the tables the collector-contrib ``clickhouse`` exporter writes.

The normalized relations of :mod:`.queries` are built as subqueries over
``otel_traces`` and ``otel_metrics_sum`` using the exporter's column names
(``Timestamp``, ``ServiceName``, ``ResourceAttributes``, ``SpanAttributes``,
``StatusCode``, ``Duration``, ``Events.Name``/``Events.Attributes``;
``TimeUnix``, ``MetricName``, ``Attributes``, ``Value``,
``AggregationTemporality``, ``ScopeName``). The exporter stores every
attribute value as a string (``pcommon.Value.AsString``), so booleans are
``'true'``/``'false'`` and ints are decimal text, which is exactly how the
DuckDB engine normalizes them too. Nothing is created or written: the engine
only reads.

Connect with :meth:`ClickHouseEngine.from_url` (``clickhouse://user:pass@host:8123/db``,
``clickhouses://`` for TLS) through ``clickhouse-connect``, or run against an
in-process chdb session with :meth:`ClickHouseEngine.from_chdb`.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import unquote, urlparse

from .queries import Relations

__all__ = ["ClickHouseDialect", "ClickHouseEngine"]

Executor = Callable[[str], "tuple[list[str], list[tuple[Any, ...]]]"]


class ClickHouseDialect:
    """ClickHouse spellings for :class:`.queries.Dialect`."""

    name = "clickhouse"

    def literal(self, value: str) -> str:
        """A quoted string literal."""
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    def week(self, day_col: str) -> str:
        """The Monday starting the ISO week of a Date column."""
        return f"toMonday({day_col})"

    def quantile(self, col: str, q: float) -> str:
        """Linearly interpolated (R-7) exact quantile, as DuckDB's quantile_cont."""
        return f"quantileExactInclusive({q!r})({col})"

    def ids_if_small(self, col: str, k: int) -> str:
        """Distinct ``col`` values of the group if fewer than ``k``, else an empty array."""
        return f"if(uniqExact({col}) < {int(k)}, groupUniqArray({col}), [])"

    def distinct_list(self, col: str) -> str:
        """All distinct values of ``col`` in the group."""
        return f"groupUniqArray({col})"

    def try_float(self, expr: str) -> str:
        """``expr`` as a Float64, or NULL."""
        return f"toFloat64OrNull({expr})"

    def null_int(self) -> str:
        """A NULL Int64 (Nullable)."""
        return "CAST(NULL AS Nullable(Int64))"

    def params(self, spans: str) -> str:
        """(fn, install_id, param) rows: one per parameter a sampled call set."""
        return f"(SELECT fn, install_id, p AS param FROM {spans} s0 ARRAY JOIN params AS p WHERE fn <> '')"

    def measures(self, spans: str) -> str:
        """(command, install_id, measure, value) rows from command spans."""
        return (
            f"(SELECT command, install_id, substring(mk, 20) AS measure, mv AS value FROM {spans} s0 "
            "ARRAY JOIN mapKeys(measures) AS mk, mapValues(measures) AS mv "
            "WHERE span_name = 'usagetrace.command')"
        )


def _res(col: str = "ResourceAttributes") -> str:
    return (
        f"{col}['service.version'] AS version, {col}['usagetrace.install.id'] AS install_id, "
        f"{col}['usagetrace.session.id'] AS session_id, {col}['process.runtime.version'] AS py_version, "
        f"{col}['os.type'] AS os_type, {col}['host.arch'] AS arch, "
        f"if({col}['usagetrace.ci'] = 'true', 1, 0) AS ci, {col}['usagetrace.run.context'] AS run_context, "
        f"{col}['usagetrace.upload'] AS upload"
    )


#: Each delivery id (``usagetrace.batch.id``, see ``batch.py``) counted once: a request stored twice, or a
#: daily report uploaded again after a lost answer, gives the same rows again under the same id; one is kept.
#: Daily and weekly exemplar spans are encoded anew at each upload (new span ids), so they are told apart by
#: what they hold; realtime copies are the same bytes, span id included. Rows without an id are all kept.
_BID = "ResourceAttributes['usagetrace.batch.id']"
_ONCE_SPANS = (
    f"LIMIT 1 BY {_BID}, if({_BID} = '', toString(TraceId), ''), "
    f"if(ResourceAttributes['usagetrace.upload'] IN ('daily', 'weekly'), '', toString(SpanId)), "
    "SpanName, Timestamp, Duration, toString(SpanAttributes)"
)
_ONCE_POINTS = (
    f"LIMIT 1 BY {_BID}, if({_BID} = '', toString(rowNumberInAllBlocks()), ''), "
    "MetricName, toString(Attributes), TimeUnix, StartTimeUnix"
)


class ClickHouseEngine:
    """Questions answered by ClickHouse over the collector exporter's tables."""

    dialect = ClickHouseDialect()

    def __init__(
        self,
        execute: Executor,
        *,
        database: str = "default",
        traces_table: str = "otel_traces",
        metrics_sum_table: str = "otel_metrics_sum",
        scope: str | None = "usagetrace",
    ) -> None:
        self._execute = execute
        self.database = database
        self.traces_table = traces_table
        self.metrics_sum_table = metrics_sum_table
        self.scope = scope
        self.warnings: list[str] = []
        self.skipped_lines = 0
        self.load_seconds = 0.0

    @staticmethod
    def _ident(name: str) -> str:
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"

    def _table(self, name: str) -> str:
        return f"{self._ident(self.database)}.{self._ident(name)}"

    # --- constructors --------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClickHouseEngine:
        """Connect with clickhouse-connect to ``clickhouse[s]://user:pass@host:port/database``."""
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise RuntimeError(
                "reading from ClickHouse needs clickhouse-connect: pip install 'usagetrace[clickhouse]'"
            ) from exc
        u = urlparse(url)
        if u.scheme not in ("clickhouse", "clickhouses") or not u.hostname:
            raise ValueError(f"not a ClickHouse URL (clickhouse://user:pass@host:port/db): {url!r}")
        secure = u.scheme == "clickhouses"
        database = unquote(u.path.lstrip("/")) or "default"
        client = clickhouse_connect.get_client(
            host=u.hostname,
            port=u.port or (8443 if secure else 8123),
            username=unquote(u.username or "default"),
            password=unquote(u.password or ""),
            database=database,
            secure=secure,
        )

        def execute(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
            res = client.query(sql)
            return list(res.column_names), [tuple(r) for r in res.result_rows]

        return cls(execute, database=database, **kwargs)

    @classmethod
    def from_chdb(cls, session: Any, **kwargs: Any) -> ClickHouseEngine:
        """Run against an in-process chdb session (used by the tests; handy for local files)."""

        def execute(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
            res = session.query(
                sql + "\nSETTINGS output_format_json_quote_64bit_integers = 0, "
                "output_format_json_quote_denormals = 1",
                "JSONCompact",
            )
            text = res.bytes().decode("utf-8") if hasattr(res, "bytes") else str(res)
            if not text.strip():
                return [], []
            doc = json.loads(text)
            names = [m["name"] for m in doc["meta"]]
            return names, [tuple(r) for r in doc["data"]]

        return cls(execute, **kwargs)

    # --- querying --------------------------------------------------------------
    def relations(self, package: str | None, since_ns: int | None) -> Relations:
        """The normalized relations as subqueries over the exporter's tables."""
        lit = self.dialect.literal
        span_conds: list[str] = []
        point_conds = ["AggregationTemporality = 1"]
        if self.scope is not None:
            span_conds.append(f"ScopeName = {lit(self.scope)}")
            point_conds.append(f"ScopeName = {lit(self.scope)}")
        if package is not None:
            span_conds.append(f"ServiceName = {lit(package)}")
            point_conds.append(f"ServiceName = {lit(package)}")
        if since_ns is not None:
            span_conds.append(f"Timestamp >= fromUnixTimestamp64Nano(toInt64({int(since_ns)}))")
            point_conds.append(f"TimeUnix >= fromUnixTimestamp64Nano(toInt64({int(since_ns)}))")
        sw = (" WHERE " + " AND ".join(span_conds)) if span_conds else ""
        pw = " WHERE " + " AND ".join(point_conds)
        spans = f"""(SELECT
    toUnixTimestamp64Nano(Timestamp) AS ts_ns, toDate(Timestamp, 'UTC') AS day,
    toString(ServiceName) AS package, {_res()},
    toString(SpanName) AS span_name,
    SpanAttributes['code.function.name'] AS fn, SpanAttributes['usagetrace.module'] AS module,
    if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 1, 0) AS is_error,
    SpanAttributes['error.type'] AS error_type,
    SpanAttributes['usagetrace.exception.signature'] AS signature,
    arrayFilter((a, n) -> n = 'exception', Events.Attributes, Events.Name)[1]['exception.type'] AS exc_type,
    arrayFilter((a, n) -> n = 'exception', Events.Attributes, Events.Name)[1]['exception.stacktrace'] AS stacktrace,
    toInt64(Duration) AS duration_ns,
    SpanAttributes['usagetrace.command.name'] AS command,
    toInt64OrNull(SpanAttributes['process.exit.code']) AS exit_code,
    SpanAttributes['usagetrace.event.name'] AS event_name,
    SpanAttributes['url.path'] AS url_path,
    SpanAttributes['usagetrace.page.kind'] AS page_kind,
    SpanAttributes['usagetrace.user.hash'] AS user_hash,
    SpanAttributes['usagetrace.callback.id'] AS callback_id,
    JSONExtract(SpanAttributes['usagetrace.params.set'], 'Array(String)') AS params,
    mapFilter((k, v) -> startsWith(k, 'usagetrace.measure.'), SpanAttributes) AS measures
  FROM {self._table(self.traces_table)}{sw}
  {_ONCE_SPANS})"""
        points = f"""(SELECT
    toUnixTimestamp64Nano(TimeUnix) AS ts_ns, toDate(TimeUnix, 'UTC') AS day,
    toString(ServiceName) AS package, {_res()},
    MetricName AS metric,
    Attributes['code.function.name'] AS fn, Attributes['usagetrace.outcome'] AS outcome,
    Attributes['error.type'] AS error_type, Attributes['usagetrace.drop.reason'] AS drop_reason,
    Attributes['usagetrace.command.name'] AS command, Attributes['usagetrace.event.name'] AS event_name,
    Attributes['usagetrace.measurement'] AS measure, Attributes['usagetrace.measurement.value'] AS bucket,
    Value AS value
  FROM {self._table(self.metrics_sum_table)}{pw}
  {_ONCE_POINTS})"""
        return Relations(spans=spans, points=points)

    def execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one query; return column names and rows."""
        return self._execute(sql)

    def counts(self) -> dict[str, int]:
        """How many spans and metric points the tables hold (all packages)."""
        _, s = self.execute(f"SELECT count() FROM {self._table(self.traces_table)}")
        _, p = self.execute(f"SELECT count() FROM {self._table(self.metrics_sum_table)}")
        return {"spans": int(s[0][0]), "points": int(p[0][0])}

    def close(self) -> None:
        """Nothing to release (the client closes with the process)."""

