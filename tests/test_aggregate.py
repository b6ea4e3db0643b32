"""Daily and weekly upload (issue 13): counted on the machine, one report per period, nothing after no.

Real subprocesses stand for a person's runs; a real OTLPReceiver on 127.0.0.1
counts connections and decodes what arrives. The local store is the real file
under USAGETRACE_HOME.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from usagetrace._internal import aggregate, config, paths, resource, runenv
from usagetrace.testing import OTLPReceiver

from .conftest import child_env

AGGPKG = '''
import usagetrace


def f(x=1):
    return x


def g():
    raise ValueError("boom")


def run(n=3, env="dev"):
    with usagetrace.command("build", package=__name__, measures={"n": int, "env": ("dev", "prod")}) as cmd:
        cmd.set(n=n, env=env)
    usagetrace.event("started", package=__name__)


H = usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9", consent="opt-in")
'''

#: One run: f five times, g failing once, one command with two measurements, one event.
USER = """
import aggpkg
for _ in range(5):
    aggpkg.f()
try:
    aggpkg.g()
except ValueError:
    pass
aggpkg.run()
"""


class Setup:
    """A package, a home, a receiver and helpers to run a person's processes and the CLI."""

    def __init__(self, tmp_path, rx, **extra) -> None:
        pkgs = tmp_path / "pkgs"
        (pkgs / "aggpkg").mkdir(parents=True)
        (pkgs / "aggpkg" / "__init__.py").write_text(AGGPKG)
        self.home = os.environ["USAGETRACE_HOME"]
        self.rx = rx
        self.env = {"PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint if rx else "http://127.0.0.1:9",
                    "USAGETRACE_UPLOAD": "daily", "USAGETRACE_DETACHED_SEND": "1"}
        self.env.update(extra)

    def run(self, code: str = USER, timeout: float = 60, **extra) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              env=child_env({**self.env, **extra}), timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr  # never a word from usagetrace in the host's output
        return proc

    def cli(self, *args, **extra) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "usagetrace", *args], capture_output=True, text=True,
                              env=child_env({**self.env, **extra}), timeout=120)

    @contextlib.contextmanager
    def long_run(self, first: int, then: int):
        """A long-running process calling f ``first`` times, folded into the store while it runs (checked);
        after the block it calls f ``then`` more times and exits (checked)."""
        code = f"import sys, aggpkg\nfor _ in range({first}): aggpkg.f()\nprint('called', flush=True)\n" \
               f"sys.stdin.readline()\nfor _ in range({then}): aggpkg.f()\n"
        env = child_env({**self.env, "USAGETRACE_FOLD_INTERVAL": "0.1", "USAGETRACE_EXPORT_INTERVAL": "0.1"})
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout.readline().strip() == "called"
            deadline = time.monotonic() + 20
            while self.counts().get(("calls", "aggpkg.f", "ok")) != first and time.monotonic() < deadline:
                time.sleep(0.05)  # folded while running, without any network
            assert self.counts() == {("runs",): 1, ("calls", "aggpkg.f", "ok"): first}
            yield proc
            proc.stdin.write("go\n")
            proc.stdin.flush()
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0 and err == ""

    def store(self) -> dict | None:
        doc, problem = aggregate.load("aggpkg")
        assert problem is None, problem
        return doc

    def counts(self) -> dict:
        doc = self.store()
        out: dict = {}
        for b in (doc["buckets"] + doc["outbox"]) if doc else []:
            out[("runs",)] = out.get(("runs",), 0) + b["runs"]
            for key, value in b["counts"]:
                out[tuple(key)] = out.get(tuple(key), 0) + value
        return out


def _points(rx, metric: str) -> dict:
    out: dict = {}
    for p in rx.points(metric):
        key = tuple(sorted(p["attributes"].items()))
        out[key] = out.get(key, 0) + p["value"]
    return out


