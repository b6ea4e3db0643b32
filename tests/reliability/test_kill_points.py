"""Exactly once at the maintainer's report, wherever a kill, a late answer or a second sender strikes.

A real collector stand-in (its own process) stores every request *before*
answering, then answers after a delay that the test sets (a late answer: the
client has already given up, yet the data is stored). What it stored is read
by the real report engine (DuckDB, ``usagetrace report``'s), which counts
each ``usagetrace.batch.id`` once.

The trials fork the test process (everything already imported: a trial costs
milliseconds) into the real spool sender or daily uploader, SIGKILL it at a
random moment of its work (from before consent is read to after the last
answer), then let a fresh one finish. Each trial has its own home and install
id; the report must show, per install, exactly the calls that were made.
Nothing in these trials is dropped, so "lower by what is counted as dropped"
is zero here: the report's ``usagetrace.dropped`` is checked to be empty.

Figures (trials, outcomes) are printed with ``-s`` and kept in RELIABILITY.md.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from .conftest import GENEROUS, clean_env

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the sender (POSIX)")

pytest.importorskip("duckdb")

COLLECTOR = r"""
import base64, gzip, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

out_path, control = sys.argv[1], sys.argv[2]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        signal = "traces" if self.path.endswith("/v1/traces") else "metrics"
        with lock:  # stored first: whatever happens to the answer, the data is in storage
            with open(out_path, "a") as fh:
                fh.write(signal + " " + base64.b64encode(body).decode() + "\n")
        try:
            late = float(open(control).read() or 0)
        except (OSError, ValueError):
            late = 0.0
        if late:
            time.sleep(late)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the client gave up (its timeout) or was killed


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever(poll_interval=0.05)
"""


class Collector:
    """The stand-in collector process: stores, then answers ``late`` seconds later."""

    def __init__(self, tmp_path) -> None:
        self.store = tmp_path / "stored.lines"
        self.control = tmp_path / "late.txt"
        self.control.write_text("0")
        self.proc = subprocess.Popen([sys.executable, "-c", COLLECTOR, str(self.store), str(self.control)],
                                     stdout=subprocess.PIPE, text=True)
        self.endpoint = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def late(self, seconds: float) -> None:
        self.control.write_text(str(seconds))

    def requests(self) -> list[tuple[str, bytes]]:
        if not self.store.exists():
            return []
        out = []
        for line in self.store.read_text().splitlines():
            signal, data = line.split(" ", 1)
            out.append((signal, base64.b64decode(data)))
        return out

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def collector(tmp_path):
    c = Collector(tmp_path)
    try:
        yield c
    finally:
        c.close()


def report(requests, tmp_path, name="report") -> tuple[dict, dict]:
    """What ``usagetrace report`` counts: calls per install id, and drops per reason (each batch id once)."""
    from usagetrace._internal import otlp_json
    from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine

    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "requests.jsonl").write_text(
        "".join(json.dumps(otlp_json.to_dict(signal, body)) + "\n" for signal, body in requests))
    engine = DuckDBEngine.from_path(folder)
    try:
        points = engine.relations(None, None).points
        _, calls = engine.execute(f"SELECT install_id, sum(value) FROM {points} p "
                                  "WHERE metric = 'usagetrace.calls' GROUP BY install_id")
        _, drops = engine.execute(f"SELECT drop_reason, sum(value) FROM {points} p "
                                  "WHERE metric = 'usagetrace.dropped' GROUP BY drop_reason")
    finally:
        engine.close()
    return {i: int(n) for i, n in calls}, {r: int(n) for r, n in drops}


def _in_child(env: dict, work) -> int:
    """Fork; in the child set ``env`` and run ``work()``, then _exit. Return the child's pid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with the collector's pipe reader: harmless
        pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.environ.update(env)
            work()
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _finish(pid: int, kill_after: float | None) -> str:
    """Wait for the child; SIGKILL it after ``kill_after`` s (None: let it finish). Return what happened."""
    if kill_after is not None:
        deadline = time.monotonic() + kill_after
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return "finished before the kill"
            time.sleep(0.0005)
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + GENEROUS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "killed" if os.WIFSIGNALED(status) else "finished"
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("a sender did not finish in time")


