"""The one query layer: every question, written once, for both engines.

Each engine exposes two *normalized relations* with identical column names and
meanings (built from OTLP JSON by :mod:`.duckdb_engine`, or from the
collector's ClickHouse tables by :mod:`.clickhouse_engine`):

``spans``
    ts_ns, day, package, version, install_id, session_id, py_version, os_type,
    arch, ci (0/1), run_context, upload, span_name, fn, module, is_error (0/1),
    error_type, signature, exc_type, stacktrace, duration_ns, command,
    exit_code (nullable), event_name, url_path, page_kind, user_hash,
    callback_id, measures (engine-specific; read only through
    :meth:`Dialect.measures`).
``points``
    ts_ns, day, package, version, install_id, session_id, py_version, os_type,
    arch, ci, run_context, upload, metric, fn, outcome, error_type, drop_reason,
    command, event_name, measure, bucket, value (delta sums only).

Daily and weekly uploads (``upload`` is ``daily`` or ``weekly``) count on the
machine what realtime uploads send as one span per occurrence: command runs,
events and command measurements arrive as points (``usagetrace.commands``,
``usagetrace.events``, ``usagetrace.measurements``,
``usagetrace.measurement.sum``), runs as ``usagetrace.runs`` instead of
session ids, and their spans are exemplars (a few per function per period).
The questions that count occurrences add those points to the realtime spans
and never count exemplar spans, so the same runs give the same answers in
every mode.

Missing string attributes are ``''`` in both engines (ClickHouse map semantics).
The few syntax differences live behind :class:`Dialect`. Questions return raw
counts; rates, shares and ratios are computed in Python after k-anonymity is
applied (:mod:`.core`), so both engines give bit-identical answers.

Every question's SQL returns its *unit* column (distinct installs, or distinct
hashed users for page questions) and ``_ids`` — the unit ids, only for groups
smaller than k — which :mod:`.kanon` uses to fold small groups into "other".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

__all__ = ["QUESTIONS", "Dialect", "Question", "Relations", "question"]

MEASURE_PREFIX_LEN = len("usagetrace.measure.")


class Dialect(Protocol):
    """The handful of SQL spellings that differ between DuckDB and ClickHouse."""

    name: str

    def literal(self, value: str) -> str:
        """A quoted string literal."""

    def week(self, day_col: str) -> str:
        """The Monday starting the ISO week of a DATE column."""

    def quantile(self, col: str, q: float) -> str:
        """Linearly interpolated (R-7) exact quantile."""

    def ids_if_small(self, col: str, k: int) -> str:
        """Distinct ``col`` values of the group if fewer than ``k``, else an empty list."""

    def distinct_list(self, col: str) -> str:
        """All distinct values of ``col`` in the group (order unspecified)."""

    def try_float(self, expr: str) -> str:
        """``expr`` as a double, or NULL if it is not numeric."""

    def null_int(self) -> str:
        """A NULL of the integer type of ``duration_ns`` (so a UNION keeps one column type)."""

    def measures(self, spans: str) -> str:
        """A relation of (command, install_id, measure, value) from command spans."""

    def params(self, spans: str) -> str:
        """A relation of (fn, install_id, param): the ``usagetrace.params.set`` items of sampled calls."""


@dataclass(frozen=True)
class Relations:
    """SQL text (parenthesized subqueries) of the two normalized relations."""

    spans: str
    points: str


@dataclass(frozen=True)
class Question:
    """One question: its SQL and how k-anonymity folds its rows."""

    name: str
    title: str
    build: Callable[..., str]
    unit: str = "installs"  # the column counting distinct anonymity units
    labels: tuple[str, ...] = ()  # set to "(other)" when small rows are folded
    partition: tuple[str, ...] = ()  # small rows fold into one "other" per partition
    additive: tuple[str, ...] = ()  # summed into "other"; everything else becomes None
    unit_col: str = "install_id"  # the SQL column whose distinct values the unit counts
    extra: dict[str, object] = field(default_factory=dict)


QUESTIONS: dict[str, Question] = {}


def question(**kw: object) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register the decorated SQL builder as a :class:`Question`."""

    def deco(fn: Callable[..., str]) -> Callable[..., str]:
        q = Question(build=fn, **kw)  # type: ignore[arg-type]
        QUESTIONS[q.name] = q
        return fn

    return deco