def _expect_exact(rx, runs: int) -> None:
    assert rx.calls("aggpkg.f", "ok") == 5 * runs
    assert rx.calls("aggpkg.g", "error") == runs
    assert rx.calls("aggpkg.run", "ok") == runs
    assert sum(p["value"] for p in rx.points("usagetrace.errors")) == runs
    assert sum(p["value"] for p in rx.points("usagetrace.runs")) == runs
    assert _points(rx, "usagetrace.commands") == {
        (("usagetrace.command.name", "build"), ("usagetrace.outcome", "ok")): runs}
    assert _points(rx, "usagetrace.events") == {(("usagetrace.event.name", "started"),): runs}
    assert _points(rx, "usagetrace.measurements") == {
        (("usagetrace.command.name", "build"), ("usagetrace.measurement", "env"),
         ("usagetrace.measurement.value", "dev")): runs,
        (("usagetrace.command.name", "build"), ("usagetrace.measurement", "n"),
         ("usagetrace.measurement.value", "(numeric)")): runs,
    }
    assert _points(rx, "usagetrace.measurement.sum") == {
        (("usagetrace.command.name", "build"), ("usagetrace.measurement", "n")): 3.0 * runs}


# ------------------------------------------------------------------------------------ the issue's "done when"


def test_twenty_daily_runs_connect_nowhere_then_flush_sends_one_exact_report(tmp_path):
    """20 short consented runs make no connection; `flush` sends one aggregate, exact; a second flush sends nothing."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        assert s.cli("enable", "aggpkg").returncode == 0
        for _ in range(20):
            s.run()
        assert not rx.wait_for(lambda r: r.connections > 0, timeout=2.0)  # not even late, from a detached process
        assert rx.connections == 0 and rx.attempts == 0
        assert s.counts()[("runs",)] == 20
        # A run's exit does not look the SDK up: the uploader adds its version when it builds the request.
        assert s.store()["buckets"] and all("telemetry.sdk.version" not in b["resource"] for b in s.store()["buckets"])

        flushed = s.cli("flush")
        assert flushed.returncode == 0, flushed.stderr
        assert "Uploaded 1 daily/weekly report(s) with the counts of 20 run(s) (2 request(s) accepted)" \
            in flushed.stdout
        assert rx.connections == 1 and len(rx.requests) == 2  # traces and metrics over one connection
        _expect_exact(rx, 20)
        resources = [p["resource"] for p in rx.points()] + [sp["resource"] for sp in rx.all_spans()]
        assert resources and all(r["usagetrace.upload"] == "daily" for r in resources)
        assert not any("usagetrace.session.id" in r for r in resources)  # runs are counted, not linked
        assert len({r["usagetrace.install.id"] for r in resources}) == 1
        from opentelemetry.sdk.version import __version__ as sdk_version

        assert all(r["telemetry.sdk.version"] == sdk_version for r in resources)
        assert all(list(r).index("telemetry.sdk.version") == list(r).index("telemetry.sdk.language") + 1
                   for r in resources)  # where a realtime run's resource has it
        # Exemplars: at most a few spans per function for the period, the failures among them.
        names = [sp["name"] for sp in rx.all_spans()]
        assert all(names.count(n) <= aggregate.EXEMPLARS for n in set(names))
        assert names.count("aggpkg.g") == aggregate.EXEMPLARS
        assert all(sp["status"] == 2 for sp in rx.spans("aggpkg.g"))
        # Periods, not moments: every point spans its UTC day exactly; exemplars start at the day's start.
        for p in rx.points():
            day = aggregate.period_of("daily", p["start"])
            assert (p["start"], p["time"]) == (day[1], day[2] - 1)
        assert all(sp["start"] == day[1] for sp in rx.all_spans())

        again = s.cli("flush")
        assert again.returncode == 0 and "Nothing was waiting for a daily or weekly upload either." in again.stdout
        assert rx.connections == 1 and len(rx.requests) == 2
        assert s.store()["buckets"] == [] and s.store()["outbox"] == []
        history = json.loads(s.cli("history", "aggpkg", "--json").stdout)["packages"]["aggpkg"]
        assert len(history) == 2 and all(item["accepted"] for item in history)  # both uploads have receipts


def test_after_disable_nothing_aggregated_before_is_ever_sent(tmp_path):
    """`usagetrace disable` deletes the aggregate (and the id); after a re-enable only newer runs are sent."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        for _ in range(5):
            s.run()
        old_id = resource.stored_install_id("aggpkg")
        disabled = s.cli("disable", "aggpkg")
        assert disabled.returncode == 0, disabled.stderr
        assert "the counts of 5 run(s) waiting for the daily upload" in disabled.stdout
        assert not os.path.exists(aggregate.store_path("aggpkg"))
        s.run()  # while disabled: nothing wrapped, nothing counted
        assert s.store() is None
        s.cli("enable", "aggpkg")
        assert s.cli("flush").returncode == 0
        assert rx.connections == 0
        s.run()
        assert s.cli("flush").returncode == 0
        assert sum(p["value"] for p in rx.points("usagetrace.runs")) == 1
        assert rx.calls("aggpkg.f") == 5
        assert {p["resource"]["usagetrace.install.id"] for p in rx.points()} != {old_id}


