"""The wrapt wrappers that turn calls into usages.

Every wrapper has the shape ``(wrapped, instance, args, kwargs)`` and the same
three paths, cheapest first:

1. telemetry withdrawn, or a call the package makes into itself while a usage
   is in progress (same thread or task): call straight through;
2. a usage that is not sampled: count it and call through;
3. a sampled usage: time it and queue a sample.

A usagetrace error never reaches the caller: the recording steps sit outside
the ``try`` around the wrapped call, and each catches its own errors. The
wrapped call's return value and exception object pass through unchanged.
"""

from __future__ import annotations

import time

import wrapt

from .recorder import FunctionStats, Recorder

_time_ns = time.time_ns


class UsageWrapper(wrapt.FunctionWrapper):
    """A wrapt function wrapper that pickles by reference, like the function it wraps."""

    __bound_function_wrapper__: type  # set below

    def __reduce_ex__(self, protocol):
        # pickle looks the name up on ``__module__`` (proxied from the wrapped
        # function) and checks identity; the defining module holds this wrapper.
        return self.__qualname__

    def __reduce__(self):
        return self.__qualname__


class BoundUsageWrapper(wrapt.BoundFunctionWrapper):
    """The bound form of :class:`UsageWrapper`; pickles like a bound method."""

    def __reduce_ex__(self, protocol):
        target = self._self_instance if self._self_instance is not None else self._self_owner
        return (getattr, (target, self.__name__))

    def __reduce__(self):
        return self.__reduce_ex__(2)


UsageWrapper.__bound_function_wrapper__ = BoundUsageWrapper


def sync_wrapper(rec: Recorder, stats: FunctionStats):
    """Return the wrapper for a plain function, method or constructor."""
    get, set_, reset = rec.active.get, rec.active.set, rec.active.reset

    def wrapper(wrapped, instance, args, kwargs):
        if not rec.enabled or get():
            return wrapped(*args, **kwargs)
        if stats.budget > 0:
            return _sampled_call(rec, stats, wrapped, args, kwargs)
        token = set_(True)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            reset(token)
            rec.failed(stats, exc, args, kwargs, 0)
            raise
        reset(token)
        next(stats.ok)
        return result

    return wrapper


def _sampled_call(rec: Recorder, stats: FunctionStats, wrapped, args, kwargs):
    token = rec.active.set(True)
    start = _time_ns()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        rec.active.reset(token)
        rec.failed(stats, exc, args, kwargs, start)
        raise
    rec.active.reset(token)
    next(stats.ok)
    rec.sampled(stats, args, kwargs, start)
    return result


def coroutine_wrapper(rec: Recorder, stats: FunctionStats):
    """Return the wrapper for an ``async def``: timed and caught inside the coroutine."""

    async def run(wrapped, args, kwargs):
        active = rec.active
        if not rec.enabled or active.get():
            return await wrapped(*args, **kwargs)
        token = active.set(True)
        start = _time_ns() if stats.budget > 0 else 0
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            active.reset(token)
            rec.failed(stats, exc, args, kwargs, start)
            raise
        active.reset(token)
        next(stats.ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        return result

    def wrapper(wrapped, instance, args, kwargs):
        return run(wrapped, args, kwargs)

    return wrapper


def generator_wrapper(rec: Recorder, stats: FunctionStats):
    """Return the wrapper for a generator function.

    Creating the generator is the usage (counted and sampled then); errors
    raised while it is iterated are recorded; calls the generator body makes
    into the package while it runs are not usages. ``send``, ``throw`` and
    ``close`` are forwarded as ``yield from`` would.
    """

    def drive(gen):
        active = rec.active
        value = None
        pending = None  # (method, argument) to forward next
        while True:
            token = active.set(True)
            try:
                if pending is None:
                    value = next(gen)
                else:
                    method, argument = pending
                    value = method(argument)
            except StopIteration as stop:
                active.reset(token)
                return stop.value
            except GeneratorExit:
                active.reset(token)
                raise
            except BaseException as exc:
                active.reset(token)
                rec.failed(stats, exc, (), {}, 0, count_call=False)
                raise
            active.reset(token)
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
        if not rec.enabled or rec.active.get():
            return wrapped(*args, **kwargs)
        start = _time_ns() if stats.budget > 0 else 0
        try:
            gen = wrapped(*args, **kwargs)
        except BaseException as exc:
            rec.failed(stats, exc, args, kwargs, start)
            raise
        next(stats.ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        return drive(gen)

    return wrapper


def asyncgen_wrapper(rec: Recorder, stats: FunctionStats):
    """Return the wrapper for an async generator function (same rules as generators)."""

    async def drive(agen):
        active = rec.active
        pending = None
        while True:
            token = active.set(True)
            try:
                if pending is None:
                    value = await agen.__anext__()
                else:
                    method, argument = pending
                    value = await method(argument)
            except StopAsyncIteration:
                active.reset(token)
                return
            except GeneratorExit:
                active.reset(token)
                raise
            except BaseException as exc:
                active.reset(token)
                rec.failed(stats, exc, (), {}, 0, count_call=False)
                raise
            active.reset(token)
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
        if not rec.enabled or rec.active.get():
            return wrapped(*args, **kwargs)
        start = _time_ns() if stats.budget > 0 else 0
        agen = wrapped(*args, **kwargs)
        next(stats.ok)
        if start:
            rec.sampled(stats, args, kwargs, start)
        return drive(agen)

    return wrapper


FACTORIES = {
    "coroutine": coroutine_wrapper,
    "generator": generator_wrapper,
    "asyncgen": asyncgen_wrapper,
}


def make(rec: Recorder, stats: FunctionStats, target, call_kind: str) -> UsageWrapper:
    """Return a :class:`UsageWrapper` around ``target`` (a function or a class-level descriptor)."""
    factory = FACTORIES.get(call_kind, sync_wrapper)
    return UsageWrapper(target, factory(rec, stats))
