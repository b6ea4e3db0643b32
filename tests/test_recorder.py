"""Collection bounds: queue limits, drop counting, sampling windows."""

from __future__ import annotations

from usagetrace._internal.recorder import Recorder, Sample, count_value
from usagetrace.testing import capture


def test_queue_bound_drops_are_counted():
    """Samples beyond max_queue are dropped and counted, never silently lost."""
    rec = Recorder("qpkg", max_queue=3)
    for i in range(10):
        rec.queue(Sample("qpkg.f", i, i, {}, None))
    assert len(rec.samples) == 3
    assert rec.counts()[("dropped", "queue_full")] == 7


def test_sampling_window_resets_budgets():
    """Each function gets span_budget spans per window; reset_budgets starts a new window."""
    rec = Recorder("wpkg2", span_budget=2)
    stats = rec.function("wpkg2.f", "wpkg2", "function")
    for _ in range(5):
        if stats.budget > 0:
            rec.sampled(stats, (), {}, 0)
    assert len(rec.samples) == 2
    rec.reset_budgets()
    assert stats.budget == 2


def test_count_value_reads_without_consuming():
    """Reading an itertools.count does not advance it."""
    import itertools

    c = itertools.count()
    next(c), next(c)
    assert count_value(c) == 2 and count_value(c) == 2


def test_dropped_counts_are_exported_as_a_metric(packages, monkeypatch):
    """Drops reach the backend as the usagetrace.dropped metric with a reason."""
    monkeypatch.setenv("DPKG_TELEMETRY", "1")
    mod = packages.load(
        "dpkg",
        {"__init__.py": "def f(x):\n    raise KeyError(x)\nimport usagetrace\nH = usagetrace.instrument(__name__, max_queue=2)\n"},
    )
    with capture("dpkg") as cap:
        for i in range(6):
            try:
                mod.f(i)
            except KeyError:
                pass
    assert cap.calls("dpkg.f", "error") == 6
    assert len(cap.spans("dpkg.f")) == 2
    dropped = cap.points("usagetrace.dropped")
    assert [(p["attributes"]["usagetrace.drop.reason"], p["value"]) for p in dropped] == [("queue_full", 4)]


OUTCOME_PKG = '''
import sys

def leave(code):
    sys.exit(code)

def interrupt():
    raise KeyboardInterrupt

def items(n):
    for i in range(n):
        yield i

async def cancelled():
    import asyncio
    raise asyncio.CancelledError

import usagetrace
H = usagetrace.instrument(__name__)
'''


def test_outcomes_success_exit_interruption_and_failure(packages, monkeypatch):
    """SystemExit(0/None) is success, Ctrl-C, an early-closed generator and a cancelled task are interruptions, not errors."""
    import asyncio

    import pytest

    monkeypatch.setenv("OPKG_TELEMETRY", "1")
    mod = packages.load("opkg", {"__init__.py": OUTCOME_PKG})
    with capture("opkg") as cap:
        for code in (0, None, 2, "message"):
            with pytest.raises(SystemExit):
                mod.leave(code)
        with pytest.raises(KeyboardInterrupt):
            mod.interrupt()
        gen = mod.items(10)
        assert next(gen) == 0
        gen.close()  # GeneratorExit: the consumer stopped early
        assert list(mod.items(3)) == [0, 1, 2]
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(mod.cancelled())
    assert cap.calls("opkg.leave", "ok") == 2  # exit 0 and exit None
    assert cap.calls("opkg.leave", "error") == 2  # exit 2 and exit "message" (status 1)
    assert cap.calls("opkg.interrupt", "interrupted") == 1 and cap.calls("opkg.interrupt", "error") == 0
    assert cap.calls("opkg.items", "error") == 0 and cap.calls("opkg.items") == 2
    assert cap.calls("opkg.cancelled", "interrupted") == 1 and cap.calls("opkg.cancelled", "error") == 0
    errors = {p["attributes"].get("error.type") for p in cap.points("usagetrace.errors")}
    assert errors == {"SystemExit"}
