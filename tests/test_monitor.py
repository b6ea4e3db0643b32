"""Counting without a wrapper (sys.monitoring, 3.12+): what a wrapper would change stays exactly as it is."""

from __future__ import annotations

import sys
import warnings

import pytest

from usagetrace.testing import capture

MONITORING = sys.version_info >= (3, 12)
needs_monitoring = pytest.mark.skipif(not MONITORING, reason="sys.monitoring is Python 3.12+")

SOURCE = {
    "__init__.py": '''
        import functools
        import sys
        import types
        import warnings

        from ._engine import Engine as _Engine, _Registry, _Counter

        _DEBUG = False

        def where():
            """Looks one frame up: a wrapper frame would be what it sees."""
            return sys._getframe(1).f_code.co_name

        def warns():
            warnings.warn("careful", UserWarning, stacklevel=2)
            return sys._getframe(0).f_code.co_name

        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        def fail(kind):
            if kind is None:
                return sys._getframe(1)
            raise kind("contains /home/alice/secret.txt")

        def items(n):
            if n < 0:
                sys._getframe(1)
            for i in range(n):
                yield i

        async def fetch(x):
            if x is None:
                sys._getframe(1)
            if x == "boom":
                raise LookupError(x)
            if x == "sleep":
                await _pause()
            return x

        @types.coroutine
        def _pause():
            for _ in range(1000):  # yields to the event loop (asyncio.sleep(0)), works without one too
                yield

        def run(callback):
            if callback is None:
                sys._getframe(1)
            return callback()

        def plain(x):
            """Safe to wrap: calls a monitored function (an inner call, not a usage)."""
            return where()

        def calls_plain():
            if _DEBUG:
                sys._getframe(1)
            return plain(1)

        engine = _Engine()         # a public instance of a class defined in a private module

        @functools.singledispatch
        def area(shape):
            raise TypeError(type(shape).__name__)

        @area.register
        def _(shape: int):
            return shape * shape

        ALIASES = {"area": area}   # held elsewhere: wrapping area would change `is`

        add = _Counter().add       # a bound method exported as a function
        class Shapes:
            @functools.singledispatchmethod
            def size(self, shape):
                raise TypeError(type(shape).__name__)

            @size.register
            def _(self, shape: str):
                return len(shape)

        registry = _Registry()     # a dispatch object of "another library" (its class is not the package's)
    ''',
    "_engine.py": '''
        import sys

        class Engine:
            def run(self, x):
                return sys._getframe(1).f_code.co_name, x      # frame reach: monitored

            def plain(self, x):
                return x + 1                                     # safe: wrapped on the class

            def __call__(self, x):
                if x is None:
                    sys._getframe(1)
                return x * 2

        class _Counter:
            total = 0

            def add(self, n):
                self.total += n
                return self.total

        class _Registry:
            def __init__(self):
                self.funcs = {}

            def __call__(self, x):
                return self.funcs[type(x)](x)

        def _double(x):
            return 2 * x

        _Registry.__module__ = "otherlib.dispatch"               # stands for a dispatch library's class
    ''',
}


@pytest.fixture
def mpkg(packages, monkeypatch):
    monkeypatch.setenv("MONPKG_TELEMETRY", "1")
    module = packages.load("monpkg", SOURCE)
    from monpkg import _engine

    module.registry.funcs[int] = _engine._double
    return module


def _tool():
    from usagetrace._internal import monitor

    return monitor.tool_id()


@needs_monitoring
def test_frames_warnings_identity_and_code_unchanged(mpkg):
    """A monitored function is the same object with the same code, and sees the caller it sees without us."""
    where, code = mpkg.where, mpkg.where.__code__
    with capture("monpkg") as cap:
        assert "monpkg.where" in cap.handle.monitored_names and "monpkg.warns" in cap.handle.monitored_names
        assert mpkg.where is where and where.__code__ is code and where.__closure__ is None

        def caller():
            return mpkg.where()

        assert caller() == "caller"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = sys._getframe().f_lineno + 1
            assert mpkg.warns() == "warns"
        assert caught[0].filename == __file__ and caught[0].lineno == line
        assert sys.monitoring.get_local_events(_tool(), code) != 0
    assert cap.calls("monpkg.where", "ok") == 1 and cap.calls("monpkg.warns", "ok") == 1


