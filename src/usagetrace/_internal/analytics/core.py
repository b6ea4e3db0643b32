"""Engine-agnostic answers: run a question, apply k-anonymity, derive rates.

:class:`Analytics` is the only code that executes question SQL, and its
:meth:`Analytics._run` passes every result through :func:`.kanon.apply` before
any derived value is computed or any row is returned. Rates and shares are
computed here, in Python, from the surviving rows, so both engines give
identical answers.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import kanon
from .queries import QUESTIONS, Dialect, Relations

__all__ = [
    "Analytics",
    "AnalyticsError",
    "Engine",
    "NoSuchPackage",
    "Report",
    "Table",
    "build_report",
    "parse_since",
    "version_key",
]


class AnalyticsError(Exception):
    """A problem with the input or the request that the user can fix."""


class NoSuchPackage(AnalyticsError):
    """``--package`` names a package the data has nothing for (exit 1: the data, not the usage, is wrong)."""

    def __init__(self, package: str, found: list[str]) -> None:
        self.package, self.found = package, found
        there = ("it holds data for: " + ", ".join(found)) if found else "it holds no usagetrace data at all"
        super().__init__(f"no data for package {package!r} in this source; {there}")


class Engine(Protocol):
    """What :class:`Analytics` needs from a query engine."""

    dialect: Dialect
    warnings: list[str]
    skipped_lines: int
    load_seconds: float

    def relations(self, package: str | None, since_ns: int | None) -> Relations:
        """Normalized relations filtered to a package and a window."""

    def execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL; return column names and rows."""

    def counts(self) -> dict[str, int]:
        """Loaded span and point counts."""


# --- helpers -------------------------------------------------------------------
_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(since: str | _dt.datetime | _dt.date | None, now: _dt.datetime | None = None) -> int | None:
    """Turn ``30d`` / ``12h`` / ``2w`` / an ISO date or datetime into a UTC epoch-nanosecond bound."""
    if since is None or since == "":
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=_dt.timezone.utc)
    if isinstance(since, str):
        m = _SINCE.match(since)
        if m:
            start = now - _dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
        else:
            try:
                start = _dt.datetime.fromisoformat(since.strip())
            except ValueError:
                raise AnalyticsError(
                    f"--since must look like 30d, 12h, 2w or an ISO date (2026-01-31), got {since!r}"
                ) from None
    elif isinstance(since, _dt.datetime):
        start = since
    else:
        start = _dt.datetime(since.year, since.month, since.day)
    if start.tzinfo is None:
        start = start.replace(tzinfo=_dt.timezone.utc)
    delta = start - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _iso_ns(ns: Any) -> str | None:
    if ns is None:
        return None
    t = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=int(ns) // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def version_key(v: str) -> tuple[Any, ...]:
    """Sort key for package versions (PEP 440 when ``packaging`` is available)."""
    try:
        from packaging.version import InvalidVersion, Version

        try:
            return (0, Version(v))
        except InvalidVersion:
            pass
    except ImportError:  # pragma: no cover - packaging is nearly always present
        pass
    parts = re.split(r"[.\-+_]", v)
    return (1, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def _norm(v: Any) -> Any:
    """Normalize a value from either engine to plain JSON-able Python."""
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer() and abs(v) < 2**53:
            return int(v)
        return v
    if isinstance(v, _dt.datetime):
        return v.date().isoformat() if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0) else v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return sorted(str(x) for x in v if x not in (None, ""))
    if isinstance(v, bool):
        return int(v)
    if hasattr(v, "__int__") and not isinstance(v, (int, str)):  # Decimal, numpy ints
        f = float(v)
        return int(f) if f.is_integer() else f
    return v


def _ratio(a: Any, b: Any, digits: int = 4) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, digits)


def _ms(ns: Any) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def _is_other(row: Mapping[str, Any], col: str) -> bool:
    return row.get(col) == kanon.OTHER


def module_of(fn: str, modules: Iterable[str]) -> str:
    """Module of a qualified name: the longest known module prefix, else all before the last dot."""
    best = ""
    for m in modules:
        if (fn == m or fn.startswith(m + ".")) and len(m) > len(best):
            best = m
    if best:
        return best
    return fn.rsplit(".", 1)[0] if "." in fn else fn


