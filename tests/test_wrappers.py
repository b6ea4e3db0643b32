"""Wrapped callables behave exactly like the originals."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import multiprocessing
import pickle

import pytest

from usagetrace.testing import capture

SOURCE = {
    "__init__.py": '''
        """A package exercising every kind of callable."""
        import dataclasses, enum

        SENTINEL = object()

        def add(a, b=1, *rest, scale=1, **extra):
            """Add things."""
            return (a + b + sum(rest)) * scale

        def identity(x):
            return x

        def fail(exc):
            raise exc

        async def aadd(a, b):
            await __import__("asyncio").sleep(0)
            return a + b

        async def afail():
            raise KeyError("secret")

        def gen(n):
            total = 0
            for i in range(n):
                got = yield i
                if got:
                    total += got
            return total

        async def agen(n):
            for i in range(n):
                yield i

        class Base:
            """A base class."""
            registry = []

            def __init_subclass__(cls, **kw):
                super().__init_subclass__(**kw)
                Base.registry.append(cls.__name__)

            def __init__(self, value):
                self.value = value

            def double(self):
                return self.value * 2

            @property
            def prop(self):
                return self.value + 1

            @classmethod
            def make(cls, value):
                return cls(value)

            @staticmethod
            def static(x):
                return x * 3

        class Child(Base):
            def double(self):
                return super().double() + 1

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0

            def norm1(self):
                return abs(self.x) + abs(self.y)

        class Color(enum.Enum):
            RED = 1
            BLUE = 2

            def describe(self):
                return self.name.lower()

        import usagetrace
        usagetrace.instrument(__name__)
    ''',
}


@pytest.fixture
def wpkg(packages, monkeypatch):
    monkeypatch.setenv("WPKG_TELEMETRY", "1")
    return packages.load("wpkg", SOURCE)


def test_everything_public_is_wrapped(wpkg):
    """Functions, async functions, generators, methods, classmethods, staticmethods and constructors are wrapped."""
    from usagetrace._internal import instrumentation

    names = set(instrumentation.get("wpkg").wrapped_names)
    assert {
        "wpkg.add", "wpkg.aadd", "wpkg.gen", "wpkg.agen", "wpkg.Base", "wpkg.Base.double",
        "wpkg.Base.make", "wpkg.Base.static", "wpkg.Child.double", "wpkg.Point", "wpkg.Point.norm1",
        "wpkg.Color.describe",
    } <= names
    assert "wpkg.Base.prop" not in names  # properties are left alone


def test_metadata_is_preserved(wpkg):
    """Signature, docstring, name, qualname, type and attributes match the original (no __wrapped__ of ours)."""
    assert str(inspect.signature(wpkg.add)) == "(a, b=1, *rest, scale=1, **extra)"
    assert wpkg.add.__doc__ == "Add things."
    assert wpkg.add.__name__ == "add"
    assert wpkg.add.__qualname__ == "add"
    assert type(wpkg.add) is type(lambda: None) and not hasattr(wpkg.add, "__wrapped__")
    assert inspect.getfullargspec(wpkg.add).args == ["a", "b"] and wpkg.add.__defaults__ == (1,)
    assert inspect.getsource(wpkg.add).startswith("def add(a, b=1, *rest, scale=1, **extra):")
    assert inspect.iscoroutinefunction(wpkg.aadd)
    assert inspect.isgeneratorfunction(wpkg.gen)
    assert str(inspect.signature(wpkg.Point)) == "(x: int, y: int = 0) -> None"


def test_values_and_exceptions_pass_through_unchanged(wpkg):
    """Return values are the same objects and exceptions are the same objects."""
    assert wpkg.identity(wpkg.SENTINEL) is wpkg.SENTINEL
    assert wpkg.add(1, 2, 3, scale=2, ignored=True) == 12
    exc = LookupError("boom")
    with pytest.raises(LookupError) as info:
        wpkg.fail(exc)
    assert info.value is exc


def test_pickle_by_reference(wpkg):
    """Wrapped functions and methods pickle by reference and come back as the same callables."""
    assert pickle.loads(pickle.dumps(wpkg.add)) is wpkg.add
    assert pickle.loads(pickle.dumps(wpkg.Base.make))(4).value == 4
    bound = wpkg.Base(5).double
    assert pickle.loads(pickle.dumps(bound))() == 10
    assert pickle.loads(pickle.dumps(wpkg.Point(1, 2))) == wpkg.Point(1, 2)


def test_multiprocessing_spawn_pool_uses_wrapped_functions(wpkg):
    """A spawn pool can map a wrapped function (it pickles by reference)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(wpkg.identity, [1, 2, 3]) == [1, 2, 3]


