"""The pytest plugin: a maintainer's own suite, run with the package instrumented, catches behaviour changes."""

from __future__ import annotations

import os
import sys
import textwrap

pytest_plugins = ["pytester"]

SAMPLE = {
    "samplepkg/__init__.py": '''
        import warnings

        def area(w, h):
            return w * h

        def old_area(w, h):
            warnings.warn("use area()", DeprecationWarning, stacklevel=2)
            return area(w, h)

        def shapes():
            yield "square"
            yield "circle"

        import usagetrace
        usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9")
    ''',
    "tests/test_sample.py": '''
        import types
        import warnings

        import samplepkg

        def test_area():
            assert samplepkg.area(2, 3) == 6
            assert list(samplepkg.shapes()) == ["square", "circle"]

        def test_deprecation_points_at_the_caller():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                samplepkg.old_area(1, 1)
            assert caught[0].filename == __file__

        def test_exact_type():
            assert type(samplepkg.area) is types.FunctionType

        def test_code_internals():
            # Host code reading a function's code-object internals: what a trampoline cannot hide.
            assert samplepkg.area.__closure__ is None
    ''',
}


def _setup(pytester, monkeypatch):
    for rel, source in SAMPLE.items():
        path = pytester.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    pytester.syspathinsert(pytester.path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), src, os.environ.get("PYTHONPATH", "")]))


def test_plain_run_passes_and_instrumented_run_catches_a_change(pytester, monkeypatch):
    """Plain: all pass. With the plugin: the host's check of code internals fails (caught), the rest is identical."""
    _setup(pytester, monkeypatch)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "tests")
    plain.assert_outcomes(passed=4)
    instrumented = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "usagetrace.pytest_plugin",
                                                 "--usagetrace=samplepkg", "tests")
    instrumented.assert_outcomes(passed=3, failed=1)
    text = instrumented.stdout.str()
    assert "FAILED tests/test_sample.py::test_code_internals" in text
    if sys.version_info >= (3, 12):  # counted without a wrapper (sys.monitoring); its area() call is inner
        assert ("samplepkg: 2 callables wrapped, 1 monitored (counted without a wrapper), 0 skipped "
                "(not counted); 3 usages recorded") in text
        assert "monitored: samplepkg.old_area: looks 1 frame(s) up the stack (stacklevel)" in text
    else:  # left unwrapped; the area() call it makes is the usage counted
        assert ("samplepkg: 2 callables wrapped, 0 monitored (counted without a wrapper), 1 skipped "
                "(not counted); 3 usages recorded") in text
        assert "skipped: samplepkg.old_area: looks 1 frame(s) up the stack (stacklevel)" in text


def test_nothing_leaves_and_personal_files_are_untouched(pytester, monkeypatch, tmp_path):
    """The run writes no per-user file of the person's and sends nothing, even with an endpoint set."""
    from usagetrace.testing import OTLPReceiver

    _setup(pytester, monkeypatch)
    home = tmp_path / "real-home"
    monkeypatch.setenv("USAGETRACE_HOME", str(home))
    receiver = OTLPReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "usagetrace.pytest_plugin",
                                               "--usagetrace", "samplepkg", "tests", "-k", "not internals")
        result.assert_outcomes(passed=3, deselected=1)
    finally:
        receiver.stop()
    assert receiver.connections == 0
    assert not home.exists()
    assert sys.modules.get("samplepkg") is None  # the subprocess, not this process, imported it


CAPTURE_SUITE = {
    "mylib/__init__.py": '''
        import usagetrace
        usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9")

        def greet(name):
            return f"hello {name}"
    ''',
    # an earlier test uses the function; the README's capture example comes after it
    "tests/test_a_earlier.py": '''
        import mylib

        def test_greet_twice():
            assert mylib.greet("a") == "hello a" and mylib.greet("b") == "hello b"
    ''',
    "tests/test_b_capture.py": '''
        import mylib
        from usagetrace.testing import capture

        def test_usage_is_reported():
            with capture("mylib") as cap:
                mylib.greet("x")
            assert cap.calls("mylib.greet") == 1
            assert cap.spans("mylib.greet")[0]["attributes"]["usagetrace.args.count"] == 1
    ''',
}


def test_capture_counts_its_block_with_and_without_the_plugin_and_never_writes_home(pytester, monkeypatch, real_home):
    """The README's capture example passes under plain pytest and the recommended plugin run, in either order of
    tests, and neither run writes ids or state.json into the real home."""
    for rel, source in CAPTURE_SUITE.items():
        path = pytester.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), src, os.environ.get("PYTHONPATH", "")]))
    home = real_home
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "tests")
    plain.assert_outcomes(passed=2)
    plugin = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "usagetrace.pytest_plugin",
                                           "--usagetrace=mylib", "tests")
    plugin.assert_outcomes(passed=2)
    assert "mylib: 1 callables wrapped" in plugin.stdout.str()
    assert list(home.rglob("*")) == [], list(home.rglob("*"))
