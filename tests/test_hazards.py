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


def in_comprehension():
    return [warnings.warn("x", UserWarning, stacklevel=4) for _ in range(1)]


@pytest.mark.parametrize("func, reach", [
    (warns_2, 1), (warns_positional_3, 2), (warns_here, 0), (warns_dynamic, INF), (caller_globals, 1),
    (walks_frames, INF), (bounded_stack, 1), (unbounded_stack, INF), (in_comprehension, 3),
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
