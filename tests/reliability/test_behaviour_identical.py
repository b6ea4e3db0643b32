"""Behaviour first: a probe observes a package from the host's side, with telemetry off and on.

The package calls ``usagetrace.instrument(__name__)`` at the end of its
``__init__.py`` as a maintainer would; ``BEHAVE_PKG_TELEMETRY`` turns consent
off or on. The probe (host code in a fresh interpreter) prints everything it
can observe: identities, exact types, reprs, copies, pickling, descriptor
behaviour, warning locations, stack inspection, tracebacks, recursion depth,
generator and coroutine objects, exceptions. Both runs must print the same
thing, while the instrumented run really wrapped and counted the API.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from .conftest import SRC, clean_env, run_py

PACKAGE = {
    "__init__.py": '''
        import functools, sys, types, warnings, inspect, dataclasses, enum

        # --- identity: the package captures its own public functions ---------------
        def default_key(*args):
            return args

        def memoize(func, key=default_key):
            return "fast" if key is default_key else "slow"

        def handler_a(x):
            return ("a", x)

        HANDLERS = {"a": handler_a}

        def dispatch(name, x):
            return HANDLERS[name] is handler_a, HANDLERS[name](x)

        class _Config:
            pass

        def hook(x):
            return x

        CONFIG = _Config()
        CONFIG.hook = hook

        def partial_target(a, b):
            return a + b

        BOUND = functools.partial(partial_target, 1)

        def recursive_depth(n):
            return 0 if n == 0 else 1 + recursive_depth(n - 1)

        # --- frames -------------------------------------------------------------------
        def old_api():
            warnings.warn("old_api is deprecated", DeprecationWarning, stacklevel=2)
            return 1

        def _deprecated(message):
            warnings.warn(message, DeprecationWarning, stacklevel=3)

        def uses_helper():
            _deprecated("uses_helper is deprecated")
            return 2

        def caller_module():
            return sys._getframe(1).f_globals["__name__"]

        def who_called():
            return inspect.stack()[1].function

        def warns_here():
            warnings.warn("points at the package", UserWarning)
            return 3

        class Box:
            def __getitem__(self, key):
                warnings.warn("indexing a Box", UserWarning, stacklevel=2)
                return key

        def index_box(box, key):
            return box[key]

        def plain(x):
            return x * 2

        # --- classes and descriptors ----------------------------------------------------
        class Thing:
            """A thing."""

            __slots__ = ("v",)

            def __init__(self, v=0):
                self.v = v

            def method(self, x):
                return self.v + x

            @classmethod
            def make(cls, v):
                return cls(v)

            @staticmethod
            def helper(x):
                return -x

            @property
            def double(self):
                return self.v * 2

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0

            def norm(self):
                return abs(self.x) + abs(self.y)

        class Color(enum.Enum):
            RED = 1

            def describe(self):
                return self.name.lower()

        # --- generators and coroutines ----------------------------------------------------
        def count_up(n):
            for i in range(n):
                got = yield i
                if got is not None:
                    yield ("got", got)

        async def fetch(x, y):
            return x + y

        async def afail():
            raise KeyError("k")

        # --- errors and exits -------------------------------------------------------------
        def fail(exc):
            raise exc

        def main(argv=None):
            raise SystemExit(0)

        import usagetrace
        HANDLE = usagetrace.instrument(__name__, consent="opt-in", dev_file=__import__("os").environ["DEV_FILE"])
    ''',
}

PROBE = r'''
import asyncio, copy, gc, inspect, json, pickle, re, sys, traceback, types, warnings
import behave_pkg as p

out = {}
def note(key, value):
    out[key] = value

def addr(text):
    return re.sub(r"0x[0-9a-f]+", "0x?", text)

# identity
note("memoize default", p.memoize(len))
note("memoize explicit default", p.memoize(len, key=p.default_key))
note("registry", p.dispatch("a", 1))
note("handler is registry entry", p.HANDLERS["a"] is p.handler_a)
note("attribute hook", p.CONFIG.hook is p.hook)
note("partial", (p.BOUND.func is p.partial_target, p.BOUND(2)))
note("class attr is class attr", p.Thing.method is p.Thing.method)
t = p.Thing(3)
note("bound func", (t.method.__func__ is p.Thing.method, type(t.method).__name__, t.method(1)))
note("classmethod", (type(p.Thing.make).__name__, p.Thing.make.__self__ is p.Thing, p.Thing.make(2).v))
note("staticmethod", (p.Thing.helper is t.helper, type(p.Thing.helper).__name__, t.helper(4)))
note("descriptor types", [type(vars(p.Thing)[k]).__name__ for k in ("method", "make", "helper", "double")])
note("exact types", [type(getattr(p, n)) is types.FunctionType for n in ("plain", "count_up", "fetch", "main")])
note("code", [(getattr(p, n).__code__.co_argcount,
               getattr(p, n).__code__.co_varnames[:getattr(p, n).__code__.co_argcount],
               getattr(p, n).__code__.co_filename.rsplit("/", 1)[-1], getattr(p, n).__code__.co_firstlineno,
               addr(repr(inspect.getfullargspec(getattr(p, n)))))
              for n in ("plain", "memoize", "count_up", "fetch")])
def never_awaited():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.fetch(1, 2)
        gc.collect()
    return [str(w.message) for w in caught]
note("never awaited", never_awaited())
note("property", t.double)
note("dataclass", (p.Point(1, 2).norm(), repr(p.Point(1)), p.Point(1) == p.Point(1)))
note("enum", (p.Color.RED.describe(), p.Color(1) is p.Color.RED))

# exact types and reprs
for name in ("plain", "memoize", "count_up", "fetch", "main"):
    f = getattr(p, name)
    note("type " + name, (type(f).__name__, isinstance(f, types.FunctionType), addr(repr(f)),
                           f.__name__, f.__qualname__, f.__module__, f.__doc__))
import inspect
note("copies", (copy.copy(p.plain) is p.plain, copy.deepcopy({"f": p.plain})["f"] is p.plain,
                copy.deepcopy([p.Thing.method])[0] is p.Thing.method))
note("pickle", [pickle.loads(pickle.dumps(o)) is o for o in (p.plain, p.Thing.method, p.Thing.helper)])
note("pickle bound", pickle.loads(pickle.dumps(p.Thing.make))(5).v)
note("hash eq", (hash(p.plain) == hash(pickle.loads(pickle.dumps(p.plain))), p.plain == p.plain))
import inspect
note("signature", [addr(str(inspect.signature(getattr(p, n)))) for n in ("plain", "memoize", "count_up", "fetch")])
note("source", inspect.getsource(p.plain).strip().splitlines()[0])

# frames
def catch(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [(w.filename.rsplit("/", 1)[-1], w.lineno, str(w.message)) for w in caught]
note("old_api", catch(p.old_api))
note("uses_helper", catch(p.uses_helper))
note("warns_here", catch(p.warns_here))
note("index_box", catch(p.index_box, p.Box(), "k"))
note("caller_module", p.caller_module())
note("who_called", p.who_called())

# recursion depth available
def deepest(fn):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        n = 0
        while True:
            try:
                fn(n)
            except RecursionError:
                return n
            n += 10
    finally:
        sys.setrecursionlimit(limit)
note("recursion", deepest(p.recursive_depth))

# tracebacks
def tb_names(fn, *args):
    try:
        fn(*args)
    except BaseException as exc:
        return type(exc).__name__, [f.name for f in traceback.extract_tb(exc.__traceback__)]
note("traceback", tb_names(p.fail, ValueError("x")))
note("traceback badcall", tb_names(p.plain, 1, 2))
note("systemexit", tb_names(p.main)[0])

# generators
g = p.count_up(3)
note("generator", (type(g).__name__, addr(repr(g)), g.__name__, g.__qualname__, next(g), g.send("s"), next(g)))
g.close()
note("generator closed", inspect.getgeneratorstate(g))
g2 = p.count_up(5)
next(g2)
try:
    g2.throw(ValueError("thrown"))
except ValueError as exc:
    note("generator throw", str(exc))
note("generator list", list(p.count_up(4)))

# coroutines
c = p.fetch(1, 2)
note("coroutine", (type(c).__name__, c.__name__, c.__qualname__, addr(repr(c)).split(" at ")[0]))
note("coroutine result", asyncio.run(c))
try:
    p.fetch(1)
except TypeError as exc:
    note("coroutine bad args", str(exc))
async def run_fail():
    try:
        await p.afail()
    except KeyError as exc:
        return repr(exc)
note("coroutine error", asyncio.run(run_fail()))

print(json.dumps(out, sort_keys=True, default=repr))
h = p.HANDLE
h.flush(10.0)
print(json.dumps({"wrapped": h.wrapped_names, "skipped": dict(h.skipped), "monitored": dict(h.monitored),
                  "enabled": h.enabled}),
      file=sys.stderr)
'''


def _run(tmp_path, telemetry: str):
    pkg_root = tmp_path / "pkgs"
    for rel, source in PACKAGE.items():
        path = pkg_root / "behave_pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    env = clean_env(tmp_path / f"home-{telemetry}", BEHAVE_PKG_TELEMETRY=telemetry,
                    DEV_FILE=str(tmp_path / f"dev-{telemetry}.jsonl"))
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(pkg_root)])
    proc = run_py(PROBE, env)
    assert proc.returncode == 0, proc.stderr
    observed = json.loads(proc.stdout.strip().splitlines()[-1])
    account = json.loads(proc.stderr.strip().splitlines()[-1])
    return observed, account


def test_host_observes_the_same_package_with_telemetry_on(tmp_path):
    """Every observation the probe makes is identical off and on; the hazardous functions were left unwrapped."""
    plain, plain_account = _run(tmp_path, "0")
    instrumented, account = _run(tmp_path, "1")
    assert plain_account["wrapped"] == [] and not plain_account["enabled"]
    assert account["enabled"]
    differing = {k: (plain[k], instrumented.get(k)) for k in plain if plain[k] != instrumented.get(k)}
    if sys.version_info < (3, 11):
        # Before 3.11 a re-raised exception keeps the wrapper's frame in its traceback (README: limits).
        for key in ("traceback", "traceback badcall"):
            differing.pop(key, None)
    assert differing == {}
    wrapped, skipped = set(account["wrapped"]), account["skipped"]
    # Really instrumented: the safe API is wrapped...
    for name in ("behave_pkg.plain", "behave_pkg.memoize", "behave_pkg.dispatch", "behave_pkg.Thing",
                 "behave_pkg.Thing.method", "behave_pkg.Thing.make", "behave_pkg.Thing.helper",
                 "behave_pkg.count_up", "behave_pkg.fetch", "behave_pkg.warns_here", "behave_pkg.index_box",
                 "behave_pkg.Point.norm", "behave_pkg.Color.describe"):
        assert name in wrapped, (name, skipped.get(name))
    # ...and what would change behaviour is not, each with a reason: counted without a wrapper on 3.12+.
    if sys.version_info >= (3, 12):
        skipped = account["monitored"]
    for name, word in (("behave_pkg.default_key", "reference"), ("behave_pkg.handler_a", "reference"),
                       ("behave_pkg.hook", "reference"), ("behave_pkg.partial_target", "reference"),
                       ("behave_pkg.old_api", "stack"), ("behave_pkg.uses_helper", "stack"),
                       ("behave_pkg.caller_module", "stack"), ("behave_pkg.who_called", "stack"),
                       ("behave_pkg.recursive_depth", "recursion")):
        assert name in skipped and word in skipped[name], (name, skipped.get(name))
    assert "behave_pkg.main" in wrapped  # not an entry point here: a plain function that exits 0


def test_counts_of_the_probe_run(tmp_path):
    """The instrumented probe run counted its usages, SystemExit(0) as success, and sent no error for it."""
    _run(tmp_path, "1")
    from usagetrace.testing import flatten

    points = []
    with open(tmp_path / "dev-1.jsonl") as fh:
        for line in fh:
            request = json.loads(line)
            if "resourceMetrics" in request:
                points += flatten("metrics", request)
    calls = {}
    for point in points:
        if point["metric"] == "usagetrace.calls":
            key = (point["attributes"]["code.function.name"], point["attributes"]["usagetrace.outcome"])
            calls[key] = calls.get(key, 0) + point["value"]
    assert calls[("behave_pkg.main", "ok")] == 1
    assert ("behave_pkg.main", "error") not in calls
    assert calls[("behave_pkg.fail", "error")] == 1
    assert ("behave_pkg.plain", "error") not in calls  # the bad call fails binding, before the function runs
    if sys.version_info >= (3, 12):  # counted without a wrapper: once per outer call, the deepest one failed
        assert calls[("behave_pkg.recursive_depth", "error")] == 1
        assert calls[("behave_pkg.recursive_depth", "ok")] > 1
    else:
        assert not [k for k in calls if k[0] == "behave_pkg.recursive_depth"]  # left unwrapped: recursive
    assert calls[("behave_pkg.count_up", "ok")] == 3
    assert calls[("behave_pkg.fetch", "ok")] == 1
    errors = [p for p in points if p["metric"] == "usagetrace.errors"]
    assert not [p for p in errors if p["attributes"]["error.type"] == "SystemExit"]


@pytest.mark.parametrize("stacked", [False, True])
def test_exact_type_checks_pass_for_wrapped_functions(packages, stacked):
    """Code comparing type(f) with FunctionType (in the package or the host) sees a function: wrapped and counted."""
    import types

    from usagetrace.testing import capture

    name = f"rel_exact_type_{int(stacked)}"
    check = ("type(f) in _FUNCTION_TYPES" if stacked else "type(f) is types.FunctionType")
    pkg = packages.load(name, {"__init__.py": f"""
        import types
        _FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType)

        def is_function(f):
            return {check}

        def twice(x):
            return 2 * x
    """})
    with capture(name) as cap:
        assert pkg.is_function(pkg.twice) is True
        assert type(pkg.twice) is types.FunctionType
        assert cap.handle.wrapped_names == [f"{name}.is_function", f"{name}.twice"]
    assert cap.calls(f"{name}.is_function") == 1