def _deliver():
    from usagetrace._internal import spool

    spool.deliver()


def _upload():
    from usagetrace._internal import uploader

    uploader.upload(everything=True)


def _spool_template(tmp_path, collector, calls: int) -> dict:
    """A real spool file: a host made ``calls`` calls and exited before exporting."""
    home = tmp_path / "template-home"
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, USAGETRACE_EXPORT_INTERVAL="3600",
                    USAGETRACE_UPLOAD="realtime")
    code = f"import tinystats\nfor i in range({calls}): tinystats.mean([1, i])\n"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=GENEROUS)
    assert proc.returncode == 0, proc.stderr
    (path,) = (home / "cache" / "spool").glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["samples"] and doc["counts"] and not doc["payloads"]
    return doc


def _trial_env(home, collector, timeout: float) -> dict:
    return {"USAGETRACE_HOME": str(home), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_TIMEOUT": str(timeout), "TINYSTATS_TELEMETRY": "1"}


def _plant_spool(home, template: dict, install: str) -> None:
    doc = json.loads(json.dumps(template))
    doc["resource"]["usagetrace.install.id"] = install
    folder = home / "cache" / "spool"
    folder.mkdir(parents=True)
    (folder / f"{int(time.time() * 1000)}-1-tinystats.json").write_text(json.dumps(doc))


def _store(env: dict, install: str, calls: int) -> None:
    """A real daily store holding one period's counts (and exemplars) of ``calls`` calls, in a child."""

    def work():
        from usagetrace._internal import aggregate, resource, spool

        attrs = resource.attributes("tinystats", "1.2.0", policy="opt-in", consent_source="env:TINYSTATS_TELEMETRY",
                                    sdk_version="1")
        attrs.pop("usagetrace.session.id")
        attrs["usagetrace.install.id"] = install
        attrs["usagetrace.upload"] = "daily"
        now = time.time_ns()
        tally = aggregate.Tally()
        tally.period = aggregate.period_of("daily", now)
        tally.add_counts({("calls", "tinystats.mean", "ok"): calls}, now - 10**9, now)
        tally.add_samples([("tinystats.mean", now - 10**9 + i, now - 10**9 + i + 5,
                            {"code.function.name": "tinystats.mean"}, None) for i in range(3)])
        settings = {"policy": "opt-in", "ci": "off", "consent_version": None, "endpoint": None, "dev_file": None,
                    "extra_keys": [], "grant": "env", "destination": spool.destination_env()}
        done = aggregate.record("tinystats", "daily", attrs, settings, tally, lambda: True, True, can_upload=False)
        assert done["written"]

    assert _finish(_in_child(env, work), None) == "finished"


def _calibrate(tmp_path, collector, prepare, work) -> float:
    """How long one undisturbed sender takes here (median of 5; the kills are spread over it)."""
    times = []
    for i in range(5):
        home = tmp_path / f"calibrate-{work.__name__}-{i}"
        env = _trial_env(home, collector, 5.0)
        prepare(home, env, f"calibration-{i}")
        start = time.monotonic()
        assert _finish(_in_child(env, work), None) == "finished"
        times.append(time.monotonic() - start)
    return sorted(times)[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_points_late_answers_and_concurrent_senders_count_each_call_once(tmp_path, collector):
    """>= 200 trials: SIGKILLed senders and uploaders at random stages, late answers, a second sender at work;
    per install, the report shows exactly the calls made."""
    rng = random.Random(int(os.environ.get("USAGETRACE_KILL_SEED", "0")) or None)
    calls = 7
    template = _spool_template(tmp_path, collector, calls)

    def prepare_spool(home, env, install):
        _plant_spool(home, template, install)

    def prepare_store(home, env, install):
        _store(env, install, calls)

    expected: dict[str, int] = {}
    tally: dict[str, int] = {}
    # What the senders use, imported here once: each forked trial starts with it (milliseconds, not an import).
    from usagetrace._internal import (  # noqa: F401
        batch, config, consent, forget, otlp_json, pipeline, receipts, spool, transport, uploader)

    spool_time = _calibrate(tmp_path, collector, prepare_spool, _deliver)
    upload_time = _calibrate(tmp_path, collector, prepare_store, _upload)
    for i in range(5):
        expected[f"calibration-{i}"] = 2 * calls  # one spool file and one store per calibration install

    trials = []
    trials += [("spool", "kill")] * 100 + [("spool", "late")] * 20 + [("spool", "second sender")] * 15
    trials += [("daily", "kill")] * 60 + [("daily", "late")] * 15
    rng.shuffle(trials)
    started = time.monotonic()
    for n, (kind, how) in enumerate(trials):
        install = f"trial-{n}"
        home = tmp_path / "homes" / install
        env = _trial_env(home, collector, 5.0)
        work, span = (_deliver, spool_time) if kind == "spool" else (_upload, upload_time)
        (prepare_spool if kind == "spool" else prepare_store)(home, env, install)
        expected[install] = calls
        if how == "kill":
            outcome = _finish(_in_child(env, work), rng.uniform(0.0, span))
        elif how == "late":
            # The collector stores, then answers after the client's timeout; sometimes the sender is also killed.
            collector.late(0.3)
            first = _in_child(_trial_env(home, collector, 0.1), work)
            outcome = "late, " + _finish(first, rng.choice([None, rng.uniform(0.0, 0.4)]))
            collector.late(0)
        else:
            # A sender still at work (slow answers) while another starts: the second finds it busy, sends nothing.
            collector.late(0.15)
            first = _in_child(env, work)
            time.sleep(rng.uniform(0.0, 0.2))
            second = _in_child(env, work)
            outcome = "concurrent: " + _finish(second, None) + ", " + _finish(first, rng.choice([None, 0.05]))
            collector.late(0)
        tally[f"{kind} {outcome}"] = tally.get(f"{kind} {outcome}", 0) + 1
        # Whatever happened, a fresh sender (the next run's, or `usagetrace flush`) finishes the job.
        assert _finish(_in_child(env, work), None) == "finished"
        if kind == "spool":
            assert not list((home / "cache" / "spool").glob("*.json")), f"trial {n}: spool not emptied"
    elapsed = time.monotonic() - started
    requests = collector.requests()
    counted, drops = report(requests, tmp_path)
    wrong = {i: (counted.get(i, 0), want) for i, want in expected.items() if counted.get(i, 0) != want}
    print(f"\nkill-point suite: {len(trials)} trials in {elapsed:.1f} s ({len(requests)} requests stored, "
          f"{len(requests) - len({b for s, body in requests for b in _ids(body)})} of them copies); "
          f"{json.dumps(dict(sorted(tally.items())))}")
    assert not wrong, f"{len(wrong)} installs miscounted (got, made): {dict(list(wrong.items())[:10])}"
    assert drops == {}
    assert len(trials) >= 200
    # Most kills land mid-work (how many depends on the machine's speed; the counts above never do).
    assert sum(v for k, v in tally.items() if "killed" in k) >= 50


def _ids(body: bytes) -> list[str]:
    from usagetrace._internal import batch

    return batch.ids_of(body)


EXIT_IN_FLIGHT = """
import time, tinystats
for i in range(100):
    tinystats.mean([1, i])
# the export interval is 0.2 s: by now the metrics request is at the collector, whose answer comes after 4 s
time.sleep(1.5)
"""


def test_host_exits_while_a_metrics_export_is_in_flight_exactly_100_of_100(tmp_path, collector, home):
    """The collector stores the request and answers after 4 s; the host exits first; the detached sender sends
    the spooled request again, under the same id: the report shows 100 calls, not 200."""
    collector.late(4.0)
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, USAGETRACE_EXPORT_INTERVAL="0.2",
                    USAGETRACE_DETACHED_SEND="1", USAGETRACE_UPLOAD="realtime")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(EXIT_IN_FLIGHT)], env=env, capture_output=True,
                          text=True, timeout=GENEROUS)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    deadline = time.monotonic() + 60
    spool = home / "cache" / "spool"

    def copies(requests):
        ids = [i for _, body in requests for i in _ids(body)]
        return len(ids) - len(set(ids))

    while time.monotonic() < deadline and (not spool.exists() or list(spool.glob("*.json"))
                                           or not copies(collector.requests())):
        time.sleep(0.1)
    requests = collector.requests()
    # The request in flight at exit was stored, spooled with its id, and sent again by the detached sender.
    assert copies(requests) >= 1, "the in-flight request was not sent again"
    assert not list(spool.glob("*.json"))
    counted, drops = report(requests, tmp_path)
    assert sum(counted.values()) == 100 and drops == {}


