"""Answers of the embedded (DuckDB) engine, checked against the fixture's ground truth."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict

import fixtures
import pytest
from helpers import group_installs, pkg

pytest.importorskip("duckdb")

from usagetrace._internal.analytics.core import Analytics, AnalyticsError, version_key
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine

K = 5


@pytest.fixture(scope="module")
def truth() -> fixtures.Truth:
    return fixtures.generate()


@pytest.fixture(scope="module")
def engine(truth, tmp_path_factory):
    d = tmp_path_factory.mktemp("otlp")
    fixtures.write(truth, d)
    e = DuckDBEngine.from_path(d)
    yield e
    e.close()


@pytest.fixture(scope="module")
def a(engine) -> Analytics:
    return Analytics(engine, package=fixtures.PKG, k=K)


def test_feature_usage_matches_exact_counters(a, truth):
    """Calls and distinct installs per function equal the sums of the written delta points, small groups removed."""
    calls = Counter()
    for p, inst, _v, _d, fn, _o, n in pkg(truth.calls):
        calls[fn] += n
    installs = group_installs(pkg(truth.calls), [4])
    total = len({r[1] for r in pkg(truth.calls)})
    expected = {fn: (calls[fn], len(installs[(fn,)])) for fn in calls if len(installs[(fn,)]) >= K}
    got = {r["function"]: (r["calls"], r["installs"]) for r in a.feature_usage()}
    assert got == expected
    assert fixtures.RARE_FUNCTION not in got  # two installs only
    share = {r["function"]: r["install_share"] for r in a.feature_usage()}
    for fn, (_c, n) in expected.items():
        assert share[fn] == round(n / total, 4)


def test_overview_counts_installs_sessions_and_calls(a, truth):
    """The overview totals match the ground truth of the chosen package only."""
    ov = a.overview()
    calls = pkg(truth.calls)
    assert ov["installs"] == len({r[1] for r in calls})
    assert ov["calls"] == sum(r[6] for r in calls)
    assert ov["error_calls"] == sum(r[6] for r in calls if r[5] == "error")
    assert ov["sessions"] == len({(r[1], r[4]) for r in pkg(truth.activity)})


def test_module_and_class_rollup_use_span_modules(a, truth):
    """Rollups group by the longest module prefix seen in spans, else the name before the last dot."""
    def module(fn: str) -> str:
        return fixtures.FUNCTIONS[fn][0] if fn in fixtures.FUNCTIONS else fn.rsplit(".", 1)[0]

    by_mod: dict[str, set[str]] = defaultdict(set)
    by_cls: dict[str, set[str]] = defaultdict(set)
    for _p, inst, _v, _d, fn, _o, _n in pkg(truth.calls):
        by_mod[module(fn)].add(inst)
        rest = fn[len(module(fn)) + 1:]
        if "." in rest:
            by_cls[module(fn) + "." + rest.split(".")[0]].add(inst)
    got_mod = {r["module"]: r["installs"] for r in a.rollup("module")}
    got_cls = {r["class"]: r["installs"] for r in a.rollup("class")}
    assert got_mod == {m: len(s) for m, s in by_mod.items() if len(s) >= K}
    assert got_cls == {c: len(s) for c, s in by_cls.items() if len(s) >= K}
    assert "mypkg.core.Model" in got_cls and "mypkg.plot" in got_mod


def test_weekly_adoption_counts_active_installs_per_version(a, truth):
    """Weekly adoption is the number of distinct installs seen per ISO week and version (k-folded)."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p, inst, ver, day, *_ in pkg(truth.activity):
        monday = day - dt.timedelta(days=day.weekday())
        groups[(monday.isoformat(), ver)].add(inst)
    got = {(r["period"], r["version"]): r["installs"] for r in a.adoption("week")}
    for key, insts in groups.items():
        if len(insts) >= K:
            assert got[key] == len(insts)
        else:
            assert key not in got
    assert all(v >= K for v in got.values())