@needs_monitoring
def test_recursion_counted_once_per_outer_usage(mpkg):
    with capture("monpkg") as cap:
        assert "monpkg.fact" in cap.handle.monitored_names
        assert [mpkg.fact(n) for n in (1, 5, 10)] == [1, 120, 3628800]
    assert cap.calls("monpkg.fact") == 3 == cap.calls("monpkg.fact", "ok")


@needs_monitoring
def test_errors_attributed_with_type_and_interruptions(mpkg):
    """An exception leaving the outermost frame is the usage's outcome; the next call is a usage again."""
    with capture("monpkg") as cap:
        for kind in (ValueError, KeyError):
            with pytest.raises(kind):
                mpkg.fail(kind)
        with pytest.raises(KeyboardInterrupt):
            mpkg.fail(KeyboardInterrupt)
        assert mpkg.fail(None).f_code.co_name == "test_errors_attributed_with_type_and_interruptions"
        gen = mpkg.items(10)
        assert next(gen) == 0 and next(gen) == 1
        gen.close()  # the consumer stopped early: not an error
        assert list(mpkg.items(3)) == [0, 1, 2]
        abandoned = mpkg.items(5)
        next(abandoned)
        del abandoned  # closed by the collector (3.13: without any event)
        assert mpkg.where() == "test_errors_attributed_with_type_and_interruptions"  # no usage left open
        from usagetrace._internal import monitor

        assert not monitor._suspended  # nothing kept for generators between their runs
    assert cap.calls("monpkg.fail", "error") == 2
    assert cap.calls("monpkg.fail", "interrupted") == 1 and cap.calls("monpkg.fail", "ok") == 1
    assert cap.calls("monpkg.items", "ok") == 3 and cap.calls("monpkg.items", "error") == 0
    assert cap.calls("monpkg.where", "ok") == 1
    errors = {p["attributes"]["error.type"]: p["value"] for p in cap.points("usagetrace.errors")
              if p["attributes"]["code.function.name"] == "monpkg.fail"}
    assert errors == {"ValueError": 1, "KeyError": 1}
    spans = cap.spans("monpkg.fail")
    assert spans and all("usagetrace.args.count" not in s["attributes"] for s in spans)  # not seen: not said
    assert b"alice" not in cap.raw_bytes()


