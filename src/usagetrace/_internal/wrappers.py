"""The wrappers that turn calls into usages, built to be invisible to the host.

Two layers per public function:

1. **What the host holds is a real function** (``type(f) is FunctionType``): a
   *trampoline* with the original's exact signature (parameter names, kinds,
   the very same ``__defaults__``/``__kwdefaults__``/``__annotations__``/
   ``__dict__`` objects), name, qualified name, module, globals, docstring,
   file and line. Compiled once per signature shape and renamed per function.
   It binds the arguments exactly as the original would (so a bad call raises
   the same ``TypeError`` at the call site) and hands them to
2. **a wrapt ``FunctionWrapper``** whose wrapper has the shape ``(wrapped,
   instance, args, kwargs)``. wrapt first calls the package's ``outside``
   context variable getter (its ``enabled`` argument, a C method): inside a
   usage of the package (same thread or task) it is falsy and wrapt calls the
   original directly, so a call the package makes into itself is not counted
   again. Otherwise the Python wrapper counts the usage, times it when it is
   sampled, and marks the package as inside a usage while the call runs.

Because the trampoline is a plain function, everything about functions holds
as without usagetrace: ``type()``, ``isinstance``, ``repr``, ``copy``/
``deepcopy``, pickling by reference, descriptor binding (``Cls.method is
Cls.method``; ``obj.method`` is a real bound method; static and class methods
stay real ``staticmethod``/``classmethod`` objects), ``inspect.signature`` and
``getfullargspec``, ``getsource``, generator and coroutine objects (created by
the trampoline, so they carry the original's names; an ``async def`` never
awaited warns once, under its own name). On Python 3.11+ the trampoline and
wrapper frames are removed from an exception's traceback before it is
re-raised, so the host sees the frames it would see without usagetrace.

What this cannot hide (``f is original`` for a reference taken before
wrapping; the extra frames seen by code that inspects the stack; recursion
depth) is found before wrapping by :mod:`.hazards`, and such callables are
left unwrapped.

A usagetrace error never reaches the caller: the recording steps sit outside
the ``try`` around the wrapped call, and each catches its own errors. The
wrapped call's return value and exception object pass through unchanged.
"""

from __future__ import annotations

import sys
from types import CellType, CodeType, FunctionType

import wrapt

from . import clock
from .recorder import FunctionStats, Recorder

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

#: pytest hides frames of modules that set this from its failure reports.
__tracebackhide__ = True

#: Since 3.11 a bare ``raise`` re-raises with the exception's ``__traceback__``,
#: so the wrapper can take its own frame out; before, it cannot.
STRIPS_OWN_FRAME = sys.version_info >= (3, 11)


def _strip_own_frame(exc: BaseException | None = None) -> None:
    """Take usagetrace's frames out of the traceback of ``exc`` (default: the exception being handled).

    Called from the except block of a trampoline or a wrapper. Since 3.11 a bare
    ``raise`` re-raises with the exception's ``__traceback__``, so the calling
    frame's own entry is dropped. Before 3.11 the re-raise keeps that entry, so
    only the wrapper entries that follow it are spliced out (``tb_next`` is
    writable): one extra entry remains (README, limits).
    """
    try:
        if exc is None:
            exc = sys.exc_info()[1]  # a trampoline binds no name for it: its locals are its parameters
        tb = exc.__traceback__
        if tb is None or tb.tb_frame is not sys._getframe(1):
            return
        if STRIPS_OWN_FRAME:
            exc.__traceback__ = tb.tb_next
            return
        after = tb.tb_next
        while after is not None and is_own_code(after.tb_frame.f_code):
            after = after.tb_next
        tb.tb_next = after
    except Exception:
        pass