def test_python_versions_and_platforms(a, truth):
    """Environment questions count distinct installs per Python version and per os/arch."""
    py = group_installs(pkg(truth.activity), [5])
    got = {r["python"]: r["installs"] for r in a.python_versions()}
    for (ver,), insts in py.items():
        if len(insts) >= K:
            assert got[ver] == len(insts)
    plat = group_installs(pkg(truth.activity), [6, 7])
    got_p = {(r["os"], r["arch"]): r["installs"] for r in a.platforms()}
    for key, insts in plat.items():
        if len(insts) >= K:
            assert got_p[key] == len(insts)
    ctx = {r["context"]: r["installs"] for r in a.run_contexts()}
    ci = {r[1] for r in pkg(truth.activity) if r[8] == "ci"}
    assert ctx.get("ci") == (len(ci) if len(ci) >= K else None)


def test_error_rates_and_exception_versions(a, truth):
    """Error rate = error calls / calls; exception types carry exact counts and first/last versions."""
    calls, errs = Counter(), Counter()
    for _p, _i, _v, _d, fn, outcome, n in pkg(truth.calls):
        calls[fn] += n
        if outcome == "error":
            errs[fn] += n
    for r in a.error_rates():
        assert r["error_rate"] == round(errs[r["function"]] / calls[r["function"]], 4)
    exc = {(r["function"], r["error_type"]): r for r in a.exceptions(limit=None)}
    counts, versions = Counter(), defaultdict(set)
    for _p, _i, ver, _d, fn, et, n in pkg(truth.errors):
        counts[(fn, et)] += n
        versions[(fn, et)].add(ver)
    inst = group_installs(pkg(truth.errors), [4, 5])
    for key, n in counts.items():
        if len(inst[key]) >= K:
            assert exc[key]["errors"] == n
            vs = sorted(versions[key], key=version_key)
            assert (exc[key]["first_version"], exc[key]["last_version"]) == (vs[0], vs[-1])
    keyerr = exc[("mypkg.io.read_table", "KeyError")]
    assert keyerr["last_version"] == "1.0.0" and keyerr["in_latest"] is False  # fixed in 1.1.0


def test_parameters_set_come_from_sampled_spans(a, truth):
    """Parameters set (usagetrace.params.set): sampled calls and distinct installs per function, small groups removed."""
    spans = [s for s in truth.spans if s["package"] == fixtures.PKG and s.get("params")]
    sampled = Counter((s["fn"], p) for s in spans for p in s["params"])
    installs = {key: {s["install"] for s in spans if (s["fn"], key[1]) == key} for key in sampled}
    expected = {key: (n, len(installs[key])) for key, n in sampled.items() if len(installs[key]) >= K}
    got = {(r["function"], r["parameter"]): (r["sampled_calls"], r["installs"]) for r in a.parameters()
           if r["function"] != "(other)"}
    assert got == expected and expected


def test_signatures_come_from_error_spans(a, truth):
    """Stack signatures, sample counts and stack traces come from the sampled error spans."""
    spans = [s for s in truth.spans if s["package"] == fixtures.PKG and s["error"] and "fn" in s]
    sampled = Counter((s["fn"], s["error_type"], s["signature"]) for s in spans)
    got = {(r["function"], r["error_type"], r["signature"]): r for r in a.signatures()}
    assert got
    for key, r in got.items():
        assert r["sampled"] == sampled[key]
        assert r["stacktrace"].startswith(fixtures.FUNCTIONS[key[0]][0] + ":")


def test_commands_durations_and_success(a, truth):
    """Command runs, success rate and p50/p95 durations match the written command spans."""
    cmds = [s for s in truth.spans if s["name"] == "usagetrace.command"]
    got = {r["command"]: r for r in a.commands()}
    for name in {s["command"] for s in cmds}:
        mine = [s for s in cmds if s["command"] == name]
        durs = sorted(s["duration"] for s in mine)
        q = statistics.quantiles(durs, n=100, method="inclusive")
        assert got[name]["runs"] == len(mine)
        interrupted = sum(s["exit_code"] == 130 for s in mine)  # neither success nor failure
        assert got[name]["interrupted"] == interrupted
        assert got[name]["success_rate"] == round(sum(s["exit_code"] == 0 for s in mine) / (len(mine) - interrupted), 4)
        assert got[name]["p50_ms"] == pytest.approx(statistics.median(durs) / 1e6, abs=1e-3)
        assert got[name]["p95_ms"] == pytest.approx(q[94] / 1e6, abs=1e-3)