@needs_monitoring
def test_coroutine_outcome_when_it_ends(mpkg):
    import asyncio

    with capture("monpkg") as cap:
        assert "monpkg.fetch" in cap.handle.monitored_names

        async def main():
            assert await mpkg.fetch(1) == 1
            with pytest.raises(LookupError):
                await mpkg.fetch("boom")
            return await asyncio.gather(mpkg.fetch(2), mpkg.fetch(3))

        assert asyncio.run(main()) == [2, 3]

        async def cancelled():
            task = asyncio.ensure_future(mpkg.fetch("sleep"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled())
        never_finished = mpkg.fetch("sleep")
        never_finished.send(None)
        never_finished.close()
        from usagetrace._internal import monitor

        assert not monitor._suspended
    assert cap.calls("monpkg.fetch", "ok") == 3 and cap.calls("monpkg.fetch", "error") == 1
    assert cap.calls("monpkg.fetch", "interrupted") == 2


@needs_monitoring
def test_inner_calls_between_wrapped_and_monitored_are_not_usages(mpkg):
    with capture("monpkg") as cap:
        assert "monpkg.plain" in cap.handle.wrapped_names
        assert "monpkg.calls_plain" in cap.handle.monitored_names
        assert mpkg.plain(1) == "plain"  # wrapped -> monitored where(): one usage
        assert mpkg.calls_plain() == "plain"  # monitored -> wrapped -> monitored: one usage
    assert cap.calls("monpkg.plain") == 1 and cap.calls("monpkg.calls_plain") == 1
    assert cap.calls("monpkg.where") == 0


@needs_monitoring
def test_public_instances_and_dispatch_objects_count(mpkg):
    """Methods through a public instance of a private class, a callable instance, dispatch objects."""
    engine_cls = type(mpkg.engine)
    with capture("monpkg") as cap:
        handle = cap.handle
        assert "monpkg.engine.run" in handle.monitored_names  # frame reach: monitored
        assert "monpkg.engine.plain" in handle.wrapped_names  # safe: wrapped on the class
        assert "monpkg.engine" in handle.monitored_names  # __call__, frame reach
        assert "monpkg.area" in handle.monitored_names  # singledispatch held elsewhere: its implementations
        assert "monpkg.registry" in handle.monitored_names  # another library's dispatch object
        assert "monpkg.add" in handle.monitored_names  # a bound method: the method object holds the function
        assert "monpkg.Shapes.size" in handle.monitored_names  # singledispatchmethod: its implementations
        assert type(mpkg.engine) is engine_cls and mpkg.ALIASES["area"] is mpkg.area
        assert mpkg.engine.run(1) == ("test_public_instances_and_dispatch_objects_count", 1)
        assert mpkg.engine.plain(1) == 2 and mpkg.engine(3) == 6
        assert mpkg.area(4) == 16
        with pytest.raises(TypeError):
            mpkg.area("square")
        assert mpkg.registry(5) == 10
        assert mpkg.add(2) == 2 and mpkg.add(3) == 5
        assert mpkg.Shapes().size("abc") == 3
    assert cap.calls("monpkg.engine.run") == 1 and cap.calls("monpkg.engine.plain") == 1
    assert cap.calls("monpkg.engine") == 1
    assert cap.calls("monpkg.area", "ok") == 1 and cap.calls("monpkg.area", "error") == 1
    assert cap.calls("monpkg.registry", "ok") == 1
    assert cap.calls("monpkg.add", "ok") == 2 and cap.calls("monpkg.Shapes.size", "ok") == 1


@needs_monitoring
def test_coexists_with_settrace_and_another_monitoring_tool(mpkg):
    mon = sys.monitoring
    code = mpkg.where.__code__
    theirs = next((i for i in (0, 1, 2, 5) if mon.get_tool(i) is None), None)
    if theirs is None:
        pytest.skip("every conventional tool id is in use in this process")
    seen, traced = [], []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is code:
            traced.append(frame.f_back.f_code.co_name)
        return None

    mon.use_tool_id(theirs, "another tool")
    try:
        mon.register_callback(theirs, mon.events.PY_START, lambda c, o: seen.append(c.co_name))
        mon.set_local_events(theirs, code, mon.events.PY_START)
        with capture("monpkg") as cap:
            previous = sys.gettrace()
            sys.settrace(tracer)
            try:
                assert mpkg.where() == "test_coexists_with_settrace_and_another_monitoring_tool"
                assert mpkg.fact(4) == 24
            finally:
                sys.settrace(previous)
            ours = _tool()
            assert ours in (3, 4) and ours != theirs
        assert mon.get_local_events(theirs, code) == mon.events.PY_START  # theirs untouched by ours
    finally:
        mon.set_local_events(theirs, code, 0)
        mon.register_callback(theirs, mon.events.PY_START, None)
        mon.free_tool_id(theirs)
    assert seen == ["where"] and traced == ["test_coexists_with_settrace_and_another_monitoring_tool"]
    assert cap.calls("monpkg.where") == 1 and cap.calls("monpkg.fact") == 1


@needs_monitoring
def test_uninstrument_and_withdrawal_turn_the_events_off(mpkg):
    from usagetrace.testing import disabled

    code = mpkg.where.__code__
    with capture("monpkg") as cap:
        handle = cap.handle
        tool = _tool()
        assert tool is not None and sys.monitoring.get_local_events(tool, code) != 0
        with disabled("monpkg"):
            assert sys.monitoring.get_local_events(tool, code) == 0 and sys.monitoring.get_tool(tool) is None
            assert mpkg.where() == "test_uninstrument_and_withdrawal_turn_the_events_off"
        handle.recorder.enabled = True  # granted again: counted again
        assert _tool() is not None and sys.monitoring.get_local_events(_tool(), code) != 0
        mpkg.where()
        tool = _tool()
        handle.uninstrument()
        assert sys.monitoring.get_local_events(tool, code) == 0 and sys.monitoring.get_events(tool) == 0
        assert sys.monitoring.get_tool(tool) is None and _tool() is None
        mpkg.where()
    assert cap.calls("monpkg.where") == 1


@needs_monitoring
def test_no_free_tool_id_leaves_them_skipped_with_the_reason(packages, monkeypatch):
    mon = sys.monitoring
    taken = [i for i in (3, 4) if mon.get_tool(i) is None]
    for i in taken:
        mon.use_tool_id(i, "someone else")
    try:
        monkeypatch.setenv("MONPKG_TELEMETRY", "1")
        mpkg = packages.load("monpkg", SOURCE)
        with capture("monpkg") as cap:
            assert cap.handle.monitored_names == []
            assert "no free sys.monitoring tool id" in cap.handle.skipped["monpkg.where"]
            assert "monpkg.plain" in cap.handle.wrapped_names
            assert mpkg.where() == "test_no_free_tool_id_leaves_them_skipped_with_the_reason"
    finally:
        for i in taken:
            mon.free_tool_id(i)
    assert cap.calls("monpkg.where") == 0


@pytest.mark.skipif(MONITORING, reason="before Python 3.12 only")
def test_before_312_they_stay_skipped_with_the_reason(mpkg):
    with capture("monpkg") as cap:
        assert cap.handle.monitored_names == []
        assert cap.handle.callable_counts["monitored"] == 0
        assert "needs Python 3.12+" in cap.handle.skipped["monpkg.where"]
        assert "bound method" in cap.handle.skipped["monpkg.add"]  # listed, not silently uncounted
        assert "monpkg.plain" in cap.handle.wrapped_names


def test_callable_counts_add_up(mpkg):
    with capture("monpkg") as cap:
        counts = cap.handle.callable_counts
        assert counts["wrapped"] == len(cap.handle.wrapped_names)
        assert counts["monitored"] == len(cap.handle.monitored_names)
        assert counts["skipped"] == len(cap.handle.skipped)
        assert not set(cap.handle.monitored_names) & set(cap.handle.skipped)
        assert not set(cap.handle.monitored_names) & set(cap.handle.wrapped_names)


@needs_monitoring
def test_events_off_during_a_call_leave_no_usage_open(mpkg):
    """Consent withdrawn and granted again while a monitored call runs: its end is never seen, and later
    calls in the same thread are still usages."""
    with capture("monpkg") as cap:
        recorder = cap.handle.recorder

        def withdraw():
            recorder.enabled = False  # events off: this call's end is never seen
            return 1

        assert mpkg.run(withdraw) == 1
        recorder.enabled = True
        assert mpkg.where() == "test_events_off_during_a_call_leave_no_usage_open"
        assert mpkg.plain(1) == "plain"
    assert cap.calls("monpkg.where") == 1 and cap.calls("monpkg.plain") == 1


@needs_monitoring
def test_coexists_with_coverage_on_sys_monitoring(packages, tmp_path):
    """coverage.py measuring through sys.monitoring (COVERAGE_CORE=sysmon, its tool id 1) and usagetrace
    counting the same function: both see it. Runs where coverage is installed (not in the test extra)."""
    pytest.importorskip("coverage")
    import subprocess
    import textwrap

    packages.write("monpkg", SOURCE)
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f'''
        import sys
        import coverage
        sys.path.insert(0, {str(tmp_path / "pkgs")!r})
        cov = coverage.Coverage(data_file=None, include=[{str(tmp_path / "pkgs") + "/*"!r}])
        cov.start()
        import monpkg
        from usagetrace.testing import capture
        with capture("monpkg") as cap:
            assert "monpkg.where" in cap.handle.monitored_names
            def caller():
                return monpkg.where()
            assert caller() == "caller" and monpkg.fact(5) == 120
            tools = {{i: sys.monitoring.get_tool(i) for i in range(6) if sys.monitoring.get_tool(i)}}
        cov.stop()
        lines = cov.get_data().lines(monpkg.__file__)
        body = monpkg.where.__code__.co_firstlineno + 2  # its return line
        print(tools, cap.calls("monpkg.where"), cap.calls("monpkg.fact"), body in lines)
    '''))
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["COVERAGE_CORE"] = "sysmon"
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    tools = proc.stdout.strip().rsplit("} ", 1)[0] + "}"
    where_calls, fact_calls, covered = proc.stdout.split()[-3:]
    assert "coverage" in tools and "usagetrace" in tools, tools
    assert (where_calls, fact_calls, covered) == ("1", "1", "True")


