"""The same runs, uploaded realtime or daily, give the same report answers on both engines (sessions aside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("duckdb")
chdb_session = pytest.importorskip("chdb.session")

import ch_load

from usagetrace._internal.analytics.clickhouse_engine import ClickHouseEngine
from usagetrace._internal.analytics.core import Analytics
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine
from usagetrace.testing import OTLPReceiver

from ..conftest import child_env

MODEPKG = '''
import os
import usagetrace


def f(x=1):
    return x


def g(kind="value"):
    raise (KeyError if kind == "key" else ValueError)("boom")


def build(n, env, fail=False):
    with usagetrace.command("build", package=__name__, emit="always",
                            measures={"n": int, "env": ("dev", "prod"), "fast": bool}) as cmd:
        cmd.set(n=n, env=env, fast=n < 3)
        if fail:
            raise RuntimeError("failed build")


def deploy():
    with usagetrace.command("deploy", package=__name__):
        pass
    usagetrace.event("deployed", package=__name__)


H = usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9", consent="opt-in",
                          version=os.environ["MODEPKG_VERSION"])
'''

#: (install, version, what one run does): three installs, one upgrading mid-way; errors, commands, events.
RUNS = [
    ("a", "1.0", "for _ in range(7): m.f()\nm.build(2, 'dev')"),
    ("a", "1.0", "m.f(); m.f()\ntry: m.g()\nexcept ValueError: pass\nm.deploy()"),
    ("b", "1.0", "m.build(5, 'prod')\ntry: m.build(1, 'dev', fail=True)\nexcept RuntimeError: pass"),
    ("b", "2.0", "for k in ('key', 'value', 'key'):\n    try: m.g(k)\n    except (KeyError, ValueError): pass"),
    ("b", "2.0", "m.deploy(); m.deploy()\nm.f()"),
    ("c", "2.0", "m.build(4, 'prod')\nm.f(3)"),
]


def _collect(tmp_path, mode: str) -> list[str]:
    """Run RUNS in ``mode`` (each install its own home), flush, and return what arrived as OTLP JSON lines."""
    pkgs = tmp_path / "pkgs"
    (pkgs / "modepkg").mkdir(parents=True, exist_ok=True)
    (pkgs / "modepkg" / "__init__.py").write_text(MODEPKG)
    with OTLPReceiver() as rx:
        for install in sorted({r[0] for r in RUNS}):
            env = child_env({"PYTHONPATH": str(pkgs), "USAGETRACE_HOME": str(tmp_path / mode / install),
                             "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "USAGETRACE_UPLOAD": mode,
                             "USAGETRACE_DETACHED_SEND": "0"})
            subprocess.run([sys.executable, "-m", "usagetrace", "enable", "modepkg"], env=env, check=True,
                           capture_output=True)
            for who, version, code in RUNS:
                if who == install:
                    proc = subprocess.run([sys.executable, "-c", "import modepkg as m\n" + textwrap.dedent(code)],
                                          env={**env, "MODEPKG_VERSION": version}, capture_output=True, text=True,
                                          timeout=60)
                    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
            flushed = subprocess.run([sys.executable, "-m", "usagetrace", "flush"], env=env, capture_output=True,
                                     text=True, timeout=120)
            assert flushed.returncode == 0, flushed.stdout + flushed.stderr
        uploads = {p["resource"].get("usagetrace.upload") for p in rx.points()}
        assert uploads == {mode}
        return [json.dumps(request) + "\n" for _, request in rx.requests]


def _answers(a: Analytics) -> dict:
    """Every answer the issue names (installs, calls, errors, versions, commands) and more; no sessions, no timings."""
    drop = {"sessions", "p50_ms", "p95_ms"}

    def rows(items):
        return [{k: v for k, v in r.items() if k not in drop} for r in items]

    overview = {k: v for k, v in a.overview().items() if k not in drop | {"first_seen", "last_seen"}}
    return {
        "overview": overview, "feature_usage": rows(a.feature_usage()), "exceptions": rows(a.exceptions()),
        "error_rates": rows(a.error_rates()), "commands": rows(a.commands()),
        "command_measures": rows(a.command_measures()), "events": rows(a.events()),
        "adoption": rows(a.adoption("week")), "python_versions": rows(a.python_versions()),
        "platforms": rows(a.platforms()), "run_contexts": rows(a.run_contexts()),
    }


@pytest.mark.timeout(900)
def test_same_runs_same_answers_in_realtime_and_daily_on_both_engines(tmp_path):
    """installs, calls, errors, versions, commands, measurements and events agree between modes and engines."""
    answers = {}
    for mode in ("realtime", "daily"):
        collected = _collect(tmp_path, mode)
        # Every request stored twice (a lost answer, then the same request again): the same answers,
        # because each usagetrace.batch.id is counted once.
        for copies, lines in (("once", collected), ("twice", collected + collected[::-1])):
            files = tmp_path / f"{mode}-{copies}-files"
            files.mkdir()
            (files / "data.jsonl").write_text("".join(lines))
            duck = DuckDBEngine.from_path(files)
            session = chdb_session.Session(str(tmp_path / f"{mode}-{copies}-chdb"))
            try:
                ch_load.load(session, lines, tmp_path, db="otel")
                clickhouse = ClickHouseEngine.from_chdb(session, database="otel")
                for name, engine in (("duckdb", duck), ("clickhouse", clickhouse)):
                    answers[(mode, copies, name)] = _answers(Analytics(engine, package="modepkg", k=1))
            finally:
                duck.close()
                session.close()
    realtime = answers[("realtime", "once", "duckdb")]
    # The workload, as counted by hand from RUNS.
    assert realtime["overview"] == {"installs": 3, "calls": 22, "error_calls": 5, "error_rate": round(5 / 22, 4),
                                    "versions": 2, "functions": 4}
    assert {c["command"]: (c["runs"], c["installs"], c["success_rate"]) for c in realtime["commands"]} == {
        "build": (4, 3, 0.75), "deploy": (3, 2, 1.0)}
    assert {(m["measure"], m["value"]): (m["runs"], m["mean"]) for m in realtime["command_measures"]} == {
        ("n", "(numeric)"): (4, 3.0), ("env", "dev"): (2, None), ("env", "prod"): (2, None),
        ("fast", "true"): (2, None), ("fast", "false"): (2, None)}
    assert [(e["event"], e["occurrences"], e["installs"]) for e in realtime["events"]] == [("deployed", 3, 2)]
    for key, value in answers.items():
        for question in realtime:
            assert value[question] == realtime[question], (key, question)
