"""The wrapt wrappers that turn calls into usages, built to be invisible to the host.

Every wrapper has the shape ``(wrapped, instance, args, kwargs)``. wrapt's C
``FunctionWrapper`` first calls the package's ``outside`` context variable
getter (its ``enabled`` argument, a C method): inside a usage of the package
(same thread or task) it is False and wrapt calls the original directly, so a
call the package makes into itself costs one C call and adds **no frame**:
recursion through the public API is exactly as deep as without usagetrace.
Otherwise the Python wrapper runs: it counts the usage, times it when it is
sampled, and marks the package as inside a usage while the call runs.

What the host can observe is kept identical wherever a proxy allows:

* ``repr()``, ``copy.copy()``/``deepcopy()`` (functions are atomic), pickling
  by reference, ``hash``/``==``, every attribute (proxied by wrapt);
* descriptor behaviour of a plain function: ``Cls.method`` is the same object
  every time and ``obj.method`` is a real :class:`types.MethodType` whose
  ``__func__`` is ``Cls.method``; class and static methods are re-created as
  real ``classmethod``/``staticmethod`` objects around the wrapper;
* tracebacks (Python 3.11+): the wrapper's own frame is removed from an
  exception's traceback before it is re-raised, so the host sees the frames it
  would see without usagetrace;
* generator, coroutine and async generator objects carry the original's
  ``__name__`` and ``__qualname__``; argument errors of an ``async def`` are
  raised at call time, as without the wrapper.

What a proxy cannot hide (``type(f) is FunctionType``, ``f is original`` for a
reference taken before wrapping, one extra frame seen by code that inspects
the stack) is found before wrapping by :mod:`.hazards`, and such callables are
left unwrapped.

A usagetrace error never reaches the caller: the recording steps sit outside
the ``try`` around the wrapped call, and each catches its own errors. The
wrapped call's return value and exception object pass through unchanged.
"""

from __future__ import annotations

import sys
import time
from types import MethodType

import wrapt

from .recorder import FunctionStats, Recorder

_time_ns = time.time_ns

#: pytest hides frames of modules that set this from its failure reports.
__tracebackhide__ = True

#: Since 3.11 a bare ``raise`` re-raises with the exception's ``__traceback__``,
#: so the wrapper can take its own frame out; before, it cannot.
STRIPS_OWN_FRAME = sys.version_info >= (3, 11)


def _strip_own_frame(exc: BaseException) -> None:
    """Drop the innermost-caller entry (the wrapper's frame) from ``exc``'s traceback."""
    try:
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame is sys._getframe(1):
            exc.__traceback__ = tb.tb_next
    except Exception:
        pass


class UsageWrapper(wrapt.FunctionWrapper):
    """A wrapt function wrapper that behaves like the plain function it wraps."""

    def __get__(self, instance, owner=None):
        # A function in a class: the class attribute is the function itself, an
        # instance attribute a real bound method. (wrapt would build a proxy each time.)
        if instance is None:
            return self
        return MethodType(self, instance)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __copy__(self):
        return self  # copy.copy() and deepcopy() return functions themselves

    def __deepcopy__(self, memo):
        return self

    def __reduce_ex__(self, protocol):
        # pickle looks the name up on ``__module__`` (proxied from the wrapped
        # function) and checks identity; the defining module holds this wrapper.
        return self.__qualname__

    def __reduce__(self):
        return self.__qualname__


def sync_wrapper(rec: Recorder, stats: FunctionStats):
    """Return the wrapper for a plain function, method or constructor."""
    set_, reset, marker, ok = rec.outside.set, rec.outside.reset, stats.marker, stats.ok
    strip = STRIPS_OWN_FRAME

    def wrapper(wrapped, instance, args, kwargs):
        if stats.off:  # consent withdrawn, or a CLI command function: straight through
            return wrapped(*args, **kwargs)
        token = set_(marker)
        start = _time_ns() if stats.budget > 0 else 0
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


def coroutine_wrapper(rec: Recorder, stats: FunctionStats):
    """Return the wrapper for an ``async def``: timed and caught inside the coroutine.

    The original coroutine is created at call time (so argument errors are
    raised where the call is, as without the wrapper) and awaited inside ours.
    """
    outside = rec.outside
    strip = STRIPS_OWN_FRAME

    async def run(coro, args, kwargs):
        token = outside.set(stats.marker)
        start = _time_ns() if stats.budget > 0 else 0
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


def generator_wrapper(rec: Recorder, stats: FunctionStats):
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
        start = _time_ns() if stats.budget > 0 else 0
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


def asyncgen_wrapper(rec: Recorder, stats: FunctionStats):
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
        start = _time_ns() if stats.budget > 0 else 0
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


def make(rec: Recorder, stats: FunctionStats, func, call_kind: str) -> UsageWrapper:
    """Return a :class:`UsageWrapper` around the plain function ``func``.

    ``enabled=rec.outside.get``: wrapt asks it (in C) before every call and
    calls ``func`` directly, with no wrapper frame, while a usage of the
    package is in progress.
    """
    factory = FACTORIES.get(call_kind, sync_wrapper)
    return UsageWrapper(func, factory(rec, stats), enabled=rec.outside.get)


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