def test_a_running_process_that_sees_the_withdrawal_deletes_the_aggregate(tmp_path):
    """A hand-edited no, seen by a long-running process: the store and id go, and it records nothing more."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        with s.long_run(first=3, then=7):
            assert rx.connections == 0
            with open(paths.consent_file(), "w") as fh:
                fh.write("[consent]\naggpkg = false\n")  # by hand: the CLI's own forget does not run
            deadline = time.monotonic() + 20
            def kept():
                return os.path.exists(aggregate.store_path("aggpkg")) or resource.stored_install_id("aggpkg")

            while kept() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not os.path.exists(aggregate.store_path("aggpkg"))
            assert resource.stored_install_id("aggpkg") is None  # a no: the id goes too
        assert not os.path.exists(aggregate.store_path("aggpkg"))  # nothing after no, not even at exit
        s.cli("flush")
        assert rx.connections == 0


def test_the_uploader_that_finds_consent_gone_deletes_unsent(tmp_path):
    """Consent withdrawn by hand between the runs and the upload: nothing is sent, everything is deleted."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        for _ in range(3):
            s.run()
        with open(paths.consent_file(), "w") as fh:
            fh.write("[consent]\naggpkg = false\n")
        flushed = s.cli("flush", "aggpkg", "--json")
        assert flushed.returncode == 0, flushed.stderr
        sent = json.loads(flushed.stdout)["aggregate"]
        assert sent["withdrawn"] == 1 and sent["reports"] == 0
        assert rx.connections == 0
        assert not os.path.exists(aggregate.store_path("aggpkg"))
        assert resource.stored_install_id("aggpkg") is None


# ---------------------------------------------------------------------------------------- the store itself


def _record_loop(runs: int, marker: str = "") -> str:
    return f"""
import sys, time
from usagetrace._internal import aggregate
RES = {{"service.name": "p", "usagetrace.install.id": "i"}}
SET = {{"policy": "opt-in", "endpoint": None}}
for i in range({runs}):
    t = aggregate.Tally()
    now = time.time_ns()
    t.period = aggregate.period_of("daily", now)
    t.add_counts({{("calls", "p.f", "ok"): 3, ("errors", "p.g", "ValueError"): 1}}, now, now)
    t.add_samples([("p.f", now, now, {{"code.function.name": "p.f"}}, None)])
    done = aggregate.record("p", "daily", RES, SET, t, lambda: True, count_run=True)
    assert done["written"], done
    {marker}
"""