def test_daily_upload_stored_but_answered_after_the_timeout_then_flushed_again_exactly_50_of_50(
        tmp_path, collector, home):
    """Daily: the collector stores the report and answers after the client's timeout; the next `usagetrace flush`
    sends it again, under the bucket's id: the report shows 50 calls, not 100."""
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, USAGETRACE_UPLOAD="daily",
                    OTEL_EXPORTER_OTLP_TIMEOUT="1")
    proc = subprocess.run([sys.executable, "-c", "import tinystats\nfor i in range(50): tinystats.mean([1, i])\n"],
                          env=env, capture_output=True, text=True, timeout=GENEROUS)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    collector.late(3.0)
    first = subprocess.run([sys.executable, "-m", "usagetrace", "flush", "--json"], env=env, capture_output=True,
                           text=True, timeout=GENEROUS)
    assert json.loads(first.stdout)["aggregate"]["failed"] == 1, first.stdout  # no answer in time: kept
    collector.late(0)
    second = subprocess.run([sys.executable, "-m", "usagetrace", "flush", "--json"], env=env, capture_output=True,
                            text=True, timeout=GENEROUS)
    assert json.loads(second.stdout)["aggregate"]["reports"] == 1, second.stdout
    requests = collector.requests()
    assert sum(1 for s, _ in requests if s == "metrics") == 2  # stored twice
    counted, drops = report(requests, tmp_path)
    assert sum(counted.values()) == 50 and drops == {}


def test_a_killed_sender_leaves_no_lock_behind(tmp_path, collector):
    """The spool lock is the operating system's: a sender SIGKILLed while holding it never blocks the next one
    (there is no stale lock to take over, so never two senders on one file)."""
    from usagetrace._internal import paths

    home = tmp_path / "home-lock"
    template = _spool_template(tmp_path, collector, 3)
    _plant_spool(home, template, "lock-test")
    env = _trial_env(home, collector, 5.0)
    collector.late(2.0)

    def hold():
        from usagetrace._internal import spool

        spool.deliver()

    pid = _in_child(env, hold)
    lock = home / "cache" / "spool" / ".lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not collector.requests():
        time.sleep(0.01)
    with pytest.raises(paths.LockTimeout):
        with paths.locked(str(lock), timeout=0.0):
            pass
    assert _finish(pid, 0.0) == "killed"
    collector.late(0)
    with paths.locked(str(lock), timeout=0.0):
        pass
    assert _finish(_in_child(env, _deliver), None) == "finished"
    counted, _ = report(collector.requests(), tmp_path)
    assert counted == {"lock-test": 3}
    shutil.rmtree(home)
