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


PARAMS_PKG = '''
_UNSET = object()


def process(text, sep=None, *, strip=False, limit=_UNSET, **options):
    return text


def greet(name, punctuation="!"):
    return name + punctuation


def spread(first, *rest):
    return rest


def fails(value, mode=None):
    raise ValueError(value)


class Reader:
    def read(self, path, encoding=None):
        return path

    @classmethod
    def open(cls, path, mode=None):
        return cls()

    @staticmethod
    def helper(a, b=None):
        return a


import usagetrace
H = usagetrace.instrument(__name__)
'''


def _call_attrs(cap, name):
    return [{k: v for k, v in sp["attributes"].items()
             if k in ("usagetrace.args.count", "usagetrace.params.set", "usagetrace.kwargs.extra")}
            for sp in cap.spans(name)]


def test_params_set_names_declared_parameters_given_by_position_or_keyword(packages, monkeypatch):
    """`usagetrace.params.set`: declared parameters off their default, by position or keyword; args.count as documented."""
    monkeypatch.setenv("PPKG_TELEMETRY", "1")
    mod = packages.load("ppkg", {"__init__.py": PARAMS_PKG})
    with capture("ppkg") as cap:
        cap.handle.recorder.span_budget = 100
        cap.handle.recorder.reset_budgets()
        mod.process("x", ";")
        mod.process("x", sep=";")
        mod.process("x")
        mod.process(text="x", strip=True, limit=3)
        mod.process("x", None, strip=False)  # the default objects themselves: nothing set
        mod.greet("x", punctuation="?")
        mod.greet(name="y")
        mod.spread(1, 2, 3)
        mod.Reader().read("p", encoding="utf-8")
        mod.Reader.open("p")
        mod.Reader.helper(1, b=2)
        try:
            mod.fails("v", mode="strict")
        except ValueError:
            pass
    def want(count, names, extra=0):
        return {"usagetrace.args.count": count, "usagetrace.params.set": names, "usagetrace.kwargs.extra": extra}
    assert _call_attrs(cap, "ppkg.process") == [want(2, ["sep"]), want(2, ["sep"]), want(1, []),
                                                want(1, ["limit", "strip"]), want(1, [])]
    assert _call_attrs(cap, "ppkg.greet") == [want(2, ["punctuation"]), want(1, [])]
    assert _call_attrs(cap, "ppkg.spread") == [want(3, [])]
    assert _call_attrs(cap, "ppkg.Reader.read") == [want(2, ["encoding"])]  # self is not an argument
    assert _call_attrs(cap, "ppkg.Reader.open") == [want(1, [])]  # nor is cls
    assert _call_attrs(cap, "ppkg.Reader.helper") == [want(2, ["b"])]
    assert _call_attrs(cap, "ppkg.fails") == [want(2, ["mode"])]
    assert not any("usagetrace.kwargs.names" in sp["attributes"] for sp in cap.all_spans())


def test_kwargs_keys_are_counted_never_sent(packages, monkeypatch):
    """Keys passed through **options are the caller's data: only their number leaves."""
    monkeypatch.setenv("PPKG_TELEMETRY", "1")
    mod = packages.load("ppkg", {"__init__.py": PARAMS_PKG})
    keys = {"alice@example.com": 1, "AKIAIOSFODNN7EXAMPLE": 2, "/home/alice/taxes.pdf": 3, "alice_smith": 4}
    with capture("ppkg") as cap:
        mod.process("x", sep="|", **keys)
    assert _call_attrs(cap, "ppkg.process") == [
        {"usagetrace.args.count": 2, "usagetrace.params.set": ["sep"], "usagetrace.kwargs.extra": 4}]
    raw = cap.raw_bytes()
    for key in keys:
        assert key.encode() not in raw, key


def test_error_type_names_only_package_builtin_or_stdlib_classes(packages, monkeypatch):
    """A host's exception class (raised through a callback) and a dynamically named one leave as their
    nearest package/builtin/stdlib base, marked +subclass; the package's own classes keep their names."""
    monkeypatch.setenv("EPKG_TELEMETRY", "1")
    mod = packages.load("epkg", {"__init__.py": '''
import json

class PackageError(Exception):
    pass

def call(callback):
    return callback()

def own():
    raise PackageError("x")

def stdlib():
    json.loads("{")

def dynamic():
    raise type("alice@example.com", (KeyError,), {})("x")

def sub_of_own():
    class Local(PackageError):
        pass
    raise Local("x")

import usagetrace
H = usagetrace.instrument(__name__)
'''})

    class AcmeSecretBillingError(ValueError):
        pass

    AcmeSecretBillingError.__module__ = "acme_internal_billing"

    def acme_callback_7f3():
        raise AcmeSecretBillingError("customer 42")

    class Disguised(LookupError):  # claims to be a stdlib class
        pass

    Disguised.__module__, Disguised.__qualname__ = "json", "JSONDecodeError"

    def disguised():
        raise Disguised()

    with capture("epkg") as cap:
        for fn in (lambda: mod.call(acme_callback_7f3), mod.own, mod.stdlib, mod.dynamic, mod.sub_of_own,
                   lambda: mod.call(disguised)):
            try:
                fn()
            except Exception:
                pass
    errors = {(p["attributes"]["code.function.name"], p["attributes"]["error.type"]): p["value"]
              for p in cap.points("usagetrace.errors")}
    assert errors == {
        ("epkg.call", "ValueError+subclass"): 1,
        ("epkg.call", "LookupError+subclass"): 1,
        ("epkg.own", "epkg.PackageError"): 1,
        ("epkg.stdlib", "json.decoder.JSONDecodeError"): 1,
        ("epkg.dynamic", "KeyError+subclass"): 1,
        ("epkg.sub_of_own", "epkg.PackageError+subclass"): 1,
    }
    events = [e["attributes"]["exception.type"] for sp in cap.all_spans() for e in sp["events"]]
    assert sorted(events) == sorted(t for _, t in errors)
    raw = cap.raw_bytes()
    for needle in (b"acme", b"Acme", b"alice", b"customer", b"Disguised"):
        assert needle not in raw, needle