def test_eight_processes_two_hundred_runs_each_lose_and_double_nothing(tmp_path):
    """8 concurrent processes x 200 runs through aggregate.record (the at-exit fold): every count exact."""
    procs = [subprocess.Popen([sys.executable, "-c", _record_loop(200)], stderr=subprocess.PIPE, text=True,
                              env=child_env()) for _ in range(8)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    doc, problem = aggregate.load("p")
    assert problem is None
    [bucket] = doc["buckets"]
    assert bucket["runs"] == 1600
    counts = {tuple(k): v for k, v in bucket["counts"]}
    assert counts == {("calls", "p.f", "ok"): 4800, ("errors", "p.g", "ValueError"): 1600}
    assert len(bucket["exemplars"]["p.f"]) == aggregate.EXEMPLARS
    # The runs only appended to the journal; the uploader's fold compacts them into the store, exactly.
    with aggregate.Store("p") as store:
        folded = aggregate.compact(store)
        store.save()
    aggregate.finished(folded)
    assert not os.path.exists(aggregate.journal_path("p"))
    assert aggregate.load("p")[0]["buckets"][0]["runs"] == 1600
    assert os.path.getsize(aggregate.store_path("p")) < 16 * 1024


def test_sigkill_mid_append_loses_only_that_run_and_counts_it(tmp_path):
    """Killed in the middle of appending its line: that run is lost and counted (journal_torn), the others kept."""
    pause = """
import os, sys, time
from usagetrace._internal import aggregate as _agg
real = _agg._append
def paused(fd, data):
    if os.environ.get("PAUSE_AT") == str(i):
        os.write(fd, data[: len(data) // 2])
        print("paused", flush=True)
        time.sleep(60)
    real(fd, data)
_agg._append = paused
"""
    code = pause + _record_loop(5, marker='print("done", flush=True)').replace("import sys, time\n", "")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=child_env({"PAUSE_AT": "3"}))
    lines = []
    try:
        while len(lines) < 4:
            lines.append(proc.stdout.readline().strip())
        assert lines == ["done", "done", "done", "paused"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    subprocess.run([sys.executable, "-c", _record_loop(2)], check=True, env=child_env(), timeout=120)
    aggregate.fold("p")
    doc, problem = aggregate.load("p")
    assert problem is None and doc["buckets"][0]["runs"] == 5
    counts = {tuple(k): v for k, v in doc["buckets"][0]["counts"]}
    assert counts[("dropped", "journal_torn")] == 1  # sent with the report: maintainers see the loss


def test_sigkill_at_random_moments_never_breaks_the_store(tmp_path):
    """Kills at random points of a busy writer: the store always reads, and holds every finished run (+ at most 1)."""
    import random

    rng = random.Random(13)
    code = _record_loop(10_000, marker='print("done", flush=True)')
    finished = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            first = proc.stdout.readline()  # started writing
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            out = proc.stdout.read()  # the file object's read: lines readline() buffered are not lost
        finally:
            proc.kill()
        done = (first + out).count("done")
        doc, problem = aggregate.load("p")
        assert problem is None
        runs = doc["buckets"][0]["runs"]
        assert finished + done <= runs <= finished + done + 1
        finished = runs


@pytest.mark.parametrize("content", [b"{not json", b'{"v": 1, "package": "aggpkg", "buckets": [{"runs": "x"}]',
                                     b'{"v": 1, "package": "aggpkg", "buckets": [{"id": 1}], "outbox": [], "meta": {}}',
                                     b"\xff\xfe\x00garbage", b'{"v": 99}'])
def test_a_broken_store_is_set_aside_and_counted_never_raised(tmp_path, content):
    """A store that cannot be used: the run is unaffected, the file is renamed aside, the loss is reported."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        path = aggregate.store_path("aggpkg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content)
        s.run()  # a run only appends to the journal: unaffected by the broken store
        assert aggregate.load("aggpkg")[1] is not None  # reported (status) until the uploader sets it aside
        aggregate.fold("aggpkg")
        assert s.counts()[("runs",)] == 1
        aside = [n for n in os.listdir(os.path.dirname(path)) if n.startswith("aggpkg.json.broken-")]
        assert len(aside) == 1
        with open(os.path.join(os.path.dirname(path), aside[0]), "rb") as fh:
            assert fh.read() == content  # kept as it was, for a person to look at
        status = json.loads(s.cli("status", "aggpkg", "--json").stdout)["packages"][0]["upload"]
        assert status["drops"] == {} and status["runs"] == 1 and status["set_aside"] == 1
        assert s.cli("flush").returncode == 0
        assert _points(rx, "usagetrace.dropped") == {(("usagetrace.drop.reason", "store_broken"),): 1}
        _expect_exact(rx, 1)


# ------------------------------------------------------------------------------------------- periods, bounds


def _seed(days_ago: float, runs: int = 2) -> None:
    """Put ``runs`` runs into the period ``days_ago`` days back, as runs then would have (the real record())."""
    now = time.time_ns() - int(days_ago * aggregate.DAY_NS)
    for _ in range(runs):
        t = aggregate.Tally()
        t.period = aggregate.period_of("daily", now)
        t.add_counts({("calls", "aggpkg.f", "ok"): 4}, now, now)
        res = {"service.name": "aggpkg", "usagetrace.install.id": "0b5ee5e6-5eed-4000-8000-000000000000",
               "usagetrace.upload": "daily"}
        aggregate.record("aggpkg", "daily", res, {"policy": "opt-in", "ci": "off", "endpoint": None,
                                                  "consent_version": None, "dev_file": None, "extra_keys": []},
                         t, lambda: True, count_run=True, can_upload=False)


def test_an_ended_period_is_uploaded_once_by_the_detached_uploader(tmp_path):
    """The first run after a day ended starts one uploader: yesterday's report is sent, today's stays."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        _seed(days_ago=1)
        s.run()
        assert rx.wait_for(lambda r: len(r.requests) >= 1, timeout=60)
        time.sleep(0.5)
        assert rx.connections == 1
        assert sum(p["value"] for p in rx.points("usagetrace.runs")) == 2  # the seeded day only
        assert rx.calls("aggpkg.f") == 8
        yesterday = aggregate.period_of("daily", time.time_ns() - aggregate.DAY_NS)
        assert all(yesterday[1] <= p["start"] <= p["time"] < yesterday[2] for p in rx.points())
        deadline = time.monotonic() + 30
        while s.store()["outbox"] and time.monotonic() < deadline:
            time.sleep(0.05)
        doc = s.store()
        assert doc["outbox"] == [] and [b["runs"] for b in doc["buckets"]] == [1]  # today keeps counting
        s.run()
        assert not rx.wait_for(lambda r: r.connections > 1, timeout=3.0)  # nothing due: no second upload


def test_nothing_older_than_three_weeks_is_ever_sent(tmp_path):
    """A period that began more than 21 days ago is deleted unsent, and counted in the next report."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        _seed(days_ago=22)
        sent = json.loads(s.cli("flush", "--json").stdout)["aggregate"]
        assert sent["expired"] == 1 and sent["reports"] == 0 and rx.connections == 0
        s.run()
        s.cli("flush")
        assert _points(rx, "usagetrace.dropped") == {(("usagetrace.drop.reason", "expired"),): 1}
        assert rx.calls("aggpkg.f") == 5  # not the seeded 8


def test_a_rejected_report_is_dropped_and_counted_a_failed_one_kept(tmp_path):
    """4xx: the report is dropped (counted in the next one); no answer: kept, retried later."""
    with OTLPReceiver(status=400) as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        s.run()
        rejected = s.cli("flush", "--json")
        assert json.loads(rejected.stdout)["aggregate"]["rejected"] == 1
        assert s.store()["outbox"] == [] and s.store()["buckets"] == []
        s.run()
        rx.status = 503  # (pointing this flush elsewhere would keep it as "elsewhere": never sent there)
        down = s.cli("flush", "--json")
        assert down.returncode == 1 and json.loads(down.stdout)["aggregate"]["failed"] == 1
        doc = s.store()
        assert len(doc["outbox"]) == 1 and doc["meta"]["retry_ns"] > time.time_ns()
        status = s.cli("status", "aggpkg").stdout
        assert "the counts of 1 run(s)" in status and "1 report(s) rejected by the collector" in status
        rx.status = 200
        assert s.cli("flush").returncode == 0
        _expect_exact(rx, 1)
        assert _points(rx, "usagetrace.dropped") == {(("usagetrace.drop.reason", "upload_rejected"),): 1}


def test_preview_pending_prints_exactly_the_next_upload(tmp_path):
    """`preview --pending` shows what `flush` then sends, byte for byte in the counts; nothing leaves before."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        for _ in range(3):
            s.run()
        shown = s.cli("preview", "aggpkg", "--pending", "--json")
        assert shown.returncode == 0, shown.stderr
        preview = json.loads(shown.stdout)
        assert preview["runs"] == 3 and rx.connections == 0
        text = s.cli("preview", "aggpkg", "--pending").stdout
        assert "usagetrace.runs {} = 3" in text and "nothing was sent" in text
        s.cli("flush")
        sent = [req for _, req in rx.requests]

        def strip_ids(request):
            text = json.dumps(request, sort_keys=True)
            for key in ("traceId", "spanId"):
                text = __import__("re").sub(rf'"{key}": "[0-9a-f]*"', f'"{key}": ""', text)
            return json.loads(text)

        assert [strip_ids(r) for r in preview["requests"]] == [strip_ids(r) for r in sent]


def test_a_long_running_process_folds_periodically_and_counts_once(tmp_path):
    """Daily mode in a long process: its counts reach the store while it runs, never twice, with no network."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.cli("enable", "aggpkg")
        with s.long_run(first=10, then=1):
            pass
        assert s.counts() == {("runs",): 1, ("calls", "aggpkg.f", "ok"): 11}
        assert rx.connections == 0


# ---------------------------------------------------------------------------------------------- upload modes


def test_upload_mode_precedence_and_the_safe_choice(monkeypatch, tmp_path):
    """USAGETRACE_UPLOAD wins; an unusable value means daily (weekly if asked); dev mode and captures are realtime."""
    monkeypatch.setattr(runenv, "CONTAINER_MARKERS", ())  # as on a person's laptop, not in this test container
    for var, _ in runenv.CI_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    # A state dir that lasts, wherever the checkout and pytest's temporary folders are (CI clones
    # into /tmp too): no folder counts as temporary until the temporary-folder case below.
    temp_roots = runenv._TEMP_ROOTS
    monkeypatch.setattr(runenv, "_TEMP_ROOTS", ())
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(var, raising=False)
    lasting = str(tmp_path / "never-created" / "state")
    assert config.upload_mode(None, "http", lasting) == config.Upload("daily", "default")
    assert config.upload_mode("weekly", "grpc", lasting).mode == "weekly"
    assert config.upload_mode("realtime", "http", lasting).mode == "realtime"
    assert config.upload_mode(None, "file", lasting).source == "development mode"
    assert config.upload_mode("daily", "http", lasting, captured=True).mode == "realtime"
    monkeypatch.setenv("USAGETRACE_UPLOAD", " Weekly ")
    assert config.upload_mode("realtime", "file", lasting) == config.Upload("weekly", "USAGETRACE_UPLOAD")
    monkeypatch.setenv("USAGETRACE_UPLOAD", "hourly")
    bad = config.upload_mode("realtime", "http", lasting)
    assert bad.mode == "daily" and "'hourly' is not one of realtime, daily, weekly: using daily" in bad.note
    assert config.upload_mode("weekly", "http", lasting).mode == "weekly"
    monkeypatch.delenv("USAGETRACE_UPLOAD")
    monkeypatch.setenv("CI", "true")
    assert "CI (generic)" in config.upload_mode(None, "http", lasting).note
    monkeypatch.delenv("CI")
    monkeypatch.setattr(runenv, "_TEMP_ROOTS", temp_roots)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert "temporary directory" in config.upload_mode(None, "http", str(tmp_path / "state")).note
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert "cannot be written" in config.upload_mode(None, "http", str(blocker / "state")).note
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert config.upload_mode(None, "http", lasting).note.endswith("(a Kubernetes pod); set USAGETRACE_UPLOAD=daily "
                                                                   "if it does")


def test_where_the_store_would_not_last_runs_are_realtime(tmp_path):
    """CI (and a temporary or container home): a maintainer's daily becomes realtime; an explicit daily stays daily."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx, USAGETRACE_DETACHED_SEND="0", USAGETRACE_EXPORT_INTERVAL="0.1")
        ci = {"CI": "true", "AGGPKG_TELEMETRY": "1", "USAGETRACE_UPLOAD": ""}
        s.run(USER + "import time\ntime.sleep(0.6)\n", **ci)
        assert rx.wait_for(lambda r: r.calls("aggpkg.f") == 5, timeout=10)
        [res] = {json.dumps(p["resource"], sort_keys=True) for p in rx.points("usagetrace.calls")}
        res = json.loads(res)
        assert res["usagetrace.upload"] == "realtime" and "usagetrace.session.id" in res
        assert not os.path.exists(aggregate.store_path("aggpkg"))
        status = json.loads(s.cli("status", "aggpkg", "--json", **ci).stdout)["packages"][0]["upload"]
        assert status["mode"] == "realtime" and "CI (generic)" in status["note"]
        assert "realtime: sent as it happens" in s.cli("status", "aggpkg", **ci).stdout
        # Without CI, the test home is in a temporary directory (and this may be a container): realtime too.
        assert json.loads(s.cli("status", "aggpkg", "--json", USAGETRACE_UPLOAD="").stdout)[
            "packages"][0]["upload"]["mode"] == "realtime"
        # The operator's explicit choice is taken as given, even in CI.
        s.run(**{**ci, "USAGETRACE_UPLOAD": "daily"})
        assert s.counts()[("runs",)] == 1


def test_instrument_upload_option_and_flush_in_daily_mode(packages, monkeypatch):
    """instrument(upload=) is validated; Instrumentation.flush() in daily mode folds locally and sends nothing."""
    monkeypatch.setenv("DPKG_TELEMETRY", "1")
    monkeypatch.setenv("USAGETRACE_UPLOAD", "daily")
    with OTLPReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        mod = packages.load("dpkg", {"__init__.py": """
            import usagetrace
            def f():
                return 1
            H = usagetrace.instrument(__name__, upload="weekly")
        """})
        assert mod.H.options["upload"] == "weekly"
        for _ in range(4):
            mod.f()
        assert mod.H.flush(5) is True
        doc, _ = aggregate.load("dpkg")
        [bucket] = doc["buckets"]
        assert bucket["mode"] == "daily"  # USAGETRACE_UPLOAD overrides the maintainer
        assert {tuple(k): v for k, v in bucket["counts"]} == {("calls", "dpkg.f", "ok"): 4}
        assert rx.connections == 0
    with pytest.warns(RuntimeWarning, match="upload='hourly' is not one of"):
        handle = packages.load("dpkg2", {"__init__.py": """
            import usagetrace
            H = usagetrace.instrument(__name__, upload="hourly")
        """}).H
    assert "upload" not in handle.options


def test_nothing_retroactive_a_period_is_sent_from_the_grant_on(tmp_path):
    """Runs before the yes record nothing; the day's report starts at the grant, not at midnight."""
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx)
        s.run()
        s.run()
        assert s.store() is None  # opt-in, not yet agreed: nothing counted at all
        granted = time.time_ns()
        s.cli("enable", "aggpkg")
        s.run()
        assert s.cli("flush").returncode == 0
        _expect_exact(rx, 1)
        day = aggregate.period_of("daily", granted)
        # the counts are from the grant on; the report names the day, not the moment of the grant
        assert all((p["start"], p["time"]) == (day[1], day[2] - 1) for p in rx.points())


def test_weekly_periods_start_on_monday(tmp_path):
    """upload weekly: one bucket per ISO week (Monday 00:00 UTC to the next Monday)."""
    monday = 1_796_601_600 * 10**9  # 2026-12-07 00:00 UTC, a Monday
    for offset_days in (0, 3, 6.99):
        name, start, end = aggregate.period_of("weekly", monday + int(offset_days * aggregate.DAY_NS))
        assert (name, start, end) == ("week of 2026-12-07", monday, monday + 7 * aggregate.DAY_NS)
    assert aggregate.period_of("weekly", monday - 1)[0] == "week of 2026-11-30"
    assert aggregate.period_of("daily", monday - 1)[0] == "2026-12-06"
    with OTLPReceiver() as rx:
        s = Setup(tmp_path, rx, USAGETRACE_UPLOAD="weekly")
        s.cli("enable", "aggpkg")
        s.run()
        s.run()
        [bucket] = s.store()["buckets"]
        assert bucket["mode"] == "weekly" and bucket["period"].startswith("week of ") and bucket["runs"] == 2
        assert bucket["end_ns"] - bucket["start_ns"] == 7 * aggregate.DAY_NS
