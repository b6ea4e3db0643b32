"""instrument(): what is wrapped, entry-point semantics, idempotence and reversal."""

from __future__ import annotations

import sys
import warnings

import pytest

import usagetrace
from usagetrace._internal import instrumentation
from usagetrace.testing import capture

SOURCE = {
    "__init__.py": '''
        import os.path
        from os.path import join            # not defined here: never wrapped
        from ._impl import helper, outer
        from .shapes import Square

        __all__ = ["outer", "helper", "Square", "explicit"]

        def explicit():
            return "x"

        def not_exported():                  # public name, but __all__ decides
            return "hidden"

        import usagetrace
        HANDLE = usagetrace.instrument()     # no name: the caller's package
    ''',
    "_impl.py": '''
        def helper(x):
            return x + 1

        def outer(n):
            # calls into the package itself: not separate usages
            return sum(helper(i) for i in range(n))

        def deep_fail():
            raise ValueError("contains /home/alice/secret.txt and alice@example.com")

        def calls_deep_fail():
            return deep_fail()
    ''',
    "shapes.py": '''
        class Square:
            def __init__(self, side):
                self.side = side

            def area(self):
                return self.side ** 2

            def _private(self):
                return 0
    ''',
    "later.py": '''
        from . import _impl

        def lazy(x):
            return _impl.helper(x) * 2

        def boom():
            return _impl.calls_deep_fail()
    ''',
}


@pytest.fixture
def ipkg(packages, monkeypatch):
    monkeypatch.setenv("IPKG_TELEMETRY", "1")
    return packages.load("ipkg", SOURCE)


def test_caller_package_is_the_default(ipkg):
    """instrument() with no name instruments the package that called it."""
    assert ipkg.HANDLE.package == "ipkg"
    assert ipkg.HANDLE.instrumented


def test_all_is_respected_and_foreign_names_are_not_wrapped(ipkg):
    """__all__ decides what is public, and functions defined elsewhere are left alone."""
    names = ipkg.HANDLE.wrapped_names
    assert "ipkg.explicit" in names and "ipkg.outer" in names and "ipkg.Square" in names
    assert "ipkg.not_exported" not in names
    import os.path

    assert ipkg.join is os.path.join
    assert "ipkg.Square._private" not in names


def test_inner_calls_are_not_usages(ipkg):
    """Calls the package makes into itself during a usage are not counted as usages."""
    with capture("ipkg") as cap:
        assert ipkg.outer(4) == 10
        assert ipkg.helper(1) == 2
    assert cap.calls("ipkg.outer") == 1
    assert cap.calls("ipkg.helper") == 1  # only the direct call


def test_later_submodule_is_instrumented_on_import(ipkg):
    """A submodule imported after instrument() is wrapped by the post-import hook."""
    assert "ipkg.later" not in sys.modules
    import ipkg.later

    assert "ipkg.later.lazy" in ipkg.HANDLE.wrapped_names
    with capture("ipkg") as cap:
        assert ipkg.later.lazy(1) == 4
    assert cap.calls("ipkg.later.lazy") == 1
    assert cap.calls("ipkg.helper") == 0


def test_exception_recorded_once_with_sanitized_in_package_stack(ipkg):
    """An exception is recorded once, at the outermost package frame, with type and in-package frames only."""
    import ipkg.later

    with capture("ipkg") as cap:
        with pytest.raises(ValueError):
            ipkg.later.boom()
    assert cap.calls("ipkg.later.boom", "error") == 1
    assert sum(p["value"] for p in cap.points("usagetrace.errors")) == 1
    [span] = cap.spans()
    assert span["status"] == 2
    [event] = span["events"]
    stack = event["attributes"]["exception.stacktrace"].splitlines()
    assert [line.rsplit(":", 1)[0] for line in stack] == [
        "ipkg.later:boom",
        "ipkg._impl:calls_deep_fail",
        "ipkg._impl:deep_fail",
    ]
    assert all(line.rsplit(":", 1)[1].isdigit() for line in stack)
    raw = cap.raw_bytes()
    assert b"alice" not in raw and b"/home" not in raw and b"secret" not in raw


def test_counts_are_exact_while_spans_are_rate_limited(ipkg):
    """10,000 calls give an exact count and at most span_budget spans."""
    with capture("ipkg") as cap:
        for i in range(10_000):
            ipkg.helper(i)
    assert cap.calls("ipkg.helper", "ok") == 10_000
    assert 1 <= len(cap.spans("ipkg.helper")) <= cap.handle.recorder.span_budget


