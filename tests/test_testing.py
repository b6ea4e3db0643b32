"""The public testing helpers a maintainer uses in their own test suite."""

from __future__ import annotations

import os

from usagetrace.testing import capture, disabled


def test_capture_then_disabled(packages, monkeypatch):
    """capture() records a package's usage; disabled() forces it off so nothing is recorded or exported."""
    monkeypatch.setenv("TPKG_TELEMETRY", "1")
    mod = packages.load("tpkg", {"__init__.py": "def f(x): return x * 2\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    with capture("tpkg") as cap:
        assert mod.f(2) == 4
    assert cap.calls("tpkg.f") == 1
    with disabled("tpkg") as off:
        assert mod.f(3) == 6
    assert off is not None and off.requests == [] and off.calls("tpkg.f") == 0
    assert mod.H.enabled  # back to the real decision afterwards


def test_capture_instruments_a_package_that_is_off(packages):
    """capture() works even when consent is off: it instruments the package for the block and restores it."""
    mod = packages.load("tpkg2", {"__init__.py": "def g(): return 1\n"})
    with capture("tpkg2") as cap:
        assert mod.g() == 1
    assert cap.calls("tpkg2.g") == 1
    assert type(mod.g).__name__ == "function"  # originals restored


def test_disabled_on_an_uninstrumented_package_yields_none(packages):
    """disabled() on a package that usagetrace never wrapped yields None."""
    packages.load("tpkg3", {"__init__.py": "def h(): return 1\n"})
    with disabled("tpkg3") as off:
        assert off is None


def test_capture_writes_nothing_into_the_real_home(packages, monkeypatch, real_home):
    """Without USAGETRACE_HOME, capture() keeps ids and state.json in a throwaway directory, then removes it."""
    home = real_home
    mod = packages.load("tpkg4", {"__init__.py": "def f(): return 1\nimport usagetrace\nusagetrace.instrument(__name__)\n"})
    seen = []
    with capture("tpkg4") as cap:
        seen.append(os.environ["USAGETRACE_HOME"])
        assert mod.f() == 1
    assert cap.calls("tpkg4.f") == 1
    assert cap.spans("tpkg4.f")[0]["resource"]["usagetrace.install.id"]  # an id was made, just not at home
    assert list(home.rglob("*")) == []
    assert "USAGETRACE_HOME" not in os.environ and not os.path.exists(seen[0])


def test_capture_keeps_a_chosen_home(packages, monkeypatch, tmp_path):
    """A USAGETRACE_HOME that is set (by you or the pytest plugin) is used as it is."""
    chosen = tmp_path / "chosen"
    monkeypatch.setenv("USAGETRACE_HOME", str(chosen))
    mod = packages.load("tpkg5", {"__init__.py": "def f(): return 1\n"})
    with capture("tpkg5") as cap:
        assert os.environ["USAGETRACE_HOME"] == str(chosen)
        mod.f()
    assert cap.calls("tpkg5.f") == 1 and os.environ["USAGETRACE_HOME"] == str(chosen)


def test_capture_counts_only_its_block(packages, monkeypatch):
    """Calls recorded before the block (an instrumented package, telemetry on) are not the block's."""
    monkeypatch.setenv("TPKG6_TELEMETRY", "1")
    mod = packages.load("tpkg6", {"__init__.py": "def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    from usagetrace._internal import delivery, transport

    service = delivery.get()
    before, previous = transport.MemoryTransport(), service.override
    service.override = before
    try:
        assert mod.H.enabled
        mod.f()
        mod.f()
        with capture("tpkg6") as cap:
            mod.f()
        assert cap.calls("tpkg6.f") == 1
        mod.H.flush(5.0)
    finally:
        service.override = previous
    earlier = [p for s, p in before.requests if s == "metrics"]
    assert earlier  # the two earlier calls went where they were going, not lost


def test_public_modules_expose_exactly_their_all():
    """dir() of the public modules lists their __all__ and nothing they merely import."""
    import usagetrace
    import usagetrace.testing

    for module in (usagetrace, usagetrace.testing):
        assert dir(module) == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
        for leaked in ("annotations", "Any", "gzip", "threading", "contextlib", "_internal"):
            assert leaked not in dir(module)


def test_queries_count_each_batch_once_as_storage_does():
    """A request resent after a lost answer carries its batch id again: calls, points and spans count it once."""
    from usagetrace.testing import _Decoded

    def metrics(batch, value):
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "pkg"}}]}
        if batch is not None:
            resource["attributes"].append({"key": "usagetrace.batch.id", "value": {"stringValue": batch}})
        point = {"asInt": str(value), "attributes": [
            {"key": "code.function.name", "value": {"stringValue": "pkg.f"}},
            {"key": "usagetrace.outcome", "value": {"stringValue": "ok"}}]}
        return ("metrics", {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"scope": {"name": "s"},
                "metrics": [{"name": "usagetrace.calls", "sum": {"dataPoints": [point]}}]}]}]})

    class Received(_Decoded):
        requests = [metrics("a" * 32, 4), metrics("a" * 32, 4), metrics("b" * 32, 6), metrics(None, 1),
                    metrics(None, 1)]

    rx = Received()
    assert len(rx.requests) == 5 and len(rx.unique_requests()) == 4
    assert rx.calls("pkg.f", "ok") == 4 + 6 + 1 + 1  # the resent batch once; requests without an id each time
