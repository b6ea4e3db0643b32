"""hazards: what a wrapper would change, found before wrapping."""

from __future__ import annotations

import dis
import sys
import traceback
import types
import warnings

import pytest

from usagetrace._internal import hazards

INF = hazards.INF


def warns_2():
    warnings.warn("x", DeprecationWarning, stacklevel=2)


def warns_positional_3():
    warnings.warn("x", DeprecationWarning, 3)


def warns_here():
    warnings.warn("x")


def warns_dynamic(level):
    warnings.warn("x", stacklevel=level + 1)


def caller_globals():
    return sys._getframe(1).f_globals


def walks_frames():
    frame = sys._getframe()
    while frame.f_back:
        frame = frame.f_back


def bounded_stack():
    return traceback.extract_stack(limit=2)[-2]


def unbounded_stack():
    return traceback.extract_stack()


def branch_then_caller(flag):
    if flag:
        return None
    return sys._getframe().f_back.f_globals


def in_comprehension():
    return [warnings.warn("x", UserWarning, stacklevel=4) for _ in range(1)]


@pytest.mark.parametrize("func, reach", [
    (warns_2, 1), (warns_positional_3, 2), (warns_here, 0), (warns_dynamic, INF), (caller_globals, 1),
    (walks_frames, INF), (bounded_stack, 1), (unbounded_stack, INF), (in_comprehension, 3),
    (branch_then_caller, 1),  # an `if` is not a loop (3.12+ jumps are relative: it once read as one)
])
def test_frame_reach(func, reach):
    """How many frames above its caller's a function may look at: from stacklevel, _getframe, f_back, limit."""
    assert hazards.frame_reach(func.__code__)[0] == reach


def _codes(module):
    for value in vars(module).values():
        if isinstance(value, types.FunctionType):
            yield from hazards._all_codes(value.__code__)
        elif isinstance(value, type):
            for member in vars(value).values():
                if isinstance(member, types.FunctionType):
                    yield from hazards._all_codes(member.__code__)


@pytest.mark.parametrize("module", [warnings, traceback, dis])
def test_decoder_agrees_with_dis(module):
    """The import-path bytecode decoder names the same operations and operands as dis, on real code."""
    interesting = ("LOAD_CONST", "LOAD_GLOBAL", "LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR", "CALL",
                   "CALL_FUNCTION", "CALL_KW", "CALL_FUNCTION_KW", "PRECALL", "CALL_METHOD", "KW_NAMES")
    checked = 0
    for code in _codes(module):
        mine = [(i.opname, i.argval) for i in hazards._instructions(code) if i.opname in interesting]
        theirs = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname in interesting]
        if sys.version_info[:2] == (3, 11):  # dis cannot resolve KW_NAMES there; the decoder can
            mine = [x for x in mine if x[0] != "KW_NAMES"]
            theirs = [x for x in theirs if x[0] != "KW_NAMES"]
        assert mine == theirs, code
        checked += 1
    assert checked > 10


def test_reference_counts_find_every_capture():
    """A function held only by its namespace slots has no external reference; each capture adds one."""
    namespace = {"f": eval("lambda: 1")}
    assert hazards.external_references(namespace, "f", 1) == 0
    namespace["alias"] = namespace["f"]
    assert hazards.external_references(namespace, "f", 2) == 0  # two known slots
    held = [namespace["f"]]
    assert hazards.external_references(namespace, "f", 2) == 1

    def memoize(value):
        return lambda key=value: key  # the default holds it

    default = memoize(namespace["f"])
    assert hazards.external_references(namespace, "f", 2) == 2
    del held, default


def test_analysis_finds_callers_of_frame_readers_and_recursion(packages):
    """The name call graph: a caller of a stacklevel=3 helper is hazardous, of a stacklevel=2 one is not."""
    pkg = packages.load("hz_pkg", {"__init__.py": '''
        import warnings

        def _aimed_at_caller(msg):
            warnings.warn(msg, DeprecationWarning, stacklevel=3)

        def _aimed_at_package(msg):
            warnings.warn(msg, DeprecationWarning, stacklevel=2)

        def public_deprecated():
            _aimed_at_caller("old")

        def public_fine():
            _aimed_at_package("internal")

        def walk(n):
            return n if n <= 0 else walk(n - 1)

        def ping(n):
            return pong(n - 1) if n else 0

        def pong(n):
            return ping(n - 1) if n else 0

        def not_recursive(d):
            return d.not_recursive()

        class Node:
            def depth(self):
                return 1 + max((c.depth() for c in self.children), default=0)

            def parent_depth(self):
                return super().parent_depth()
    '''})
    analysis = hazards.Analysis("hz_pkg")
    analysis.add_module(pkg)
    assert "reaches hz_pkg._aimed_at_caller" in analysis.frame_hazard(pkg.public_deprecated)
    assert analysis.frame_hazard(pkg.public_fine) is None
    for name in ("walk", "ping", "pong"):
        assert analysis.recursion_hazard(getattr(pkg, name)), name
    assert analysis.recursion_hazard(pkg.not_recursive) is None  # d.not_recursive is an attribute, not a call to itself
    assert analysis.recursion_hazard(pkg.Node.depth)
    assert analysis.recursion_hazard(pkg.Node.parent_depth) is None  # super(): the parent's method