def test_instrument_twice_warns_and_does_not_double_wrap(ipkg):
    """A second instrument() call warns and returns the same handle, wrapping nothing twice."""
    before = ipkg.helper
    with pytest.warns(RuntimeWarning, match="already called"):
        again = usagetrace.instrument("ipkg")
    assert again is ipkg.HANDLE
    assert ipkg.helper is before
    with capture("ipkg") as cap:
        ipkg.helper(1)
    assert cap.calls("ipkg.helper") == 1


def test_uninstrument_restores_original_objects(ipkg):
    """uninstrument() puts back the exact original objects, in every module and class."""
    from usagetrace._internal.wrappers import original_of

    originals = {
        "helper": original_of(ipkg.helper),
        "area": original_of(ipkg.Square.__dict__["area"]),
        "init": original_of(ipkg.Square.__dict__["__init__"]),
    }
    assert None not in originals.values()
    ipkg.HANDLE.uninstrument()
    assert ipkg.helper is originals["helper"]
    assert sys.modules["ipkg._impl"].helper is originals["helper"]
    assert ipkg.Square.__dict__["area"] is originals["area"]
    assert ipkg.Square.__dict__["__init__"] is originals["init"]
    assert instrumentation.get("ipkg") is None
    ipkg.HANDLE.uninstrument()  # idempotent


def test_include_and_exclude_globs(packages, monkeypatch):
    """include/exclude glob patterns select which qualified names are wrapped."""
    monkeypatch.setenv("GLOBPKG_TELEMETRY", "1")
    mod = packages.load(
        "globpkg",
        {
            "__init__.py": '''
                def read_csv(): pass
                def read_json(): pass
                def write_csv(): pass
                import usagetrace
                H = usagetrace.instrument(__name__, include=["globpkg.read_*"], exclude=["*json"])
            '''
        },
    )
    assert mod.H.wrapped_names == ["globpkg.read_csv"]


def test_bad_arguments_warn_and_fall_back_safely(packages, monkeypatch):
    """An unknown consent policy warns and behaves as opt-in; a missing package name warns and stays off."""
    with pytest.warns(RuntimeWarning, match="not one of"):
        handle = usagetrace.instrument("nosuchpkg_xyz", consent="always")
    assert handle.policy == "opt-in"
    assert not handle.enabled
    handle.uninstrument()
    with pytest.warns(RuntimeWarning, match="cannot tell which package"):
        handle = usagetrace.instrument(12345)
    assert not handle.enabled


