"""Hosts that fake their clocks (freezegun, time-machine): counts still arrive, stamped truthfully, and nothing hangs.

Found by the corpus: cached-property's own suite freezes time in the year 9999 (freezegun); every
export made while frozen carried timestamps OTLP cannot encode, and the package's counts were never
sent. A frozen monotonic clock would also turn usagetrace's bounded waits into endless ones.
"""

from __future__ import annotations

import json
import time

from usagetrace.testing import OTLPReceiver

from .conftest import clean_env, run_py

MAX_NS = 2**64 - 1

CALLS_WHILE_FROZEN = """
import json, sys, time
{before}
import tinystats
from usagetrace._internal import instrumentation
h = instrumentation.get("tinystats")
{freeze}
for i in range(7):
    tinystats.mean([i, 1])
tinystats.median([1, 2, 3])
ok = h.flush(10)  # while the host's clock is frozen or far ahead: bounded, and it delivers
print(json.dumps({{"flushed": ok, "host_year": time.gmtime().tm_year}}))
"""


def _run(home, before: str, freeze: str):
    with OTLPReceiver() as rx:
        started = time.time_ns()
        proc = run_py(CALLS_WHILE_FROZEN.format(before=before, freeze=freeze),
                      clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint), timeout=60)
        ended = time.time_ns()
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        return json.loads(proc.stdout), rx, started, ended


def _stamps(rx) -> list:
    out = []
    for point in rx.points("usagetrace.calls"):
        out += [point["start"], point["time"]]
    for span in rx.all_spans():
        out += [span["start"], span["end"]]
    return out


def test_freezegun_after_import_year_9999(home):
    """Time frozen in 9999 after the package was imported: exact counts, real timestamps."""
    result, rx, started, ended = _run(home, "", "import freezegun\nfreezegun.freeze_time('9999-12-31 23:59:59').start()")
    assert result == {"flushed": True, "host_year": 9999}  # the host really sees 9999
    assert rx.calls("tinystats.mean") == 7 and rx.calls("tinystats.median") == 1
    stamps = _stamps(rx)
    assert stamps and all(started - 10**9 <= t <= ended + 10**9 for t in stamps)  # usagetrace's clock is the real one


def test_freezegun_started_before_usagetrace_is_imported(home):
    """A clock already frozen (in the past) when usagetrace is imported: still the real clock, nothing hangs."""
    result, rx, started, ended = _run(home, "import freezegun\nfreezegun.freeze_time('2001-02-03').start()", "")
    assert result == {"flushed": True, "host_year": 2001}
    assert rx.calls("tinystats.mean") == 7 and rx.calls("tinystats.median") == 1
    stamps = _stamps(rx)
    assert stamps and all(started - 10**9 <= t <= ended + 10**9 for t in stamps)


def test_time_machine_travel_to_year_9999(home):
    """time-machine patches the clock in C; usagetrace reads the real one through its escape hatch."""
    freeze = "import datetime, time_machine\ntime_machine.travel(datetime.datetime(9999, 12, 31, 23, 0), tick=False).start()"
    result, rx, started, ended = _run(home, "", freeze)
    assert result == {"flushed": True, "host_year": 9999}
    assert rx.calls("tinystats.mean") == 7 and rx.calls("tinystats.median") == 1
    stamps = _stamps(rx)
    assert stamps and all(0 <= t <= MAX_NS and started - 10**9 <= t <= ended + 10**9 for t in stamps)


# Found by the corpus: time-machine returns a ticking travel's exact destination only on its first read of
# the clock (later reads add the real time elapsed since). A sampled call that read the wall clock first made
# the host's own datetime.now() inside travel("1980-03-25 16:00") say 16:00:00.000181.
FIRST_READ_AFTER_SAMPLED_CALLS = """
import datetime, json
{fake}
import tinystats
with {travel}:
    for i in range(5):
        tinystats.mean([i, 1])  # the first calls of a run are sampled: each reads usagetrace's clocks
    first = datetime.datetime.now().isoformat()
from usagetrace._internal import instrumentation
print(json.dumps({{"first": first, "flushed": instrumentation.get("tinystats").flush(10)}}))
"""


def _first_read(home, fake: str, travel: str):
    with OTLPReceiver() as rx:
        started = time.time_ns()
        proc = run_py(FIRST_READ_AFTER_SAMPLED_CALLS.format(fake=fake, travel=travel),
                      clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint), timeout=60)
        ended = time.time_ns()
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["flushed"] and rx.calls("tinystats.mean") == 5
        spans = rx.all_spans()
        assert spans  # the calls really were sampled, so usagetrace read its clocks during the travel
        assert all(started - 10**9 <= t <= ended + 10**9 for t in _stamps(rx))  # and stamped them truthfully
        return result["first"]


def test_time_machine_ticking_travel_first_read_is_exact(home):
    """Sampled calls inside a ticking time-machine travel leave the host's first read at the exact destination."""
    assert _first_read(home, "import time_machine", 'time_machine.travel("1980-03-25 16:00")') == "1980-03-25T16:00:00"


def test_freezegun_auto_tick_is_not_advanced_by_usagetrace(home):
    """freezegun's auto_tick advances its clock by every read: none of those reads is usagetrace's."""
    travel = 'freezegun.freeze_time("1980-03-25 16:00", auto_tick_seconds=1)'
    assert _first_read(home, "import freezegun", travel) == "1980-03-25T16:00:00"