SUPER_SOURCE = {
    "__init__.py": '''
        import sys

        class Base:
            def __init__(self, x):
                self.x = x

        class Child(Base):
            def __init__(self, x):
                super().__init__(x)           # zero-argument super(): a __class__ closure cell
                self.seen = sys._getframe(1).f_code.co_name  # frame reach: monitored, not wrapped

        def _make():
            class Made(Base):
                def __init__(self, x):
                    super().__init__(x)
                    self.seen = sys._getframe(1).f_code.co_name
            return Made

        Made = _make()                        # one code object for every class _make() would make
    ''',
}


@needs_monitoring
def test_methods_with_only_a_class_cell_are_monitored(packages, monkeypatch):
    """A method using zero-argument super() has a ``__class__`` cell, but its code is its own: monitored.
    The same method in a class made by a factory function shares its code among the classes: not on
    3.12; on 3.13+ told apart by that cell (the class it belongs to)."""
    monkeypatch.setenv("SUPKG_TELEMETRY", "1")
    spkg = packages.load("supkg", SUPER_SOURCE)
    code = spkg.Child.__init__.__code__
    assert code.co_freevars == ("__class__",) and spkg.Made.__init__.__code__.co_freevars == ("__class__",)
    with capture("supkg") as cap:
        assert "supkg.Child" in cap.handle.monitored_names
        if sys.version_info >= (3, 13):
            assert "supkg.Made" in cap.handle.monitored_names
        else:
            assert "supkg.Made" not in cap.handle.monitored_names
            assert "needs Python 3.13+" in cap.handle.skipped["supkg.Made"]
        assert spkg.Child.__init__.__code__ is code  # the same code, no wrapper

        def build():
            return spkg.Child(3)

        child = build()
        assert (child.x, child.seen) == (3, "build")  # the frame it sees is the caller's
        assert spkg.Made(4).x == 4
        other = spkg._make()  # another class on the same code, not public: its calls are not Made's
        assert other(5).x == 5
    assert cap.calls("supkg.Child", "ok") == 1
    assert cap.calls("supkg.Made") == (1 if sys.version_info >= (3, 13) else 0)