def test_command_measures_summarize_declared_values(a, truth):
    """Numeric measures are averaged; boolean and enum values get their install share per command."""
    runs = [s for s in truth.spans if s["name"] == "usagetrace.command" and s["measures"]]
    got = {(r["command"], r["measure"], r["value"]): r for r in a.command_measures()}
    mean = statistics.fmean(s["measures"]["flowgroups"] for s in runs)
    assert got[("mycli run", "flowgroups", "(numeric)")]["mean"] == pytest.approx(mean, abs=1e-4)
    dry = [s for s in runs if s["measures"]["dry_run"]]
    assert got[("mycli run", "dry_run", "true")]["runs"] == len(dry)


def test_events_pages_users_and_callbacks(a, truth):
    """Events, page views, distinct hashed users per path and callbacks match the integration spans."""
    ev = [s for s in truth.spans if s["name"] == "usagetrace.event"]
    assert a.events()[0]["occurrences"] == len(ev)
    pv = [s for s in truth.spans if s["name"] == "usagetrace.page_view"]
    users = defaultdict(set)
    for s in pv:
        users[s["path"]].add(s["user"])
    got = {r["path"]: r for r in a.page_views()}
    assert set(got) == {p for p, u in users.items() if len(u) >= K}  # /admin has 2 users
    for path, r in got.items():
        assert r["users"] == len(users[path])
        assert r["views"] == sum(1 for s in pv if s["path"] == path)
        assert r["loads"] == sum(1 for s in pv if s["path"] == path and s["kind"] == "load")
    assert a.user_count_by_path("/") == len(users["/"])
    all_users = {s["user"] for s in truth.spans if s["name"] in ("usagetrace.page_view", "usagetrace.callback")}
    assert a.user_count() == len(all_users)
    cb = Counter(s["callback"] for s in truth.spans if s["name"] == "usagetrace.callback")
    assert {r["callback"]: r["invocations"] for r in a.callbacks()} == dict(cb)
    day_views = Counter(s["day"].isoformat() for s in pv if s["path"] == "/reports")
    for r in a.page_activity("/reports"):
        if r["day"] != "(other)":
            assert r["views"] == day_views[r["day"]]


def test_user_activity_is_one_user_per_row_so_needs_k1(engine, truth):
    """Per-user activity rows describe one user each: folded at k=5, visible only with an explicit k=1."""
    folded = Analytics(engine, package=fixtures.PKG, k=K).user_activity()
    assert [r["user_hash"] for r in folded] == ["(other)"]
    open_ = Analytics(engine, package=fixtures.PKG, k=1).user_activity()
    views = Counter(s["user"] for s in truth.spans if s["name"] == "usagetrace.page_view")
    assert {r["user_hash"]: r["page_views"] for r in open_ if r["page_views"]} == dict(views)


def test_since_window_filters_by_time(engine, truth):
    """--since keeps only data from the window (relative to an injected now)."""
    now = dt.datetime(2025, 11, 24, tzinfo=dt.timezone.utc)
    a7 = Analytics(engine, package=fixtures.PKG, since="7d", k=1, now=now)
    got = a7.overview()["calls"]
    # the window starts at 2025-11-17T00:00Z; points are stamped after 09:00 UTC on their day
    assert got == sum(n for _p, _i, _v, day, _f, _o, n in pkg(truth.calls) if day >= dt.date(2025, 11, 17))
    assert 0 < got < a7_all(engine)


def a7_all(engine) -> int:
    return Analytics(engine, package=fixtures.PKG, k=1).overview()["calls"]


def test_several_packages_require_a_choice(engine):
    """Without --package, data holding two packages is an error that lists them."""
    with pytest.raises(AnalyticsError, match="mypkg, otherpkg"):
        Analytics(engine)
    other = Analytics(engine, package="otherpkg", k=1)
    assert {r["function"] for r in other.feature_usage()} == {"otherpkg.api.go"}


def test_foreign_scopes_are_ignored(engine, truth):
    """Spans under another instrumentation scope in the same file are not counted."""
    got = engine.execute("SELECT count(*) FROM ut_spans")[1][0][0]
    assert got == len(truth.spans)