def _unit(d: Dialect, k: int, col: str = "install_id", name: str = "installs") -> str:
    return f"count(DISTINCT {col}) AS {name}, {d.ids_if_small(col, k)} AS _ids"


def _users(d: Dialect, k: int) -> str:
    # a missing user hash ('') is not a user
    return (
        "count(DISTINCT CASE WHEN user_hash <> '' THEN user_hash END) AS users, "
        f"{d.ids_if_small('user_hash', k)} AS _ids"
    )


CALLS = "metric = 'usagetrace.calls'"
#: Spans that stand for themselves (realtime), not exemplars of counted occurrences (daily, weekly).
COUNTED_SPAN = "upload NOT IN ('daily', 'weekly')"
#: Distinct realtime sessions plus the runs daily and weekly uploads count (a relation with an ``n_runs`` column).
SESSIONS = "count(DISTINCT CASE WHEN session_id <> '' THEN session_id END) + sum(n_runs)"


@question(name="overview", title="Overview", additive=("calls", "error_calls", "sessions"))
def q_overview(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT sum(value) AS calls,
       sum(CASE WHEN outcome = 'error' THEN value ELSE 0 END) AS error_calls,
       count(DISTINCT CASE WHEN session_id <> '' THEN session_id END)
         + (SELECT coalesce(sum(value), 0) FROM {r.points} p2 WHERE metric = 'usagetrace.runs') AS sessions,
       count(DISTINCT version) AS versions,
       count(DISTINCT fn) AS functions,
       min(ts_ns) AS first_ns, max(ts_ns) AS last_ns,
       {_unit(d, k)}
FROM {r.points} p WHERE {CALLS}"""


@question(
    name="feature_usage",
    title="Feature usage (exact call counters)",
    labels=("function",),
    additive=("calls", "error_calls"),
)
def q_feature_usage(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT fn AS function,
       sum(value) AS calls,
       sum(CASE WHEN outcome = 'error' THEN value ELSE 0 END) AS error_calls,
       count(DISTINCT CASE WHEN outcome = 'error' THEN install_id END) AS error_installs,
       {_unit(d, k)}
FROM {r.points} p WHERE {CALLS} AND fn <> ''
GROUP BY fn"""


@question(name="rollup", title="Usage by module", labels=("name",), additive=("calls", "error_calls"))
def q_rollup(d: Dialect, r: Relations, k: int, mapping: dict[str, str]) -> str:
    # mapping: function -> module or class (computed in Python from the data's modules)
    if not mapping:
        return f"SELECT '' AS name, 0 AS calls, 0 AS error_calls, {_unit(d, k)} FROM {r.points} p WHERE 1 = 0"
    whens = " ".join(f"WHEN {d.literal(f)} THEN {d.literal(g)}" for f, g in sorted(mapping.items()))
    return f"""
SELECT grp AS name, sum(value) AS calls,
       sum(CASE WHEN outcome = 'error' THEN value ELSE 0 END) AS error_calls,
       {_unit(d, k)}
FROM (SELECT CASE fn {whens} ELSE '' END AS grp, value, outcome, install_id
      FROM {r.points} p WHERE {CALLS} AND fn <> '') x
WHERE grp <> ''
GROUP BY grp"""


@question(name="known_names", title="(internal) function and module names")
def q_known_names(d: Dialect, r: Relations, k: int) -> str:
    # Not an output: names only, used to build the module/class mapping.
    return f"""
SELECT DISTINCT 'fn' AS kind, fn AS name FROM {r.points} p WHERE {CALLS} AND fn <> ''
UNION ALL
SELECT DISTINCT 'module' AS kind, module AS name FROM {r.spans} s WHERE module <> ''"""


def _activity(r: Relations) -> str:
    cols = "day, install_id, session_id, version, py_version, os_type, arch, ci, run_context"
    return (f"(SELECT {cols}, CASE WHEN metric = 'usagetrace.runs' THEN value ELSE 0 END AS n_runs FROM {r.points} p "
            f"UNION ALL SELECT {cols}, 0 AS n_runs FROM {r.spans} s)")


@question(
    name="adoption",
    title="Active installs per version",
    labels=("version",),
    partition=("period",),
    additive=(),
)
def q_adoption(d: Dialect, r: Relations, k: int, interval: str = "day") -> str:
    period = "day" if interval == "day" else d.week("day")
    return f"""
SELECT {period} AS period, version, {_unit(d, k)}
FROM {_activity(r)} a
GROUP BY period, version"""


@question(name="python_versions", title="Python versions", labels=("python",), additive=("sessions",))
def q_python(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT py_version AS python, {SESSIONS} AS sessions, {_unit(d, k)}
FROM {_activity(r)} a GROUP BY py_version"""


@question(name="platforms", title="Operating systems and architectures", labels=("os", "arch"), additive=("sessions",))
def q_platforms(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT os_type AS os, arch, {SESSIONS} AS sessions, {_unit(d, k)}
FROM {_activity(r)} a GROUP BY os_type, arch"""


@question(name="run_contexts", title="Where it runs (CI vs interactive)", labels=("context",), additive=("sessions",))
def q_contexts(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT CASE WHEN run_context <> '' THEN run_context WHEN ci = 1 THEN 'ci' ELSE 'unknown' END AS context,
       {SESSIONS} AS sessions, {_unit(d, k)}
FROM {_activity(r)} a GROUP BY context"""


@question(
    name="exceptions",
    title="Top exception types (exact error counters)",
    labels=("function", "error_type"),
    additive=("errors",),
)
def q_exceptions(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT fn AS function, error_type, sum(value) AS errors,
       {d.distinct_list('version')} AS versions, {_unit(d, k)}
FROM {r.points} p WHERE metric = 'usagetrace.errors'
GROUP BY fn, error_type"""


@question(
    name="signatures",
    title="Stack signatures (from sampled error spans)",
    labels=("function", "error_type", "signature"),
    additive=("sampled",),
)
def q_signatures(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT fn AS function, etype AS error_type,
       signature, count(*) AS sampled, min(stacktrace) AS stacktrace,
       {d.distinct_list('version')} AS versions, {_unit(d, k)}
FROM (SELECT fn, signature, stacktrace, version, install_id,
             CASE WHEN error_type <> '' THEN error_type ELSE exc_type END AS etype
      FROM {r.spans} s WHERE is_error = 1 AND fn <> '' AND span_name <> 'usagetrace.crash') x
GROUP BY fn, etype, signature"""


@question(
    name="parameters",
    title="Parameters set (from sampled spans)",
    labels=("function", "parameter"),
    additive=("sampled_calls",),
)
def q_parameters(d: Dialect, r: Relations, k: int) -> str:
    # usagetrace.params.set: declared parameters given another value than their default, by position or keyword
    return f"""
SELECT fn AS function, param AS parameter, count(*) AS sampled_calls, {_unit(d, k)}
FROM {d.params(r.spans)} x
WHERE param <> ''
GROUP BY fn, param"""


@question(name="versions", title="(internal) versions seen")
def q_versions(d: Dialect, r: Relations, k: int) -> str:
    return f"SELECT DISTINCT version FROM {_activity(r)} a WHERE version <> ''"


@question(name="commands", title="Commands", labels=("command",), additive=("runs", "ok_runs", "interrupted_runs"))
def q_commands(d: Dialect, r: Relations, k: int) -> str:
    # Runs: realtime spans plus daily/weekly counts; durations: every span (exemplars are real runs).
    # Exit status 130 is Ctrl-C: the person stopped the command, it did not fail (nor succeed).
    return f"""
SELECT command, sum(n_runs) AS runs, sum(n_ok) AS ok_runs, sum(n_int) AS interrupted_runs,
       {d.quantile('duration_ns', 0.5)} AS p50_ns, {d.quantile('duration_ns', 0.95)} AS p95_ns,
       {_unit(d, k)}
FROM (SELECT command, install_id, CASE WHEN {COUNTED_SPAN} THEN 1 ELSE 0 END AS n_runs,
             CASE WHEN {COUNTED_SPAN} AND is_error = 0 AND coalesce(exit_code, 0) = 0 THEN 1 ELSE 0 END AS n_ok,
             CASE WHEN {COUNTED_SPAN} AND coalesce(exit_code, 0) = 130 THEN 1 ELSE 0 END AS n_int, duration_ns
      FROM {r.spans} s WHERE span_name = 'usagetrace.command' AND command <> ''
      UNION ALL
      SELECT command, install_id, value AS n_runs, CASE WHEN outcome = 'ok' THEN value ELSE 0 END AS n_ok,
             CASE WHEN outcome = 'interrupted' THEN value ELSE 0 END AS n_int, {d.null_int()} AS duration_ns
      FROM {r.points} p WHERE metric = 'usagetrace.commands' AND command <> '') c
GROUP BY command
HAVING sum(n_runs) > 0"""


@question(
    name="command_measures",
    title="Command measurements",
    labels=("measure", "bucket"),
    partition=("command",),
    additive=("runs",),
)
def q_measures(d: Dialect, r: Relations, k: int) -> str:
    num = d.try_float("value")
    counted = f"(SELECT * FROM {r.spans} s1 WHERE {COUNTED_SPAN})"
    # mean = sum / count of the numeric values, which daily/weekly uploads send as two points.
    return f"""
SELECT command, measure, bucket, sum(n_runs) AS runs, sum(n_total) / nullif(sum(n_numbers), 0) AS mean, {_unit(d, k)}
FROM (SELECT command, install_id, measure, CASE WHEN {num} IS NULL THEN value ELSE '(numeric)' END AS bucket,
             1 AS n_runs, coalesce({num}, 0) AS n_total, CASE WHEN {num} IS NULL THEN 0 ELSE 1 END AS n_numbers
      FROM {d.measures(counted)} m
      UNION ALL
      SELECT command, install_id, measure,
             CASE WHEN metric = 'usagetrace.measurement.sum' THEN '(numeric)' ELSE bucket END AS bucket,
             CASE WHEN metric = 'usagetrace.measurements' THEN value ELSE 0 END AS n_runs,
             CASE WHEN metric = 'usagetrace.measurement.sum' THEN value ELSE 0 END AS n_total,
             CASE WHEN metric = 'usagetrace.measurements' AND bucket = '(numeric)' THEN value ELSE 0 END AS n_numbers
      FROM {r.points} p
      WHERE metric IN ('usagetrace.measurements', 'usagetrace.measurement.sum') AND command <> '') x
GROUP BY command, measure, bucket
HAVING sum(n_runs) > 0"""


@question(name="events", title="Events", labels=("event",), additive=("occurrences", "sessions"))
def q_events(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT event_name AS event, sum(n) AS occurrences,
       count(DISTINCT CASE WHEN session_id <> '' THEN session_id END) AS sessions, {_unit(d, k)}
FROM (SELECT event_name, install_id, session_id, 1 AS n
      FROM {r.spans} s WHERE span_name = 'usagetrace.event' AND event_name <> '' AND {COUNTED_SPAN}
      UNION ALL
      SELECT event_name, install_id, '' AS session_id, value AS n
      FROM {r.points} p WHERE metric = 'usagetrace.events' AND event_name <> '') e
GROUP BY event_name"""


@question(name="crashes", title="Unhandled crashes", labels=("error_type", "signature"), additive=("crashes",))
def q_crashes(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT etype AS error_type, signature,
       count(*) AS crashes, {d.distinct_list('version')} AS versions, {_unit(d, k)}
FROM (SELECT signature, version, install_id,
             CASE WHEN error_type <> '' THEN error_type ELSE exc_type END AS etype
      FROM {r.spans} s WHERE span_name = 'usagetrace.crash') x
GROUP BY etype, signature"""


@question(
    name="page_views",
    title="Page views",
    unit="users",
    unit_col="user_hash",
    labels=("path",),
    additive=("views", "loads", "navigations"),
)
def q_pages(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT url_path AS path, count(*) AS views,
       sum(CASE WHEN page_kind = 'load' THEN 1 ELSE 0 END) AS loads,
       sum(CASE WHEN page_kind = 'navigation' THEN 1 ELSE 0 END) AS navigations,
       {_users(d, k)}
FROM {r.spans} s WHERE span_name = 'usagetrace.page_view'
GROUP BY url_path"""


@question(
    name="page_activity",
    title="Page activity per day",
    unit="users",
    unit_col="user_hash",
    labels=("day",),
    additive=("views",),
)
def q_page_activity(d: Dialect, r: Relations, k: int, path: str) -> str:
    return f"""
SELECT day, count(*) AS views, {_users(d, k)}
FROM {r.spans} s WHERE span_name = 'usagetrace.page_view' AND url_path = {d.literal(path)}
GROUP BY day"""


@question(
    name="user_activity",
    title="Activity per hashed user",
    unit="users",
    unit_col="user_hash",
    labels=("user_hash",),
    additive=("page_views", "callbacks"),
)
def q_user_activity(d: Dialect, r: Relations, k: int, user_hash: str | None = None) -> str:
    only = f" AND user_hash = {d.literal(user_hash)}" if user_hash else ""
    return f"""
SELECT user_hash,
       sum(CASE WHEN span_name = 'usagetrace.page_view' THEN 1 ELSE 0 END) AS page_views,
       sum(CASE WHEN span_name = 'usagetrace.callback' THEN 1 ELSE 0 END) AS callbacks,
       count(DISTINCT CASE WHEN url_path <> '' THEN url_path END) AS pages,
       min(ts_ns) AS first_ns, max(ts_ns) AS last_ns, {_users(d, k)}
FROM {r.spans} s
WHERE span_name IN ('usagetrace.page_view', 'usagetrace.callback') AND user_hash <> ''{only}
GROUP BY user_hash"""


@question(name="user_count", title="Distinct users", unit="users", unit_col="user_hash", additive=())
def q_user_count(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT {_users(d, k)}
FROM {r.spans} s WHERE span_name IN ('usagetrace.page_view', 'usagetrace.callback') AND user_hash <> ''"""


@question(
    name="callbacks",
    title="Dash callbacks",
    unit="users",
    unit_col="user_hash",
    labels=("callback",),
    additive=("invocations", "errors"),
)
def q_callbacks(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT callback_id AS callback, count(*) AS invocations, sum(is_error) AS errors, {_users(d, k)}
FROM {r.spans} s WHERE span_name = 'usagetrace.callback' GROUP BY callback_id"""


@question(name="dropped", title="Data dropped by the SDK", labels=("reason",), additive=("items",))
def q_dropped(d: Dialect, r: Relations, k: int) -> str:
    return f"""
SELECT drop_reason AS reason, sum(value) AS items, {_unit(d, k)}
FROM {r.points} p WHERE metric = 'usagetrace.dropped'
GROUP BY drop_reason"""


@question(name="packages", title="(internal) packages present")
def q_packages(d: Dialect, r: Relations, k: int) -> str:
    return f"SELECT DISTINCT package FROM {_activity_all(r)} a"


def _activity_all(r: Relations) -> str:
    return f"(SELECT package FROM {r.points} p UNION ALL SELECT package FROM {r.spans} s)"