LATE_SOURCE = {
    "__init__.py": '''
        def build(tool):
            """Safe when instrumented: nothing of the package named ``depth`` exists yet."""
            return tool.depth() if tool is not None else "built"

        def other(x):
            return x + 1
    ''',
    "_late.py": '''
        import sys

        def depth():
            return sys._getframe(2).f_code.co_name    # build() reaches it by name: a frame hazard for build
    ''',
}


@needs_monitoring
def test_hazard_found_after_wrapping_switches_to_monitoring(packages, monkeypatch):
    """A module imported after a function was wrapped makes it hazardous: its wrapper passes calls through
    (the same object stays everywhere) and the calls are counted through sys.monitoring, once each."""
    monkeypatch.setenv("LTPKG_TELEMETRY", "1")
    lpkg = packages.load("ltpkg", LATE_SOURCE)
    with capture("ltpkg") as cap:
        handle = cap.handle
        assert "ltpkg.build" in handle.wrapped_names
        wrapper = lpkg.build
        assert lpkg.build(None) == "built"  # counted by the wrapper
        import ltpkg._late as late

        assert "ltpkg.build" in handle.monitored_names and "ltpkg.build" not in handle.wrapped_names
        assert "ltpkg.build" not in handle.skipped and "ltpkg.other" in handle.wrapped_names
        assert handle.monitored["ltpkg.build"].startswith("reaches ltpkg._late.depth, which looks 2 frame(s) up")
        assert lpkg.build is wrapper  # identity kept: the wrapper stays, passing calls through
        assert lpkg.build(None) == "built" and lpkg.build(None) == "built"
        assert handle.recorder.functions["ltpkg.build"].exempt is False

        class Tool:
            depth = staticmethod(late.depth)

        lpkg.build(Tool)  # the hazard's path (what it sees is the wrapper's frame, as before this change)

        class Broken:
            @staticmethod
            def depth():
                raise LookupError("depth")

        with pytest.raises(LookupError):
            lpkg.build(Broken)
        counts = handle.callable_counts
        assert counts["wrapped"] + counts["monitored"] + counts["skipped"] == \
            len(handle.wrapped_names) + len(handle.monitored_names) + len(handle.skipped)
    assert cap.calls("ltpkg.build", "ok") == 4  # one before the switch, three after: none twice, none lost
    assert cap.calls("ltpkg.build", "error") == 1


@pytest.mark.skipif(MONITORING, reason="before Python 3.12 only")
def test_hazard_found_after_wrapping_passes_through_uncounted_before_312(packages, monkeypatch):
    monkeypatch.setenv("LTPKG_TELEMETRY", "1")
    lpkg = packages.load("ltpkg", LATE_SOURCE)
    with capture("ltpkg") as cap:
        assert "ltpkg.build" in cap.handle.wrapped_names
        assert lpkg.build(None) == "built"
        import ltpkg._late  # noqa: F401

        assert "pass straight through" in cap.handle.skipped["ltpkg.build"]
        assert lpkg.build(None) == "built"
    assert cap.calls("ltpkg.build", "ok") == 1