def class_of(fn: str, modules: Iterable[str]) -> str | None:
    """``module.Class`` for a method's qualified name, or None for a module-level function."""
    mod = module_of(fn, modules)
    rest = fn[len(mod) + 1 :] if fn.startswith(mod + ".") else ""
    if "." not in rest:
        return None
    return f"{mod}.{rest.split('.', 1)[0]}"


@dataclass
class Table:
    """One section of a report: plain rows with a fixed column order."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    note: str = ""
    hidden: str = ""  # what k-anonymity removed from this section, in words ("" when nothing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "note": self.note,
                "hidden": self.hidden}


@dataclass
class Report:
    """A full report: metadata plus ordered sections (each already k-anonymized)."""

    meta: dict[str, Any]
    sections: dict[str, Table] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"meta": self.meta, "sections": {k: t.to_dict() for k, t in self.sections.items()}}


# --- the analytics object -----------------------------------------------------
class Analytics:
    """Answers about one package's usage, k-anonymized, from either engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        package: str | None = None,
        since: str | _dt.datetime | _dt.date | None = None,
        k: int = kanon.DEFAULT_K,
        now: _dt.datetime | None = None,
    ) -> None:
        self.engine = engine
        self.k = kanon.check_k(k)
        self.since = since
        self.since_ns = parse_since(since, now)
        self.suppression: dict[str, dict[str, int]] = {}
        self.package = self._resolve_package(package)
        self._rel = engine.relations(self.package, self.since_ns)
        self._cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    # -- the one place -----------------------------------------------------------
    def _run(self, name: str, label: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Execute a question and return its rows with k-anonymity applied (cached).

        What k-anonymity removed is kept in :attr:`suppression` under ``label``
        (default: the question's name; the report section it feeds).
        """
        key = (name, tuple(sorted(params.items())))
        if key in self._cache:
            return [dict(r) for r in self._cache[key]]
        q = QUESTIONS[name]
        sql = q.build(self.engine.dialect, self._rel, self.k, **params)
        cols, raw = self.engine.execute(sql)
        rows = [{c: _norm(v) for c, v in zip(cols, r)} for r in raw]
        res = kanon.apply(
            rows, k=self.k, unit=q.unit, labels=q.labels, partition=q.partition, additive=q.additive
        )
        self.suppression[label or name] = {
            "folded": res.folded, "dropped": res.dropped - res.empty, "unit": q.unit,
        }
        self._cache[key] = res.rows
        return [dict(r) for r in res.rows]

    def _names(self, name: str, rel: Relations | None = None) -> list[tuple[Any, ...]]:
        """Run an internal names-only question (distinct names, never a count); not for output."""
        q = QUESTIONS[name]
        _, raw = self.engine.execute(q.build(self.engine.dialect, rel or self._rel, self.k))
        return [tuple(_norm(v) for v in r) for r in raw]

    def _resolve_package(self, package: str | None) -> str | None:
        found = sorted(p[0] for p in self._names("packages", self.engine.relations(None, None)) if p[0])
        if package is not None:
            if package not in found:
                raise NoSuchPackage(package, found)
            return package
        if len(found) > 1:
            raise AnalyticsError(
                "the data holds several packages (" + ", ".join(found) + "); choose one with --package"
            )
        return found[0] if found else None

    # -- overview ------------------------------------------------------------------
    def overview(self) -> dict[str, Any] | None:
        """Totals for the window: installs, sessions, calls, error rate, first/last seen (None if < k installs)."""
        rows = self._run("overview")
        if not rows:
            return None
        r = rows[0]
        return {
            "installs": r["installs"],
            "sessions": r["sessions"],
            "calls": r["calls"] or 0,
            "error_calls": r["error_calls"] or 0,
            "error_rate": _ratio(r["error_calls"], r["calls"]),
            "versions": r["versions"],
            "functions": r["functions"],
            "first_seen": _iso_ns(r["first_ns"]),
            "last_seen": _iso_ns(r["last_ns"]),
        }

    def total_installs(self) -> int | None:
        """Distinct installs with any call in the window (None if fewer than k)."""
        o = self.overview()
        return None if o is None else o["installs"]

    def _modules(self) -> tuple[list[str], list[str]]:
        names = self._names("known_names")
        fns = sorted(n for kind, n in names if kind == "fn")
        mods = sorted({n for kind, n in names if kind == "module"})
        return fns, mods

    # -- feature usage ---------------------------------------------------------------
    def feature_usage(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Calls and distinct installs per public function, with each one's share of all installs."""
        total = self.total_installs()
        _, mods = self._modules()
        out = []
        for r in self._run("feature_usage"):
            other = _is_other(r, "function")
            out.append(
                {
                    "function": r["function"],
                    "module": None if other else module_of(r["function"], mods),
                    "calls": r["calls"],
                    "installs": r["installs"],
                    "install_share": _ratio(r["installs"], total),
                    "error_calls": r["error_calls"],
                    "error_rate": _ratio(r["error_calls"], r["calls"]),
                    "error_installs": r["error_installs"],
                }
            )
        out.sort(key=lambda x: (x["function"] == kanon.OTHER, -x["installs"], -x["calls"], x["function"]))
        return out[:limit] if limit else out

    def rollup(self, level: str = "module") -> list[dict[str, Any]]:
        """Calls and distinct installs per module (``level="module"``) or per class (``"class"``)."""
        if level not in ("module", "class"):
            raise ValueError("level must be 'module' or 'class'")
        fns, mods = self._modules()
        if level == "module":
            mapping = {f: module_of(f, mods) for f in fns}
        else:
            mapping = {f: c for f in fns if (c := class_of(f, mods))}
        total = self.total_installs()
        out = [
            {
                level: r["name"],
                "calls": r["calls"],
                "installs": r["installs"],
                "install_share": _ratio(r["installs"], total),
                "error_calls": r["error_calls"],
            }
            for r in self._run("rollup", f"{level}s", mapping=_Frozen(mapping))
        ]
        out.sort(key=lambda x: (x[level] == kanon.OTHER, -x["installs"], -x["calls"], x[level]))
        return out

    # -- adoption --------------------------------------------------------------------
    def adoption(self, interval: str = "day") -> list[dict[str, Any]]:
        """Distinct active installs per package version per day or ISO week (Monday)."""
        if interval not in ("day", "week"):
            raise ValueError("interval must be 'day' or 'week'")
        rows = self._run("adoption", interval=interval)
        rows.sort(key=lambda r: (r["period"], r["version"] == kanon.OTHER, version_key(str(r["version"]))))
        return [{"period": r["period"], "version": r["version"], "installs": r["installs"]} for r in rows]

    def _env(self, name: str, labels: Sequence[str]) -> list[dict[str, Any]]:
        total = self.total_installs()
        rows = self._run(name)
        out = [
            {**{c: r[c] for c in labels}, "installs": r["installs"], "sessions": r["sessions"],
             "install_share": _ratio(r["installs"], total)}
            for r in rows
        ]
        out.sort(key=lambda x: (x[labels[0]] == kanon.OTHER, -x["installs"], tuple(str(x[c]) for c in labels)))
        return out

    def python_versions(self) -> list[dict[str, Any]]:
        """Distinct installs per Python major.minor."""
        return self._env("python_versions", ("python",))

    def platforms(self) -> list[dict[str, Any]]:
        """Distinct installs per operating system and CPU architecture."""
        return self._env("platforms", ("os", "arch"))

    def run_contexts(self) -> list[dict[str, Any]]:
        """Distinct installs and sessions per run context (ci, notebook, interactive, script)."""
        return self._env("run_contexts", ("context",))

    # -- reliability -------------------------------------------------------------------
    def error_rates(self) -> list[dict[str, Any]]:
        """Functions that failed at least once, by error rate (exact counters)."""
        rows = [
            {k: r[k] for k in ("function", "calls", "error_calls", "error_rate", "installs", "error_installs")}
            for r in self.feature_usage()
            if r["error_calls"]
        ]
        rows.sort(key=lambda x: (x["function"] == kanon.OTHER, -(x["error_rate"] or 0), -x["error_calls"], x["function"]))
        return rows

    def _latest_version(self) -> str | None:
        versions = [v[0] for v in self._names("versions") if v[0]]
        return max(versions, key=version_key) if versions else None

    def signatures(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Sanitized stack signatures of failed calls (from sampled spans), with example stacks."""
        out = []
        for r in self._run("signatures"):
            vs = sorted(r["versions"] or [], key=version_key)
            out.append(
                {
                    "function": r["function"],
                    "error_type": r["error_type"],
                    "signature": r["signature"],
                    "sampled": r["sampled"],
                    "installs": r["installs"],
                    "first_version": vs[0] if vs else None,
                    "last_version": vs[-1] if vs else None,
                    "stacktrace": r["stacktrace"],
                }
            )
        out.sort(key=lambda x: (x["function"] == kanon.OTHER, -x["installs"], -x["sampled"], str(x["function"]),
                                str(x["error_type"]), str(x["signature"])))
        return out[:limit] if limit else out

    def exceptions(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """Top exception types per function (exact counters), with the versions they appear in."""
        latest = self._latest_version()
        top_sig: dict[tuple[str, str], str] = {}
        for s in self.signatures():
            top_sig.setdefault((s["function"], s["error_type"]), s["signature"])
        out = []
        for r in self._run("exceptions"):
            vs = sorted(r["versions"] or [], key=version_key)
            out.append(
                {
                    "function": r["function"],
                    "error_type": r["error_type"],
                    "errors": r["errors"],
                    "installs": r["installs"],
                    "first_version": vs[0] if vs else None,
                    "last_version": vs[-1] if vs else None,
                    "in_latest": (None if not vs or latest is None else vs[-1] == latest),
                    "top_signature": top_sig.get((r["function"], r["error_type"])),
                }
            )
        out.sort(key=lambda x: (x["function"] == kanon.OTHER, -x["errors"], -x["installs"], str(x["function"]),
                                str(x["error_type"])))
        return out[:limit] if limit else out

    def parameters(self) -> list[dict[str, Any]]:
        """Which declared parameters sampled calls set (``usagetrace.params.set``), per function, by installs."""
        out = self._run("parameters")
        out.sort(key=lambda x: (x["function"] == kanon.OTHER, str(x["function"]), -x["installs"],
                                str(x["parameter"])))
        return out

    def crashes(self) -> list[dict[str, Any]]:
        """Unhandled exceptions that passed through the package, by type and signature."""
        out = []
        for r in self._run("crashes"):
            vs = sorted(r["versions"] or [], key=version_key)
            out.append({"error_type": r["error_type"], "signature": r["signature"], "crashes": r["crashes"],
                        "installs": r["installs"], "first_version": vs[0] if vs else None,
                        "last_version": vs[-1] if vs else None})
        out.sort(key=lambda x: (x["error_type"] == kanon.OTHER, -x["crashes"], str(x["error_type"]), str(x["signature"])))
        return out

    # -- commands and events ------------------------------------------------------------
    def commands(self) -> list[dict[str, Any]]:
        """Runs, distinct installs, success rate and p50/p95 duration (ms) per command.

        The success rate leaves out runs the person interrupted (exit status 130):
        those are neither successes nor failures.
        """
        out = [
            {
                "command": r["command"],
                "runs": r["runs"],
                "installs": r["installs"],
                "interrupted": r["interrupted_runs"],
                "success_rate": _ratio(r["ok_runs"], r["runs"] - (r["interrupted_runs"] or 0)),
                "p50_ms": _ms(r["p50_ns"]),
                "p95_ms": _ms(r["p95_ns"]),
            }
            for r in self._run("commands")
        ]
        out.sort(key=lambda x: (x["command"] == kanon.OTHER, -x["runs"], x["command"]))
        return out

    def command_measures(self) -> list[dict[str, Any]]:
        """Declared command measurements: mean of numeric ones, install share of each other value."""
        per_cmd = {c["command"]: c["installs"] for c in self.commands()}
        out = []
        for r in self._run("command_measures"):
            numeric = r["bucket"] == "(numeric)"
            out.append(
                {
                    "command": r["command"],
                    "measure": r["measure"],
                    "value": r["bucket"],
                    "runs": r["runs"],
                    "installs": r["installs"],
                    "mean": round(r["mean"], 4) if numeric and r["mean"] is not None else None,
                    "share_of_command_installs": _ratio(r["installs"], per_cmd.get(r["command"])),
                }
            )
        out.sort(key=lambda x: (str(x["command"]), x["measure"] == kanon.OTHER, str(x["measure"]), -x["installs"],
                                str(x["value"])))
        return out

    def events(self) -> list[dict[str, Any]]:
        """Occurrences, sessions and distinct installs per declared event."""
        rows = self._run("events")
        rows.sort(key=lambda x: (x["event"] == kanon.OTHER, -x["occurrences"], x["event"]))
        return [{c: r[c] for c in ("event", "occurrences", "sessions", "installs")} for r in rows]

    # -- pages (dash-user-tracker's analytics API, with hashed users) --------------------
    def page_views(self) -> list[dict[str, Any]]:
        """Views (full loads and client-side navigations) and distinct hashed users per path."""
        rows = self._run("page_views")
        rows.sort(key=lambda x: (x["path"] == kanon.OTHER, -x["views"], x["path"]))
        return [{c: r[c] for c in ("path", "views", "loads", "navigations", "users")} for r in rows]

    def page_activity(self, path: str) -> list[dict[str, Any]]:
        """Views and distinct users per day for one path."""
        rows = self._run("page_activity", path=path)
        rows.sort(key=lambda x: (x["day"] == kanon.OTHER, str(x["day"])))
        return [{c: r[c] for c in ("day", "views", "users")} for r in rows]

    def user_activity(self, user_hash: str | None = None) -> list[dict[str, Any]]:
        """Page views, callbacks and pages per hashed user (one user per row, so only with k=1)."""
        out = [
            {
                "user_hash": r["user_hash"],
                "page_views": r["page_views"],
                "callbacks": r["callbacks"],
                "pages": r["pages"],
                "first_seen": _iso_ns(r["first_ns"]),
                "last_seen": _iso_ns(r["last_ns"]),
                "users": r["users"],
            }
            for r in self._run("user_activity", user_hash=user_hash)
        ]
        out.sort(key=lambda x: (x["user_hash"] == kanon.OTHER, -x["page_views"], str(x["user_hash"])))
        return out

    def user_count(self) -> int | None:
        """Distinct hashed users of the app's pages and callbacks (None if fewer than k)."""
        rows = self._run("user_count")
        return rows[0]["users"] if rows else None

    def user_count_by_path(self, path: str | None = None) -> Any:
        """Distinct users per path (a list), or for one path (an int, None if fewer than k)."""
        rows = [{"path": r["path"], "users": r["users"]} for r in self.page_views()]
        if path is None:
            return rows
        for r in rows:
            if r["path"] == path:
                return r["users"]
        return None

    def callbacks(self) -> list[dict[str, Any]]:
        """Invocations, errors and distinct users per Dash callback output id."""
        rows = self._run("callbacks")
        rows.sort(key=lambda x: (x["callback"] == kanon.OTHER, -x["invocations"], x["callback"]))
        return [{c: r[c] for c in ("callback", "invocations", "errors", "users")} for r in rows]

    def dropped(self) -> list[dict[str, Any]]:
        """Spans the SDK dropped instead of sending, by reason (why span counts are lower than calls)."""
        rows = self._run("dropped")
        rows.sort(key=lambda x: (x["reason"] == kanon.OTHER, -x["items"], x["reason"]))
        return [{c: r[c] for c in ("reason", "items", "installs")} for r in rows]

    # -- everything ------------------------------------------------------------------------
    def report(self, *, interval: str = "auto", source: str = "") -> Report:
        """Every standard question as one :class:`Report`."""
        return build_report(self, interval=interval, source=source)


class _Frozen(dict):  # type: ignore[type-arg]
    """A hashable dict, so mapping parameters can key the result cache."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __lt__(self, other: object) -> bool:
        return False


def _table(name: str, title: str, rows: list[dict[str, Any]], note: str = "", columns: Sequence[str] = ()) -> Table:
    cols = list(columns) or (list(rows[0].keys()) if rows else [])
    return Table(name, title, cols, rows, note)


def build_report(a: Analytics, *, interval: str = "auto", source: str = "") -> Report:
    """Run every standard question and assemble a :class:`Report`."""
    ov = a.overview()
    if interval == "auto":
        interval = "day"
        if ov and ov["first_seen"] and ov["last_seen"]:
            first = _dt.date.fromisoformat(ov["first_seen"][:10])
            last = _dt.date.fromisoformat(ov["last_seen"][:10])
            interval = "week" if (last - first).days > 62 else "day"
    counts = a.engine.counts()
    sections: dict[str, Table] = {}
    sections["overview"] = _table("overview", "Overview", [ov] if ov else [])
    sections["feature_usage"] = _table(
        "feature_usage", "Feature usage", a.feature_usage(),
        "Exact counters (usagetrace.calls); install_share = installs using it / all active installs.",
        ["function", "module", "calls", "installs", "install_share", "error_calls", "error_rate"],
    )
    sections["modules"] = _table("modules", "Usage by module", a.rollup("module"))
    sections["classes"] = _table("classes", "Usage by class", a.rollup("class"))
    sections["adoption"] = _table(
        "adoption", f"Active installs per version ({'daily' if interval == 'day' else 'weekly'})",
        a.adoption(interval), columns=["period", "version", "installs"],
    )
    sections["python_versions"] = _table("python_versions", "Python versions", a.python_versions())
    sections["platforms"] = _table("platforms", "Operating systems and architectures", a.platforms())
    sections["run_contexts"] = _table(
        "run_contexts", "Where it runs", a.run_contexts(),
        "An install can run in several contexts, so shares can add up to more than 1.",
    )
    sections["error_rates"] = _table("error_rates", "Error rate per function", a.error_rates())
    sections["exceptions"] = _table(
        "exceptions", "Top exception types", a.exceptions(),
        "Exact counters (usagetrace.errors); in_latest = still seen in the newest version.",
    )
    sections["signatures"] = _table(
        "signatures", "Stack signatures", a.signatures(limit=30),
        "From sampled error spans: counts are samples, not totals.",
    )
    optional = {
        "parameters": ("Parameters set (from sampled calls)", a.parameters),
        "crashes": ("Unhandled crashes", a.crashes),
        "commands": ("Commands", a.commands),
        "command_measures": ("Command measurements", a.command_measures),
        "events": ("Events", a.events),
        "page_views": ("Page views", a.page_views),
        "callbacks": ("Dash callbacks", a.callbacks),
        "dropped": ("Data dropped by the SDK", a.dropped),
    }
    for name, (title, fn) in optional.items():
        rows = fn()
        if rows or _hidden(a.suppression.get(name)):
            sections[name] = _table(name, title, rows)
    uc = a.user_count()
    if uc is not None or _hidden(a.suppression.get("user_count")):
        sections["user_count"] = _table("user_count", "Distinct app users", [{"users": uc}] if uc is not None else [])
    for name, table in sections.items():
        table.hidden = _hidden_text(a.suppression.get(name), a.k)
    meta = {
        "source": source,
        "engine": a.engine.dialect.name,
        "package": a.package,
        "since": None if a.since_ns is None else _iso_ns(a.since_ns),
        "k": a.k,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spans_loaded": counts.get("spans"),
        "points_loaded": counts.get("points"),
        "skipped_lines": a.engine.skipped_lines,
        "warnings": list(a.engine.warnings),
        "suppressed": {n: s for n, s in sorted(a.suppression.items()) if s["folded"] or s["dropped"]},
        "hidden_note": _hidden_summary(a.suppression, a.k),
        "interval": interval,
    }
    return Report(meta, sections)


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def _hidden(s: Mapping[str, Any] | None) -> int:
    """Rows k-anonymity kept from view (left out or folded): all of them would show with k=1."""
    return (s["dropped"] + s["folded"]) if s else 0


def _hidden_text(s: Mapping[str, Any] | None, k: int) -> str:
    """One section's k-anonymity losses in words ("" when it lost nothing)."""
    if not _hidden(s):
        return ""
    done = [f"{_rows(s['dropped'])} left out"] if s["dropped"] else []
    if s["folded"]:
        done.append(f"{_rows(s['folded']) if not done else s['folded']} folded into “{kanon.OTHER}”")
    return f"k-anonymity: {' and '.join(done)}, each describing fewer than k={k} {s['unit']}."


def _hidden_summary(suppression: Mapping[str, Mapping[str, Any]], k: int) -> str:
    """The whole report's k-anonymity losses in words, and that ``--k 1`` shows them ("" if none)."""
    lost = {n: s for n, s in suppression.items() if _hidden(s)}
    if not lost:
        return ""
    dropped = sum(s["dropped"] for s in lost.values())
    folded = sum(s["folded"] for s in lost.values())
    units = " or ".join(sorted({s["unit"] for s in lost.values()}))
    done = [f"left out {_rows(dropped)}"] if dropped else []
    if folded:
        done.append(f"folded {_rows(folded) if not dropped else folded} into “{kanon.OTHER}”")
    text = (f"k-anonymity (k={k}) {' and '.join(done)} in {len(lost)} section{'' if len(lost) == 1 else 's'}: "
            f"each described fewer than {k} {units}.")
    if "overview" in lost:
        text += f" The selected data holds fewer than {k} installs in all."
    # A row is hidden only when it describes 1..k-1 units (empty rows are not counted), so k=1 shows it.
    if k > 1:
        text += " If this is your own development data, --k 1 shows every row."
    return text