def sync_wrapper(rec: Recorder, stats: FunctionStats, *, _clock=_clock, _strip_own_frame=_strip_own_frame,
                 STRIPS_OWN_FRAME=STRIPS_OWN_FRAME, next=next, BaseException=BaseException):
    """Return the wrapper for a plain function, method or constructor."""
    set_, reset, marker, ok = rec.outside.set, rec.outside.reset, stats.marker, stats.ok
    strip = STRIPS_OWN_FRAME

    def wrapper(wrapped, instance, args, kwargs):
        if stats.off:  # consent withdrawn, or a CLI command function: straight through
            return wrapped(*args, **kwargs)
        token = set_(marker)
        start = _clock.time_ns() if stats.budget > 0 else 0
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            reset(token)
            rec.ended(stats, exc, args, kwargs, start)
            if strip:
                _strip_own_frame(exc)
            raise
        reset(token)
        next(ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        return result

    return wrapper


def _same_name(obj, original) -> None:
    """Give a generator/coroutine object made by a wrapper the original's names (seen in repr and warnings)."""
    try:
        obj.__name__ = original.__name__
        obj.__qualname__ = original.__qualname__
    except Exception:
        pass


def coroutine_wrapper(rec: Recorder, stats: FunctionStats, *, _clock=_clock, _strip_own_frame=_strip_own_frame,
                      _same_name=_same_name, STRIPS_OWN_FRAME=STRIPS_OWN_FRAME, next=next,
                      BaseException=BaseException):
    """Return the wrapper for an ``async def``: timed and caught inside the coroutine.

    The original coroutine is created at call time (so argument errors are
    raised where the call is, as without the wrapper) and awaited inside ours.
    """
    outside = rec.outside
    strip = STRIPS_OWN_FRAME

    async def run(coro, args, kwargs):
        token = outside.set(stats.marker)
        start = _clock.time_ns() if stats.budget > 0 else 0
        try:
            result = await coro
        except BaseException as exc:
            outside.reset(token)
            rec.ended(stats, exc, args, kwargs, start)
            if strip:
                _strip_own_frame(exc)
            raise
        outside.reset(token)
        next(stats.ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        return result

    def wrapper(wrapped, instance, args, kwargs):
        coro = wrapped(*args, **kwargs)
        if stats.off:
            return coro
        outer = run(coro, args, kwargs)
        _same_name(outer, coro)
        return outer

    return wrapper


def generator_wrapper(rec: Recorder, stats: FunctionStats, *, _clock=_clock, _strip_own_frame=_strip_own_frame,
                      _same_name=_same_name, STRIPS_OWN_FRAME=STRIPS_OWN_FRAME, next=next,
                      BaseException=BaseException, StopIteration=StopIteration, GeneratorExit=GeneratorExit):
    """Return the wrapper for a generator function.

    Creating the generator is the usage (counted and sampled then); errors
    raised while it is iterated are recorded; calls the generator body makes
    into the package while it runs are not usages. ``send``, ``throw`` and
    ``close`` are forwarded as ``yield from`` would. A generator closed early by
    its consumer (``GeneratorExit``) is a normal end, not an error.
    """
    outside = rec.outside
    strip = STRIPS_OWN_FRAME

    def drive(gen):
        value = None
        pending = None  # (method, argument) to forward next
        while True:
            token = outside.set(stats.marker)
            try:
                if pending is None:
                    value = next(gen)
                else:
                    method, argument = pending
                    value = method(argument)
            except StopIteration as stop:
                outside.reset(token)
                return stop.value
            except GeneratorExit:
                outside.reset(token)
                raise
            except BaseException as exc:
                outside.reset(token)
                rec.ended(stats, exc, (), {}, 0, count_call=False)
                if strip:
                    _strip_own_frame(exc)
                raise
            outside.reset(token)
            try:
                sent = yield value
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:
                pending = (gen.throw, exc)
            else:
                pending = None if sent is None else (gen.send, sent)

    def wrapper(wrapped, instance, args, kwargs):
        if stats.off:
            return wrapped(*args, **kwargs)
        start = _clock.time_ns() if stats.budget > 0 else 0
        try:
            gen = wrapped(*args, **kwargs)
        except BaseException as exc:
            rec.ended(stats, exc, args, kwargs, start)
            if strip:
                _strip_own_frame(exc)
            raise
        next(stats.ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        outer = drive(gen)
        _same_name(outer, gen)
        return outer

    return wrapper


def asyncgen_wrapper(rec: Recorder, stats: FunctionStats, *, _clock=_clock, _strip_own_frame=_strip_own_frame,
                     _same_name=_same_name, STRIPS_OWN_FRAME=STRIPS_OWN_FRAME, next=next,
                     BaseException=BaseException, StopAsyncIteration=StopAsyncIteration,
                     GeneratorExit=GeneratorExit):
    """Return the wrapper for an async generator function (same rules as generators)."""
    outside = rec.outside
    strip = STRIPS_OWN_FRAME

    async def drive(agen):
        pending = None
        while True:
            token = outside.set(stats.marker)
            try:
                if pending is None:
                    value = await agen.__anext__()
                else:
                    method, argument = pending
                    value = await method(argument)
            except StopAsyncIteration:
                outside.reset(token)
                return
            except GeneratorExit:
                outside.reset(token)
                raise
            except BaseException as exc:
                outside.reset(token)
                rec.ended(stats, exc, (), {}, 0, count_call=False)
                if strip:
                    _strip_own_frame(exc)
                raise
            outside.reset(token)
            try:
                sent = yield value
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as exc:
                pending = (agen.athrow, exc)
            else:
                pending = None if sent is None else (agen.asend, sent)

    def wrapper(wrapped, instance, args, kwargs):
        agen = wrapped(*args, **kwargs)
        if stats.off:
            return agen
        start = _clock.time_ns() if stats.budget > 0 else 0
        next(stats.ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        outer = drive(agen)
        _same_name(outer, agen)
        return outer

    return wrapper


FACTORIES = {
    "coroutine": coroutine_wrapper,
    "generator": generator_wrapper,
    "asyncgen": asyncgen_wrapper,
}


def make(rec: Recorder, stats: FunctionStats, func, call_kind: str):
    """Return the trampoline (a real function, see the module docstring) that counts usages of ``func``.

    ``enabled=rec.outside.get``: wrapt asks it (in C) before every call and
    calls ``func`` directly while a usage of the package is in progress.
    """
    factory = FACTORIES.get(call_kind, sync_wrapper)
    call = wrapt.FunctionWrapper(func, _rehomed(factory(rec, stats), func), enabled=rec.outside.get)
    return trampoline(func, call, call_kind)


# ------------------------------------------------------- frames like the package's
#
# The wrapper (and the coroutine or generator driving the original) is a Python frame between the host's
# call and the package's code. Stack walkers that skip "our own" frames by module (``f_globals["__name__"]``)
# or file (``co_filename``) are often reached through foreign code the call graph cannot follow: a logging
# package's logger calls the standard ``logging`` through a computed getattr, which calls back the
# package's own ``findCaller``; it skips the package's and logging's frames and reported the wrapper
# (``funcName=wrapper``). So these frames carry what the trampoline's carry: the package function's
# globals, file, name and ``def`` line. The factories bind every name they use as a parameter default, so
# the code they make looks up nothing in those globals (tests/reliability/test_foreign_callback.py checks).


def _rehomed(wrapper, func):
    """``wrapper`` (and the functions of ours its closure holds) with the globals, file, name and ``def``
    line of ``func``; the same closure cells otherwise. One ``code.replace`` per function (~13 µs)."""
    try:
        like = func.__code__
        names = dict(co_filename=like.co_filename, co_firstlineno=like.co_firstlineno, co_name=like.co_name)
        if _PY >= (3, 11):
            names["co_qualname"] = like.co_qualname
        return _rehome(wrapper, func.__globals__, names)
    except Exception:
        return wrapper


def _rehome(fn, globals_: dict, names: dict):
    closure = fn.__closure__
    if closure:
        closure = tuple(CellType(_rehome(cell.cell_contents, globals_, names))
                        if _holds_own_function(cell) else cell for cell in closure)
    code = _ONE_LINED.get(fn.__code__)
    if code is None:
        code = _ONE_LINED[fn.__code__] = _one_line(fn.__code__)  # our few codes, once each
    new = FunctionType(code.replace(**names), globals_, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = fn.__kwdefaults__
    return new


def _holds_own_function(cell) -> bool:
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return type(value) is FunctionType and id(value.__code__) in _OWN_IDS


_ONE_LINED: dict = {}


def _codes(code):
    yield code
    for c in code.co_consts:
        if isinstance(c, CodeType):
            yield from _codes(c)


def is_own_code(code) -> bool:
    """True for the code of a wrapper frame (whatever package's globals, file and name it carries).

    By shape (``co_code`` is rebuilt on each read since 3.11: only for error paths)."""
    return (code.co_code, code.co_names) in _OWN_SHAPES


# ------------------------------------------------------------------ trampolines

_CALL = "__usagetrace_call__"  # the trampoline's free variables; no parameter is named so
_STRIP = "__usagetrace_strip__"
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08
_TEMPLATES: dict = {}
_PY = sys.version_info[:2]

_BODIES = {
    "sync": "return {call}",
    "generator": "return (yield from {call})",
    "coroutine": "return await {call}",
    # No `yield from` in an async generator: forward values, asend, athrow and aclose by hand.
    "asyncgen": """__ut_g = {call}
        __ut_op, __ut_arg = __ut_g.__anext__, None
        while True:
            try:
                __ut_v = await (__ut_op() if __ut_arg is None else __ut_op(__ut_arg))
            except StopAsyncIteration:
                return
            try:
                __ut_sent = yield __ut_v
            except GeneratorExit:
                await __ut_g.aclose()
                raise
            except BaseException as __ut_thrown:
                __ut_op, __ut_arg = __ut_g.athrow, __ut_thrown
            else:
                __ut_op, __ut_arg = ((__ut_g.__anext__, None) if __ut_sent is None else (__ut_g.asend, __ut_sent))""",
}


def _template(code, call_kind: str):
    """The trampoline code for one signature shape: positional names are placeholders, renamed per function."""
    n, posonly, nkw = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    kwnames = code.co_varnames[n : n + nkw]  # passed by keyword, so their names are constants: part of the shape
    varargs, varkw = bool(code.co_flags & _CO_VARARGS), bool(code.co_flags & _CO_VARKEYWORDS)
    key = (n, posonly, kwnames, varargs, varkw, call_kind)
    template = _TEMPLATES.get(key)
    if template is not None:
        return template
    params = [f"__ut_p{i}" for i in range(n)]
    signature = []
    for i, name in enumerate(params):
        signature.append(name)
        if posonly and i == posonly - 1:
            signature.append("/")
    if varargs:
        signature.append("*__ut_va")
    elif kwnames:
        signature.append("*")
    signature += kwnames
    if varkw:
        signature.append("**__ut_vk")
    arguments = params + (["*__ut_va"] if varargs else []) + [f"{k}={k}" for k in kwnames] + \
        (["**__ut_vk"] if varkw else [])
    body = [line.strip("\n") for line in _BODIES[call_kind].format(call=f"{_CALL}({', '.join(arguments)})")
            .splitlines()]
    body = [body[0]] + [line[8:] for line in body[1:]]  # the continuation lines are written indented by 8
    body = ["try:"] + ["    " + line for line in body] + ["except BaseException:", f"    {_STRIP}()", "    raise"]
    prefix = "async def" if call_kind in ("coroutine", "asyncgen") else "def"
    source = (f"def __ut_factory({_CALL}, {_STRIP}):\n    {prefix} f({', '.join(signature)}):\n"
              + "".join(f"        {line}\n" for line in body) + "    return f\n")
    namespace: dict = {}
    exec(compile(source, "<usagetrace trampoline>", "exec"), namespace)
    template = next(c for c in namespace["__ut_factory"].__code__.co_consts if isinstance(c, CodeType))
    _TEMPLATES[key] = template
    return template


def _one_line(code):
    """Put every instruction of a trampoline on its ``def`` line (coverage and tracebacks see that line only)."""
    units = len(code.co_code) // 2
    try:
        if _PY >= (3, 11):
            table = bytearray()
            while units > 0:
                chunk = min(units, 8)
                table += bytes((0x80 | (13 << 3) | (chunk - 1), 0))  # "no column" entry, line delta 0
                units -= chunk
            return code.replace(co_linetable=bytes(table))
        if _PY == (3, 10):
            size, table = len(code.co_code), bytearray()
            while size > 0:
                chunk = min(size, 254)
                table += bytes((chunk, 0))
                size -= chunk
            return code.replace(co_linetable=bytes(table))
        return code.replace(co_lnotab=b"")
    except Exception:
        return code


def trampoline(func, call, call_kind: str = "sync") -> FunctionType:
    """A real function with ``func``'s signature and identity-bearing attributes that calls ``call``."""
    code = func.__code__
    template = _template(code, call_kind)
    own = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & _CO_VARARGS) + \
        bool(code.co_flags & _CO_VARKEYWORDS)
    names = dict(co_varnames=code.co_varnames[:own] + template.co_varnames[own:], co_name=code.co_name,
                 co_filename=code.co_filename, co_firstlineno=code.co_firstlineno)
    if _PY >= (3, 11):
        names["co_qualname"] = code.co_qualname
    new = _one_line(template.replace(**names))
    cells = {_CALL: call, _STRIP: _strip_own_frame}
    result = FunctionType(new, func.__globals__, func.__name__, func.__defaults__,
                          tuple(CellType(cells[name]) for name in new.co_freevars))
    result.__kwdefaults__ = func.__kwdefaults__
    result.__dict__ = func.__dict__  # the same attributes, both ways (no __wrapped__ of our own)
    for attr in ("__qualname__", "__module__", "__doc__", "__annotations__", "__type_params__"):
        try:
            setattr(result, attr, getattr(func, attr))
        except (AttributeError, TypeError):
            pass
    return result


def is_trampoline(obj) -> bool:
    """True for a function made by :func:`trampoline` (of any package)."""
    if type(obj) is not FunctionType:
        return False
    return _CALL in obj.__code__.co_freevars


def original_of(obj):
    """The function a trampoline stands for, or None."""
    if not is_trampoline(obj):
        return None
    try:
        return obj.__closure__[obj.__code__.co_freevars.index(_CALL)].cell_contents.__wrapped__
    except Exception:
        return None


def pass_through(obj, stats: FunctionStats) -> bool:
    """Make the trampoline ``obj`` pass every call straight through for good, ``stats`` left free to count
    the function by other means (sys.monitoring); False (nothing changed) when ``obj`` is not ours.

    The wrapper's ``stats`` cell (shared by the functions it made, rehomed or not) gets an idle copy: the
    wrapper keeps its frames, identity and code, so the host sees exactly what it saw when the calls
    were only passed through; the copy is off for good (``exempt``), so ``stats`` is counted once.
    It shares the counters and the usage marker of ``stats``: a call already past the wrapper's ``off``
    check on another thread reads the cell again later, and still adds to the same exact counts.
    """
    try:
        call = obj.__closure__[obj.__code__.co_freevars.index(_CALL)].cell_contents
        cells = []
        for cell in call._self_wrapper.__closure__ or ():
            try:
                if cell.cell_contents is stats:
                    cells.append(cell)
            except ValueError:  # an empty cell
                continue
        if not cells:
            return False
        idle = FunctionStats.__new__(FunctionStats)
        for slot in FunctionStats.__slots__:
            setattr(idle, slot, getattr(stats, slot))
        idle.exempt = True
        for cell in cells:
            cell.cell_contents = idle
        return True
    except Exception:
        return False


def rewrap_descriptor(descriptor, wrapper):
    """Return a new ``staticmethod``/``classmethod`` like ``descriptor`` but around ``wrapper``."""
    new = type(descriptor)(wrapper)
    try:
        extra = {k: v for k, v in vars(descriptor).items() if k != "__wrapped__"}
        if extra:
            vars(new).update(extra)
    except TypeError:  # no __dict__ before 3.10
        pass
    return new


_OWN_CODES = tuple(c for factory in (sync_wrapper, *FACTORIES.values()) for c in _codes(factory.__code__))
_OWN_IDS = frozenset(id(c) for c in _OWN_CODES)
_OWN_SHAPES = frozenset((c.co_code, c.co_names) for c in _OWN_CODES)
