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
