"""The public testing helpers a maintainer uses in their own test suite."""

from __future__ import annotations

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