def test_frame_reach_in_a_function_made_for_later_is_not_the_factorys(packages):
    """Frame reach in a nested function the factory returns or stores runs later: not a hazard of the factory.

    Found by the corpus: a wrapt-based deprecation decorator had 0 of 13 callables wrapped, every one
    skipped because its adapter's ``__call__`` (run implicitly) builds a wrapper that warns with a computed
    stacklevel. That warning runs when the decorated function is called, long after the call into the
    package returned: no wrapper frame of ours is on the stack then.
    """
    pkg = packages.load("hz_later", {"__init__.py": '''
        import functools
        import sys
        import warnings

        import wrapt


        def deprecated(reason):
            def decorate(func):
                @functools.wraps(func)
                def replacement(*args, **kwargs):
                    warnings.warn(reason, DeprecationWarning, stacklevel=2)
                    return func(*args, **kwargs)
                return replacement
            return decorate


        def caller_module_later():
            return lambda: sys._getframe(2).f_globals["__name__"]


        class Adapter:
            def __init__(self, level=2):
                self.level = level

            def __call__(self, wrapped):
                if isinstance(wrapped, type):
                    def new(cls, *args, **kwargs):
                        warnings.warn("old class", DeprecationWarning, stacklevel=self.level)
                        return object.__new__(cls)
                    wrapped.__new__ = staticmethod(new)
                    return wrapped

                @wrapt.decorator
                def wrapper_function(wrapped_, instance_, args_, kwargs_):
                    warnings.warn("old", DeprecationWarning, stacklevel=self.level)
                    return wrapped_(*args_, **kwargs_)

                return wrapper_function(wrapped)


        def registry_of_warners(registry):
            def warner():
                warnings.warn("x", stacklevel=5)
            registry.append(warner)
            return registry


        def plain():
            return 1
    '''})
    analysis = hazards.Analysis("hz_later")
    analysis.add_module(pkg)
    for name in ("deprecated", "caller_module_later", "registry_of_warners", "plain"):
        assert analysis.frame_hazard(getattr(pkg, name)) is None, name
    assert analysis.frame_hazard(pkg.Adapter.__call__) is None
    assert analysis.frame_hazard(pkg.Adapter.__init__) is None  # nothing implicit reads frames any more
    # and the made functions really behave as written: the warning points at their caller
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pkg.Adapter()(pkg.plain)()
        line = sys._getframe().f_lineno - 1
    assert [(w.filename, w.lineno) for w in seen] == [(__file__, line)]


def test_frame_reach_in_a_nested_function_called_now_is_the_factorys(packages):
    """Exact both ways: a nested function the factory also calls (by name, an alias, a callback, an unknown
    decorator) runs during the call into the package, and its frame reach stays a hazard."""
    pkg = packages.load("hz_now", {"__init__.py": '''
        import contextlib
        import warnings


        def calls_it(msg):
            def warn_caller():
                warnings.warn(msg, DeprecationWarning, stacklevel=3)
            warn_caller()
            return warn_caller


        def calls_an_alias(msg):
            def warn_caller():
                warnings.warn(msg, DeprecationWarning, stacklevel=3)
            again = warn_caller
            again()


        def passes_it_on(items):
            return list(map(lambda x: warnings.warn(str(x), stacklevel=3), items))


        def calls_a_lambda(msg):
            say = lambda: warnings.warn(msg, stacklevel=3)
            return say()


        def unknown_decorator(msg):
            @contextlib.contextmanager
            def scope():
                warnings.warn(msg, stacklevel=4)
                yield
            with scope():
                return 1
    '''})
    analysis = hazards.Analysis("hz_now")
    analysis.add_module(pkg)
    for name in ("calls_it", "calls_an_alias", "passes_it_on", "calls_a_lambda", "unknown_decorator"):
        reason = analysis.frame_hazard(getattr(pkg, name))
        assert reason and "stacklevel" in reason, name


def test_handing_itself_on_for_later_is_not_recursion(packages):
    """``return functools.partial(deprecated, **options)`` (a decorator with optional arguments) does not call
    itself now; ``map(walk, children)`` does."""
    pkg = packages.load("hz_partial", {"__init__.py": '''
        import functools

        def deprecated(*args, **options):
            if args:
                return args[0]
            return functools.partial(deprecated, **options)

        def walk(tree):
            return [tree[0], *map(walk, tree[1:])]

        def later_then_now(n):
            again = functools.partial(later_then_now, n - 1)
            return again() if n else 0
    '''})
    analysis = hazards.Analysis("hz_partial")
    analysis.add_module(pkg)
    assert analysis.recursion_hazard(pkg.deprecated) is None
    assert analysis.recursion_hazard(pkg.walk)
    assert analysis.recursion_hazard(pkg.later_then_now)
