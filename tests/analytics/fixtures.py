"""Realistic OTLP JSON-lines fixture data, generated in code, with its ground truth.

:func:`generate` builds a small usage history for the package ``mypkg`` (and a
little of ``otherpkg``): installs on several versions, Python versions and
platforms, exact call/error counters split over several delta points, sampled
spans with errors, stack signatures and exception events, and the integration
spans of issue 6 (commands with measures, events, crashes, page views,
callbacks). Every record also lands in :class:`Truth` so tests can compute the
expected answers independently of any SQL. Lines are written the way the
collector's ``file`` exporter writes them: proto3 JSON, lowerCamelCase, int64
as strings, enums as ints, default-valued fields omitted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PKG = "mypkg"
DAY0 = dt.date(2025, 11, 3)  # a Monday
DAYS = 21
NS = 10**9

FUNCTIONS = {
    # qualified name -> (module, base daily calls, error types)
    "mypkg.io.read_table": ("mypkg.io", 30, ["KeyError", "ValueError"]),
    "mypkg.io.write_table": ("mypkg.io", 8, ["PermissionError"]),
    "mypkg.core.Model.fit": ("mypkg.core", 12, ["ValueError"]),
    "mypkg.core.Model.predict": ("mypkg.core", 40, []),
    "mypkg.core.Model.__init__": ("mypkg.core", 12, []),
    "mypkg.core.Pipeline.run": ("mypkg.core", 5, ["RuntimeError"]),
    "mypkg.plot.show": ("mypkg.plot", 3, []),
}
#: used by only two installs: must be folded/suppressed with k=5
RARE_FUNCTION = "mypkg.util.helper"
#: functions that never produce a span (so their module comes from the name)
NO_SPAN_FUNCTIONS = {"mypkg.plot.show"}


def ns(day: dt.date, seconds: int = 0) -> int:
    """Epoch nanoseconds of a UTC day plus seconds."""
    return (int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) + seconds) * NS


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [{"stringValue": s} for s in value]}} if value else {"arrayValue": {}}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


@dataclass
class Install:
    """One anonymous install and its environment."""

    id: str
    package: str
    versions: list[tuple[dt.date, str]]  # (from day, version)
    python: str
    os: str
    arch: str
    context: str  # ci | notebook | interactive | script
    days: list[dt.date]
    functions: list[str]

    def version_on(self, day: dt.date) -> str:
        v = self.versions[0][1]
        for start, ver in self.versions:
            if day >= start:
                v = ver
        return v

    def resource(self, day: dt.date, session: str) -> dict[str, Any]:
        attrs = [
            _kv("service.name", self.package),
            _kv("service.version", self.version_on(day)),
            _kv("usagetrace.install.id", self.id),
            _kv("usagetrace.session.id", session),
            _kv("process.runtime.name", "cpython"),
            _kv("process.runtime.version", self.python),
            _kv("os.type", self.os),
            _kv("host.arch", self.arch),
            _kv("usagetrace.ci", self.context == "ci"),
            _kv("usagetrace.run.context", self.context),
            _kv("telemetry.sdk.name", "opentelemetry"),
        ]
        if self.context == "ci":
            attrs.append(_kv("usagetrace.ci.provider", "github_actions"))
        return {"attributes": attrs}


@dataclass
class Truth:
    """Ground truth of everything written, as flat records."""

    installs: list[Install] = field(default_factory=list)
    # (package, install, version, day, fn, outcome, count)
    calls: list[tuple[str, str, str, dt.date, str, str, int]] = field(default_factory=list)
    # (package, install, version, day, fn, error_type, count)
    errors: list[tuple[str, str, str, dt.date, str, str, int]] = field(default_factory=list)
    # every span written, flattened: dicts with package/install/version/day/name/attrs/...
    spans: list[dict[str, Any]] = field(default_factory=list)
    # (package, install, day, reason, count)
    dropped: list[tuple[str, str, dt.date, str, int]] = field(default_factory=list)
    # (package, install, version, day) for each session activity
    activity: list[tuple[str, str, str, dt.date, str, str, str, str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _signature(fn: str, etype: str) -> tuple[str, str]:
    mod = FUNCTIONS.get(fn, ("mypkg.util",))[0]
    short = fn.rsplit(".", 1)[-1]
    stack = f"{mod}:{short}:41\nmypkg._parse:row:{len(etype) + 10}"
    return hashlib.sha256((fn + etype).encode()).hexdigest()[:12], stack


def _make_installs(rng: random.Random) -> list[Install]:
    pys = ["3.9", "3.10", "3.11", "3.11", "3.12", "3.12"]
    plats = [("linux", "amd64"), ("linux", "amd64"), ("darwin", "arm64"), ("windows", "amd64"), ("linux", "arm64")]
    contexts = ["script", "script", "notebook", "interactive", "ci", "ci"]
    out = []
    for i in range(30):
        start = DAY0 + dt.timedelta(days=rng.randrange(0, 6))
        if i < 12:
            versions = [(DAY0, "1.0.0"), (DAY0 + dt.timedelta(days=8 + i // 2), "1.1.0")]
        elif i < 24:
            versions = [(DAY0, "1.1.0"), (DAY0 + dt.timedelta(days=14), "2.0.0")]
        else:
            versions = [(DAY0, "2.0.0")]
        days = sorted(
            {start + dt.timedelta(days=d) for d in range(DAYS) if rng.random() < 0.55 and d + (start - DAY0).days < DAYS}
            | {start}
        )
        fns = [f for f in FUNCTIONS if rng.random() < 0.85 or f == "mypkg.core.Model.predict"]
        if i in (3, 7):
            fns.append(RARE_FUNCTION)
        os_, arch = plats[i % len(plats)]
        out.append(
            Install(
                id=f"00000000-0000-4000-8000-{i:012d}",
                package=PKG,
                versions=versions,
                python=pys[i % len(pys)],
                os=os_,
                arch=arch,
                context=contexts[i % len(contexts)],
                days=days,
                functions=fns,
            )
        )
    # a second package in the same files (the --package filter must separate them)
    for i in range(6):
        out.append(
            Install(
                id=f"11111111-0000-4000-8000-{i:012d}",
                package="otherpkg",
                versions=[(DAY0, "0.3.0")],
                python="3.12",
                os="linux",
                arch="amd64",
                context="script",
                days=[DAY0 + dt.timedelta(days=2 + i)],
                functions=["otherpkg.api.go"],
            )
        )
    return out


def _span(trace: int, span: int, name: str, start: int, dur: int, attrs: list[dict[str, Any]],
          *, error: bool = False, events: list[dict[str, Any]] | None = None, kind: int = 1) -> dict[str, Any]:
    s: dict[str, Any] = {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + dur),
        "attributes": attrs,
    }
    if kind:  # proto3 JSON omits the default (0 = unspecified)
        s["kind"] = kind
    if events:
        s["events"] = events
    if error:
        s["status"] = {"code": 2}
    return s


def generate(seed: int = 7) -> Truth:
    """Generate the fixture: OTLP JSON lines in ``Truth.lines`` plus ground truth."""
    rng = random.Random(seed)
    t = Truth()
    t.installs = _make_installs(rng)
    ids = iter(range(1, 10**9))
    users = [hashlib.sha256(f"user{i}".encode()).hexdigest()[:16] for i in range(9)]
    for inst in t.installs:
        for di, day in enumerate(inst.days):
            session = f"{inst.id[-4:]}-s{di}"
            version = inst.version_on(day)
            res = inst.resource(day, session)
            t.activity.append((inst.package, inst.id, version, day, session, inst.python, inst.os, inst.arch, inst.context))
            spans: list[dict[str, Any]] = []
            points_a: list[dict[str, Any]] = []  # first export interval
            points_b: list[dict[str, Any]] = []  # second export interval
            err_a: list[dict[str, Any]] = []
            err_b: list[dict[str, Any]] = []
            base = ns(day, 3600 * 9 + rng.randrange(0, 3600))
            for fn in inst.functions:
                mod, rate, etypes = FUNCTIONS.get(fn, (fn.rsplit(".", 1)[0], 2, []))
                n = max(1, int(rate * rng.uniform(0.3, 1.5)))
                by_type: dict[str, int] = {}
                for et in etypes:
                    if rng.random() < 0.35 or (version == "1.0.0" and et == "KeyError"):
                        c = rng.randrange(1, 4)
                        if et == "KeyError" and version != "1.0.0":
                            continue  # KeyError was fixed in 1.1.0
                        by_type[et] = c
                nerr = sum(by_type.values())
                nok = n
                for outcome, cnt in (("ok", nok), ("error", nerr)):
                    if cnt == 0:
                        continue
                    t.calls.append((inst.package, inst.id, version, day, fn, outcome, cnt))
                    a = cnt // 2
                    for bucket, val, off in ((points_a, a, 600), (points_b, cnt - a, 1200)):
                        if val == 0:
                            continue
                        dp: dict[str, Any] = {
                            "attributes": [_kv("code.function.name", fn), _kv("usagetrace.outcome", outcome)],
                            "startTimeUnixNano": str(base + (off - 600) * NS),
                            "timeUnixNano": str(base + off * NS),
                            "asInt": str(val),
                        }
                        bucket.append(dp)
                for et, cnt in by_type.items():
                    t.errors.append((inst.package, inst.id, version, day, fn, et, cnt))
                    (err_a if rng.random() < 0.5 else err_b).append({
                        "attributes": [_kv("code.function.name", fn), _kv("error.type", et)],
                        "startTimeUnixNano": str(base),
                        "timeUnixNano": str(base + 600 * NS),
                        "asInt": str(cnt),
                    })
                if fn in NO_SPAN_FUNCTIONS:
                    continue
                # sampled spans: first few successful calls, plus one span per error
                for j in range(min(3, nok)):
                    attrs = [_kv("code.function.name", fn), _kv("usagetrace.module", mod),
                             _kv("usagetrace.callable.kind", "method" if fn.count(".") > 2 else "function"),
                             _kv("usagetrace.args.count", j)]
                    if j == 1:
                        attrs.append(_kv("usagetrace.params.set", ["sep"]))
                    dur = rng.randrange(1, 50) * 10**6
                    spans.append(_span(next(ids), next(ids), fn, base + j * NS, dur, attrs, kind=1 if j else 0))
                    t.spans.append({"package": inst.package, "install": inst.id, "version": version, "day": day,
                                    "name": fn, "fn": fn, "module": mod, "error": False, "duration": dur,
                                    "params": ["sep"] if j == 1 else []})
                for et in by_type:
                    sig, stack = _signature(fn, et)
                    attrs = [_kv("code.function.name", fn), _kv("usagetrace.module", mod), _kv("error.type", et),
                             _kv("usagetrace.exception.signature", sig)]
                    ev = [{"name": "exception", "timeUnixNano": str(base + 5 * NS),
                           "attributes": [_kv("exception.type", et), _kv("exception.stacktrace", stack)]}]
                    dur = rng.randrange(1, 20) * 10**6
                    spans.append(_span(next(ids), next(ids), fn, base + 5 * NS, dur, attrs, error=True, events=ev))
                    t.spans.append({"package": inst.package, "install": inst.id, "version": version, "day": day,
                                    "name": fn, "fn": fn, "module": mod, "error": True, "error_type": et,
                                    "signature": sig, "stacktrace": stack, "duration": dur})
            if inst.package == PKG:
                _integration_spans(rng, t, inst, day, version, base, spans, ids, users)
                if rng.random() < 0.3:
                    cnt = rng.randrange(1, 40)
                    t.dropped.append((inst.package, inst.id, day, "rate_limited", cnt))
                    points_b.append({"attributes": [_kv("usagetrace.drop.reason", "rate_limited")],
                                     "startTimeUnixNano": str(base), "timeUnixNano": str(base + 1200 * NS),
                                     "asInt": str(cnt)})
            if spans:
                t.lines.append(json.dumps({"resourceSpans": [{"resource": res, "scopeSpans": [
                    {"scope": {"name": "usagetrace", "version": "0.1.0"}, "spans": spans}]}]}))
            for pts, errs in ((points_a, err_a), (points_b, err_b)):
                metrics = []
                if pts:
                    calls = [p for p in pts if p["attributes"][0]["key"] == "code.function.name"]
                    drops = [p for p in pts if p["attributes"][0]["key"] == "usagetrace.drop.reason"]
                    if calls:
                        metrics.append({"name": "usagetrace.calls", "unit": "{call}", "sum": {
                            "dataPoints": calls, "aggregationTemporality": 1, "isMonotonic": True}})
                    if drops:
                        metrics.append({"name": "usagetrace.dropped", "unit": "{item}", "sum": {
                            "dataPoints": drops, "aggregationTemporality": 1, "isMonotonic": True}})
                if errs:
                    metrics.append({"name": "usagetrace.errors", "unit": "{error}", "sum": {
                        "dataPoints": errs, "aggregationTemporality": 1, "isMonotonic": True}})
                if metrics:
                    t.lines.append(json.dumps({"resourceMetrics": [{"resource": res, "scopeMetrics": [
                        {"scope": {"name": "usagetrace", "version": "0.1.0"}, "metrics": metrics}]}]}))
    # data from another instrumentation scope in the same file must be ignored
    foreign = t.installs[0]
    t.lines.append(json.dumps({"resourceSpans": [{"resource": foreign.resource(DAY0, "x"), "scopeSpans": [
        {"scope": {"name": "someone.elses.instrumentation"}, "spans": [
            _span(1, 2, "mypkg.io.read_table", ns(DAY0), 10,
                  [_kv("code.function.name", "mypkg.io.read_table")])]}]}]}))
    return t


def _integration_spans(rng: random.Random, t: Truth, inst: Install, day: dt.date, version: str, base: int,
                       spans: list[dict[str, Any]], ids: Any, users: list[str]) -> None:
    def add(name: str, attrs: list[dict[str, Any]], dur: int, error: bool = False, **truth: Any) -> None:
        start = base + rng.randrange(10, 3000) * NS
        spans.append(_span(next(ids), next(ids), name, start, dur, attrs, error=error))
        t.spans.append({"package": inst.package, "install": inst.id, "version": version, "day": day,
                        "name": name, "error": error, "duration": dur, "ts": start, **truth})

    # commands (CLI integration and the command API, with declared measures)
    for _ in range(rng.randrange(1, 4)):
        cmd = "mycli run" if rng.random() < 0.7 else "mycli init"
        code = 0 if rng.random() < 0.8 else rng.choice([1, 2, 130])  # 130: interrupted (Ctrl-C)
        dur = rng.randrange(50, 5000) * 10**6
        attrs = [_kv("usagetrace.command.name", cmd),
                 _kv("usagetrace.command.line", cmd + " --pipeline ***** --env *****"),
                 _kv("process.exit.code", code)]
        measures: dict[str, Any] = {}
        if cmd == "mycli run":
            measures = {"flowgroups": rng.randrange(1, 40), "dry_run": rng.random() < 0.4,
                        "env": rng.choice(["dev", "prod"])}
            for k, v in measures.items():
                attrs.append(_kv("usagetrace.measure." + k, v))
        add("usagetrace.command", attrs, dur, error=code not in (0, 130), command=cmd, exit_code=code,
            measures=measures)
    # one-shot events
    if rng.random() < 0.15:
        et = rng.choice(["MemoryError", "RecursionError"])
        sig, _stack = _signature("mypkg.core.Pipeline.run", et)
        add("usagetrace.crash", [_kv("error.type", et), _kv("usagetrace.exception.signature", sig),
                                 _kv("usagetrace.crash.thread", "main")], 0, error=True,
            error_type=et, signature=sig)
    if rng.random() < 0.6:
        add("usagetrace.event", [_kv("usagetrace.event.name", "session_start")], 0, event="session_start")
    # page views and callbacks of a Dash app, with hashed user ids
    paths = [("/", 9), ("/reports", 6), ("/admin", 2)]
    for path, nusers in paths:
        for _ in range(rng.randrange(0, 3)):
            user = rng.choice(users[:nusers])
            kind = rng.choice(["load", "navigation"])
            add("usagetrace.page_view", [_kv("url.path", path), _kv("usagetrace.page.kind", kind),
                                         _kv("usagetrace.user.hash", user)], 10**6,
                path=path, kind=kind, user=user)
    for _ in range(rng.randrange(0, 3)):
        user = rng.choice(users)
        cb = rng.choice(["graph.figure", "table.data"])
        add("usagetrace.callback", [_kv("usagetrace.callback.id", cb), _kv("usagetrace.user.hash", user)],
            2 * 10**6, callback=cb, user=user)


def write(truth: Truth, directory: Path, *, zst: bool = True, parts: int = 3) -> list[Path]:
    """Write the lines as rotated files (some zstd-compressed) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    chunk = (len(truth.lines) + parts - 1) // parts
    paths = []
    for i in range(parts):
        body = "\n".join(truth.lines[i * chunk:(i + 1) * chunk]) + "\n"
        name = f"usage-2025-11-{20 + i:02d}T10-00-00.000.json" if i else "usage.json"
        p = directory / name
        if zst and i == parts - 1:
            import zstandard

            p = directory / (name + ".zst")
            p.write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
        else:
            p.write_text(body, encoding="utf-8")
        paths.append(p)
    return paths