SHARED_SOURCE = {
    "__init__.py": '''
        import warnings

        def deprecated(message):
            """One code object for every function it decorates: told apart by the closure."""
            def wrapper(func):
                def deprecated_func(*args, **kwargs):
                    warnings.warn(message, DeprecationWarning, stacklevel=2)  # frame reach: not wrapped
                    return func(*args, **kwargs)
                return deprecated_func
            return wrapper

        def _steps(fn):
            def steps(n):
                warnings.warn("steps", DeprecationWarning, stacklevel=2)
                for i in range(n):
                    yield fn(i)
            return steps

        def add(a, b):
            return a + b

        def mul(a, b):
            return a * b

        def _secret(a, b):
            return a - b

        oldAdd = deprecated("use add")(add)
        oldMul = deprecated("use mul")(mul)
        oldAddToo = oldAdd                      # the same function under a second name
        plusOld = deprecated("use add, really")(add)   # same wrapped function, other message
        _hidden = deprecated("private")(_secret)       # shared code, no public name
        doubles = _steps(lambda i: 2 * i)
        squares = _steps(lambda i: i * i)

        def _awaiting(fn):
            async def run(x):
                warnings.warn("run", DeprecationWarning, stacklevel=2)
                return await fn(x)
            return run

        async def _neg(x):
            if x == "boom":
                raise LookupError(x)
            return -x

        async def _inv(x):
            return 1 / x

        negate = _awaiting(_neg)
        invert = _awaiting(_inv)

        class _Op:
            def __call__(self, x):
                return x

        def _piped(instance):
            def pipe(x):
                warnings.warn("pipe", DeprecationWarning, stacklevel=2)
                return instance(x)
            return pipe

        pipeA = _piped(_Op())   # told apart by the instance in the cell (no function there)
        pipeB = _piped(_Op())

        def _marker():
            pass

        def _twin(tag):
            def twin(x):
                warnings.warn("twin", DeprecationWarning, stacklevel=2)
                return x if tag else None
            return twin

        twinA = _twin(_marker)  # two functions, one code, the same closure values: cannot be told apart
        twinB = _twin(_marker)
    ''',
}


def _shared(packages, monkeypatch):
    monkeypatch.setenv("SHPKG_TELEMETRY", "1")
    return packages.load("shpkg", SHARED_SOURCE)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="telling shared code apart by closure is 3.13+")
def test_shared_code_told_apart_by_closure(packages, monkeypatch):
    """Functions made by one factory share a code object: each call is counted for the public name whose
    closure the starting frame has; warnings still point at the caller; inner calls are not usages."""
    import asyncio

    spkg = _shared(packages, monkeypatch)
    code = spkg.oldAdd.__code__
    assert spkg.oldMul.__code__ is code and spkg._hidden.__code__ is code
    with capture("shpkg") as cap:
        handle = cap.handle
        for name in ("shpkg.oldAdd", "shpkg.oldMul", "shpkg.plusOld", "shpkg.doubles", "shpkg.squares"):
            assert name in handle.monitored_names, (name, handle.skipped.get(name))
        assert "shpkg.oldAddToo" not in handle.skipped  # the same function: counted under its first name
        for name in ("shpkg.twinA", "shpkg.twinB"):
            assert "no call can be told apart" in handle.skipped[name] and name not in handle.monitored_names
        assert spkg.oldAdd.__code__ is code and spkg.oldAdd.__closure__ is not None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = sys._getframe().f_lineno + 1
            assert spkg.oldAdd(2, 3) == 5
            assert spkg.oldMul(2, 3) == 6 and spkg.oldMul(3, 3) == 9
            assert spkg.oldAddToo(1, 1) == 2
            assert spkg._hidden(5, 3) == 2 and spkg.plusOld(1, 2) == 3
            assert list(spkg.doubles(3)) == [0, 2, 4] and list(spkg.squares(3)) == [0, 1, 4]
            own = spkg.deprecated("mine")(lambda: 7)  # the host's own function on the same code
            assert own() == 7
            also_add = spkg.deprecated("use add")(spkg.add)  # equal message, another closure: not oldAdd
            assert also_add(1, 1) == 2
            with pytest.raises(TypeError):
                spkg.oldMul(1)

            async def main():
                assert await spkg.negate(2) == -2 and await spkg.invert(4) == 0.25
                with pytest.raises(LookupError):
                    await spkg.negate("boom")
                return await asyncio.gather(spkg.negate(1), spkg.invert(2), spkg.invert(5))

            assert asyncio.run(main()) == [-1, 0.5, 0.2]
            assert spkg.pipeA(1) == 1 and spkg.pipeB(2) == 2 and spkg.pipeB(3) == 3
            assert spkg.twinA(1) == 1 and spkg.twinB(2) == 2
        assert caught[0].filename == __file__ and caught[0].lineno == line
    assert cap.calls("shpkg.oldAdd", "ok") == 2  # oldAdd and oldAddToo
    assert cap.calls("shpkg.oldMul", "ok") == 2 and cap.calls("shpkg.oldMul", "error") == 1
    assert cap.calls("shpkg.doubles") == 1 and cap.calls("shpkg.squares") == 1
    assert cap.calls("shpkg.negate", "ok") == 2 and cap.calls("shpkg.negate", "error") == 1
    assert cap.calls("shpkg.invert", "ok") == 3
    assert cap.calls("shpkg.pipeA", "ok") == 1 and cap.calls("shpkg.pipeB", "ok") == 2
    assert cap.calls("shpkg.twinA") == 0 and cap.calls("shpkg.twinB") == 0
    assert cap.calls("shpkg.plusOld", "ok") == 1  # the same wrapped function as oldAdd, another message
    assert cap.calls("shpkg._hidden") == 0
    # The synonyms' calls of add and mul are inner calls; the host's also_add calling add is a usage.
    assert cap.calls("shpkg.add", "ok") == 1 and cap.calls("shpkg.mul") == 0
    assert cap.calls("shpkg.deprecated", "ok") == 2