def test_classes_are_not_proxied(wpkg):
    """isinstance, subclassing, super(), properties, dataclasses, enums and __init_subclass__ keep working."""
    child = wpkg.Child(10)
    assert type(child) is wpkg.Child and isinstance(child, wpkg.Base)
    assert child.double() == 21
    assert child.prop == 11
    assert wpkg.Child.make(3).value == 3 and type(wpkg.Child.make(3)) is wpkg.Child
    assert wpkg.Base.static(2) == 6 and wpkg.Base(1).static(2) == 6

    class UserSub(wpkg.Child):
        def double(self):
            return super().double() * 10

    assert UserSub(1).double() == 30
    assert "UserSub" in wpkg.Base.registry
    p = wpkg.Point(3, -4)
    assert dataclasses.asdict(p) == {"x": 3, "y": -4}
    assert dataclasses.replace(p, y=1) == wpkg.Point(3, 1)
    assert p.norm1() == 7
    assert wpkg.Color(1) is wpkg.Color.RED and wpkg.Color.BLUE.describe() == "blue"
    assert isinstance(wpkg.Color.RED, enum.Enum) and list(wpkg.Color) == [wpkg.Color.RED, wpkg.Color.BLUE]


def test_async_functions_time_and_catch_inside_the_coroutine(wpkg):
    """An async function is counted when awaited, and its exception is recorded and re-raised unchanged."""
    with capture("wpkg") as cap:
        assert asyncio.run(wpkg.aadd(1, 2)) == 3
        with pytest.raises(KeyError):
            asyncio.run(wpkg.afail())
    assert cap.calls("wpkg.aadd", "ok") == 1
    assert cap.calls("wpkg.afail", "error") == 1
    [span] = cap.spans("wpkg.afail")
    assert span["attributes"]["error.type"] == "KeyError"


def test_generators_support_send_and_early_close(wpkg):
    """A wrapped generator forwards send() and its return value, and can be closed early."""
    g = wpkg.gen(5)
    assert next(g) == 0
    assert g.send(10) == 1
    assert g.send(5) == 2
    with pytest.raises(StopIteration) as stop:
        for _ in range(10):
            next(g)
    assert stop.value.value == 15
    early = wpkg.gen(100)
    assert next(early) == 0
    early.close()
    assert inspect.getgeneratorstate(early) == inspect.GEN_CLOSED


def test_generator_throw_is_forwarded(wpkg):
    """throw() reaches the wrapped generator and its exception propagates."""
    g = wpkg.gen(3)
    next(g)
    with pytest.raises(ValueError):
        g.throw(ValueError("x"))


def test_async_generators_work(wpkg):
    """A wrapped async generator yields the same values."""

    async def collect():
        return [x async for x in wpkg.agen(3)]

    assert asyncio.run(collect()) == [0, 1, 2]


def test_wrapping_is_off_the_path_when_withdrawn(wpkg):
    """After withdrawal the wrapper calls straight through and records nothing."""
    with capture("wpkg") as cap:
        cap.handle.recorder.enabled = False
        assert wpkg.add(1) == 2
        cap.handle.recorder.enabled = True
    assert cap.calls("wpkg.add") == 0