def test_version_defaults_to_the_package_version(ipkg, packages, monkeypatch):
    """service.version defaults to the package's __version__, else "unknown"."""
    assert ipkg.HANDLE.version == "unknown"  # a throwaway package has neither
    monkeypatch.setenv("VERPKG_TELEMETRY", "1")
    mod = packages.load("verpkg", {"__init__.py": "__version__ = '9.8.7'\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    assert mod.H.version == "9.8.7"
    monkeypatch.setenv("VERPKG2_TELEMETRY", "1")
    mod2 = packages.load("verpkg2", {"__init__.py": "import usagetrace\nH = usagetrace.instrument(__name__, version='2.0')\n"})
    assert mod2.H.version == "2.0"


def test_disabled_at_instrument_time_wraps_nothing(packages, monkeypatch):
    """With consent off when instrument() runs, nothing is wrapped at all."""
    monkeypatch.setenv("OFFPKG_TELEMETRY", "0")
    mod = packages.load("offpkg", {"__init__.py": "def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    assert not mod.H.instrumented
    assert mod.H.wrapped_names == []
    assert type(mod.f).__name__ == "function"
    assert mod.H.consent.source == "env:OFFPKG_TELEMETRY"


def test_handle_reports_consent_state(ipkg):
    """The handle exposes the consent decision and which source made it."""
    assert ipkg.HANDLE.enabled
    assert ipkg.HANDLE.consent.state == "granted"
    assert ipkg.HANDLE.consent.source == "env:IPKG_TELEMETRY"
    assert "granted" in repr(ipkg.HANDLE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ipkg.HANDLE.flush(5)


def test_instrument_before_import_wraps_when_imported(packages):
    """instrument("pkg") before pkg is imported registers a post-import hook: the API is wrapped on import."""
    import sys

    from usagetrace.testing import capture

    packages.write("late_import_pkg", {"__init__.py": "def f(x):\n    return x + 1\n"})
    assert "late_import_pkg" not in sys.modules
    with capture("late_import_pkg") as cap:
        assert cap.handle.wrapped_names == []
        import late_import_pkg

        assert cap.handle.wrapped_names == ["late_import_pkg.f"]
        assert late_import_pkg.f(1) == 2
    assert cap.calls("late_import_pkg.f") == 1


TOP_SOURCE = {
    "__init__.py": '''
        import usagetrace
        HANDLE = usagetrace.instrument(__name__)     # first line: lint-clean, no E402
        WRAPPED_DURING_IMPORT = list(HANDLE.wrapped_names)

        from ._impl import helper, outer
        from .shapes import Square

        __all__ = ["outer", "helper", "Square", "explicit"]

        def explicit():
            return "x"
    ''',
    "_impl.py": SOURCE["_impl.py"],
    "shapes.py": SOURCE["shapes.py"],
    "later.py": SOURCE["later.py"],
}


@pytest.mark.parametrize("placement", ["top", "end"])
def test_instrument_at_the_top_or_end_of_init_wraps_once_the_import_finished(packages, monkeypatch, placement):
    """Both placements wrap the same public API, once the package's import has finished (not before)."""
    name = f"place_{placement}_pkg"
    monkeypatch.setenv(f"PLACE_{placement.upper()}_PKG_TELEMETRY", "1")
    mod = packages.load(name, TOP_SOURCE if placement == "top" else SOURCE)
    handle = mod.HANDLE
    assert handle.enabled
    assert sorted(handle.wrapped_names) == sorted(
        f"{name}.{n}" for n in ("explicit", "outer", "helper", "Square", "Square.area")
    )
    if placement == "top":
        assert mod.WRAPPED_DURING_IMPORT == []  # nothing defined yet when it ran: it waited
    assert type(mod.__spec__).__name__ == "ModuleSpec" and type(mod.__spec__) is type(sys.modules["os"].__spec__)
    with capture(name) as cap:
        assert mod.outer(3) == 6
        assert mod.explicit() == "x"
        import importlib

        later = importlib.import_module(f"{name}.later")
        assert later.lazy(1) == 4
    assert cap.calls(f"{name}.outer") == 1 and cap.calls(f"{name}.helper") == 0
    assert cap.calls(f"{name}.later.lazy") == 1


def test_instrument_at_the_top_of_a_package_whose_import_fails_wraps_nothing(packages, monkeypatch):
    """An import that raises after instrument() leaves no wrapped module behind and the error unchanged."""
    monkeypatch.setenv("FAILING_TOP_PKG_TELEMETRY", "1")
    source = {"__init__.py": "import usagetrace\nH = usagetrace.instrument(__name__)\ndef f():\n    return 1\n"
                             "raise ImportError('broken on purpose')\n"}
    with pytest.raises(ImportError, match="broken on purpose"):
        packages.load("failing_top_pkg", source)
    handle = instrumentation.get("failing_top_pkg")
    assert handle is not None and handle.wrapped_names == []


def test_public_instances_count_on_every_python(packages, monkeypatch):
    """A module-level instance of a class from a private module: its public methods and __call__ are the API.

    Wrapped on the class where that changes nothing (every Python); an instance of a foreign class with no
    package code behind it is listed, not silently ignored.
    """
    import types

    from usagetrace.testing import capture

    monkeypatch.setenv("INSTPKG_TELEMETRY", "1")
    mod = packages.load("instpkg", {
        "__init__.py": '''
            from ._impl import _Client
            import functools

            client = _Client()
            double = functools.partial(lambda x, y: x * y, 2)   # not the package's code
            LIMIT = 10
        ''',
        "_impl.py": '''
            class _Client:
                def get(self, key):
                    return key.upper()

                def __call__(self, x):
                    return x + 1

                def _private(self):
                    return 0
        ''',
    })
    cls = type(mod.client)
    with capture("instpkg") as cap:
        assert {"instpkg.client.get", "instpkg.client"} <= set(cap.handle.wrapped_names)
        assert "instpkg.client._private" not in cap.handle.wrapped_names
        assert type(mod.client) is cls and type(cls.__dict__["get"]) is types.FunctionType
        assert mod.client.get("a") == "A" and mod.client(1) == 2 and mod.double(3) == 6
        assert "instpkg.LIMIT" not in cap.handle.skipped
    assert cap.calls("instpkg.client.get") == 1 and cap.calls("instpkg.client") == 1