@needs_monitoring
@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.12 only")
def test_shared_code_stays_skipped_on_312(packages, monkeypatch):
    _shared(packages, monkeypatch)
    with capture("shpkg") as cap:
        assert "needs Python 3.13+" in cap.handle.skipped["shpkg.oldAdd"]
        assert "shpkg.oldAdd" not in cap.handle.monitored_names


CLASS_SOURCE = {
    "__init__.py": '''
        import warnings

        def operator(func, more=None):
            """Like aiostream's pipable_operator(): one generated class per operator, its methods' code shared
            by all of them, a closure cell that tells nothing apart (None or a small int)."""
            class OperatorImplementation:
                raw = staticmethod(func)

                def __call__(self, x):
                    warnings.warn("op", DeprecationWarning, stacklevel=2)  # frame reach: not wrapped
                    if more is not None:
                        assert more >= 0                              # like aiostream's source checks
                    return self.raw(x)

                @classmethod
                def build(cls, x):
                    warnings.warn("build", DeprecationWarning, stacklevel=2)
                    return cls()(x)                                   # an inner call

                async def stream(self, xs):
                    warnings.warn("stream", DeprecationWarning, stacklevel=2)
                    for x in xs:
                        yield self.raw(x)

            named = type(func.__name__.strip("_"), (OperatorImplementation,),
                         {"__module__": __name__, "__qualname__": func.__name__.strip("_")})
            return named()

        def _double(x):
            return 2 * x

        def _negate(x):
            if x == "boom":
                raise LookupError(x)
            return -x

        double = operator(_double)
        negate = operator(_negate, 0)
        twice = double                    # the same operator under a second name
        _hidden = operator(abs)           # shared code, no public name

        def shape(k):
            """A factory that returns the class itself (the public class is the generated one)."""
            class Shape:
                def area(self, x):
                    warnings.warn("area", DeprecationWarning, stacklevel=2)
                    return k * x

                @classmethod
                def unit(cls):
                    warnings.warn("unit", DeprecationWarning, stacklevel=2)
                    return cls().area(1)                              # an inner call
            return Shape

        Square = shape(1)
        Triple = shape(3)

        def _method():
            def method(self, x):
                warnings.warn("twin", DeprecationWarning, stacklevel=2)
                return x
            return method

        class Twins:
            """Two methods on one code object in one class: the class cannot tell them apart."""
            left = _method()
            right = _method()
    ''',
}


def _classes(packages, monkeypatch):
    monkeypatch.setenv("CLPKG_TELEMETRY", "1")
    return packages.load("clpkg", CLASS_SOURCE)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="telling shared code apart by class is 3.13+")
def test_shared_code_told_apart_by_class(packages, monkeypatch):
    """Methods of classes made by one factory share a code object and their closures tell nothing apart:
    each call is counted for the public name whose class ``self`` (``cls``) is, by identity; the host's
    subclasses are not the package's operator; warnings still point at the caller; inner calls are not
    usages; two methods of one class on one code are counted under neither name."""
    import asyncio

    cpkg = _classes(packages, monkeypatch)
    code = type(cpkg.double).__call__.__code__
    assert type(cpkg.negate).__call__.__code__ is code and type(cpkg._hidden).__call__.__code__ is code
    assert cpkg.Square.area.__code__ is cpkg.Triple.area.__code__
    with capture("clpkg") as cap:
        handle = cap.handle
        for name in ("clpkg.double", "clpkg.negate", "clpkg.double.build", "clpkg.negate.build",
                     "clpkg.double.stream", "clpkg.Square.area", "clpkg.Triple.area", "clpkg.Square.unit",
                     "clpkg.Triple.unit"):
            assert name in handle.monitored_names, (name, handle.skipped.get(name))
        assert "clpkg.twice" not in handle.skipped  # the same operator: counted under its first name
        for name in ("clpkg.Twins.left", "clpkg.Twins.right"):
            assert "no call can be told apart" in handle.skipped[name] and name not in handle.monitored_names
        assert type(cpkg.double).__call__.__code__ is code and type(cpkg.double) is not type(cpkg.negate)

        class Mine(type(cpkg.double)):  # the host's subclass of the package's operator class
            pass

        class MySquare(cpkg.Square):
            pass

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = sys._getframe().f_lineno + 1
            assert cpkg.double(2) == 4
            assert cpkg.negate(2) == -2 and cpkg.negate(3) == -3
            assert cpkg.twice(5) == 10
            with pytest.raises(LookupError):
                cpkg.negate("boom")
            assert cpkg._hidden(-4) == 4
            assert cpkg.double.build(3) == 6 and cpkg.negate.build(1) == -1
            assert Mine()(1) == 2 and Mine.build(2) == 4
            assert cpkg.Square().area(2) == 2 and cpkg.Triple().area(2) == 6 and cpkg.Triple().area(1) == 3
            assert cpkg.Square.unit() == 1 and cpkg.Triple.unit() == 3
            assert MySquare().area(5) == 5 and MySquare.unit() == 1
            assert cpkg.Twins().left(1) == 1 and cpkg.Twins().right(2) == 2

            async def main():
                return ([x async for x in cpkg.double.stream([1, 2])],
                        [x async for x in cpkg.negate.stream([3])],
                        [x async for x in Mine().stream([4])])

            assert asyncio.run(main()) == ([2, 4], [-3], [8])
        assert caught[0].filename == __file__ and caught[0].lineno == line
    assert cap.calls("clpkg.double", "ok") == 2  # double and twice; build's and Mine's calls are not
    assert cap.calls("clpkg.negate", "ok") == 2 and cap.calls("clpkg.negate", "error") == 1
    assert cap.calls("clpkg.double.build", "ok") == 1 and cap.calls("clpkg.negate.build", "ok") == 1
    assert cap.calls("clpkg.double.stream") == 1 and cap.calls("clpkg.negate.stream") == 1
    assert cap.calls("clpkg.Square.area", "ok") == 1 and cap.calls("clpkg.Triple.area", "ok") == 2
    assert cap.calls("clpkg.Square.unit", "ok") == 1 and cap.calls("clpkg.Triple.unit", "ok") == 1
    assert cap.calls("clpkg.Twins.left") == 0 and cap.calls("clpkg.Twins.right") == 0
    # The host's subclass Mine is not the operator: its three calls are not usages of it, so the package's
    # double.raw they reach is (as for any host code calling it); inside double's own usages it is not.
    assert cap.calls("clpkg.double.raw", "ok") == 3
    # Nothing else is counted: not _hidden (no public name), not the host's subclasses, no inner call.
    counted = {p["attributes"].get("code.function.name") for p in cap.points("usagetrace.calls")}
    assert counted == {"clpkg.double", "clpkg.negate", "clpkg.double.build", "clpkg.negate.build",
                       "clpkg.double.stream", "clpkg.negate.stream", "clpkg.Square.area", "clpkg.Triple.area",
                       "clpkg.Square.unit", "clpkg.Triple.unit", "clpkg.double.raw"}


@needs_monitoring
@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.12 only")
def test_shared_code_by_class_stays_skipped_on_312(packages, monkeypatch):
    _classes(packages, monkeypatch)
    with capture("clpkg") as cap:
        for name in ("clpkg.double", "clpkg.double.build", "clpkg.Square.area"):
            assert "by the class of the first argument at each call needs Python 3.13+" in cap.handle.skipped[name]
            assert name not in cap.handle.monitored_names
