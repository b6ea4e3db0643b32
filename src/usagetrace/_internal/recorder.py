"""Collection: what the wrappers record, kept apart from delivery.

Everything the hot path touches lives here and is built for it: exact call
counts are ``itertools.count`` objects (``next()`` is atomic under the GIL and
costs tens of nanoseconds, where the SDK's ``Counter.add`` costs microseconds),
and a span is only *sampled* here as a small tuple; the OpenTelemetry SDK turns
samples into spans later, off the caller's thread (``pipeline.py``).

Data volume per process is bounded: each function may emit ``span_budget``
spans of successful calls and ``error_budget`` spans of failed calls per
minute, and the queue of samples holds at most ``max_queue`` items. Counts are
never sampled.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque, namedtuple
from contextvars import ContextVar

from . import clock, log, sanitize

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

DEFAULT_SPAN_BUDGET = 5  # successful-call spans per function per minute
DEFAULT_ERROR_BUDGET = 50  # failed-call spans per function per minute
DEFAULT_MAX_QUEUE = 2048  # samples waiting for delivery, per package
DROP_REASONS = ("queue_full", "export_failed", "spool_full", "consent_withdrawn")

#: ``usagetrace.outcome`` of a usage. A call that ends with ``SystemExit(0)``
#: or ``SystemExit(None)`` succeeded (click ends every successful run so); one
#: stopped by the person or its caller (``KeyboardInterrupt``, a cancelled
#: asyncio task, a generator closed early) is ``interrupted``: not a failure
#: of the package, so it never counts as an error.
OK, ERROR, INTERRUPTED = "ok", "error", "interrupted"
OUTCOMES = (OK, ERROR, INTERRUPTED)
_INTERRUPTS = (KeyboardInterrupt, GeneratorExit)


def outcome_of(exc: BaseException) -> str:
    """Return the outcome of a usage that ended by raising ``exc`` (the one rule for every wrapper and integration)."""
    if isinstance(exc, SystemExit):
        return OK if exc.code is None or exc.code == 0 else ERROR
    if isinstance(exc, _INTERRUPTS) or type(exc).__name__ == "CancelledError":
        # asyncio.CancelledError (and concurrent.futures') by name: importing asyncio costs ~30 ms.
        return INTERRUPTED
    return ERROR


def count_value(counter: itertools.count) -> int:
    """Return the next value an ``itertools.count`` would produce, without consuming it."""
    text = repr(counter)  # "count(42)"
    return int(text[6:-1])


#: One span to be: name, wall-clock start and end (ns), attributes, error (type name, frames,
#: signature) or None. collections.namedtuple, not typing.NamedTuple: typing costs a consented
#: import ~4 ms.
Sample = namedtuple("Sample", "name start_ns end_ns attributes error")


class _Usage(list):
    """The value of a package's ``outside`` variable while a usage of one function is in progress.

    Empty, so false for wrapt's ``enabled`` check (a C length test, no Python
    call); it names the function, so a CLI integration can tell that the usage
    in progress is a launcher of its commands.
    """

    __slots__ = ("stats",)


class FunctionStats:
    """Exact counters and sampling budget for one public callable."""

    __slots__ = ("name", "module", "kind", "ok", "err", "interrupted", "budget", "error_budget", "_exempt",
                 "launcher", "marker", "off", "required", "optional", "kwoptional", "kwonly", "params", "skip")

    def __init__(self, name: str, module: str, kind: str, budget: int, error_budget: int) -> None:
        self.name = name
        self.module = module
        self.kind = kind
        self.ok = itertools.count()
        self.err = itertools.count()
        self.interrupted = itertools.count()
        self.budget = budget
        self.error_budget = error_budget
        self._exempt = False
        #: What the wrapper reads first, on every call: True while calls must pass
        #: straight through (consent withdrawn, or :attr:`exempt`). One slot read.
        self.off = True
        #: True for a function seen launching a CLI command (``main()`` calling
        #: ``cli()``): the integration records the command; it is not a usage.
        self.launcher = False
        self.marker = _Usage()
        self.marker.stats = self
        #: The original's parameters, precomputed once (see ``signature_from`` and ``call_attributes``).
        self.required, self.optional, self.kwoptional, self.kwonly, self.params, self.skip = 0, (), (), frozenset(), 0, 0

    def signature_from(self, func, bound: bool) -> None:
        """Remember what ``call_attributes`` needs of ``func``; ``bound``: its first argument is self or cls.

        Precomputed at wrap time so a sampled call only compares objects:
        ``required``: how many positional parameters have no default, ``optional``
        ``(index, name, default)`` of positional parameters with a default,
        ``kwoptional`` ``(name, default)`` of keyword-only ones, and the names
        of all keyword-only parameters (any other keyword is a ``**kwargs`` extra).
        """
        code = getattr(func, "__code__", None)
        if code is None:
            return
        n, nkw = code.co_argcount, code.co_kwonlyargcount
        names = code.co_varnames[:n]
        defaults = getattr(func, "__defaults__", None) or ()
        kwdefaults = getattr(func, "__kwdefaults__", None) or {}
        first = n - len(defaults)
        self.skip = 1 if bound and n else 0
        self.params = n
        self.required = max(first, 0)
        self.optional = tuple((i, names[i], defaults[i - first]) for i in range(max(first, 0), n))
        self.kwonly = frozenset(code.co_varnames[n : n + nkw])
        self.kwoptional = tuple((k, kwdefaults[k]) for k in code.co_varnames[n : n + nkw] if k in kwdefaults)

    @property
    def exempt(self) -> bool:
        """True once calls must pass straight through for good (a command function of a CLI
        integration; code found hazardous after wrapping)."""
        return self._exempt

    @exempt.setter
    def exempt(self, value: bool) -> None:
        self._exempt = bool(value)
        if value:
            self.off = True


class Recorder:
    """Per-package collection state shared by all of that package's wrappers."""

    def __init__(
        self,
        package: str,
        *,
        span_budget: int = DEFAULT_SPAN_BUDGET,
        error_budget: int = DEFAULT_ERROR_BUDGET,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.package = package
        self._enabled = False
        #: True outside any usage of this package in this thread/task; while one
        #: is in progress, that function's (falsy) ``marker``. Its C ``get`` is
        #: wrapt's ``enabled`` check: inside a usage, wrapt calls the original
        #: directly and no wrapper frame is added.
        self.outside: ContextVar[bool] = ContextVar(f"usagetrace.outside.{package}", default=True)
        self.span_budget = span_budget
        self.error_budget = error_budget
        self.max_queue = max_queue
        self.functions: dict[str, FunctionStats] = {}
        self.samples: deque[Sample] = deque()
        self.dropped = {reason: itertools.count() for reason in DROP_REASONS}
        self.errors: dict[tuple[str, str], itertools.count] = {}
        self._lock = threading.Lock()
        #: Called (once) when the first sample is queued; starts delivery.
        self.on_first_sample = None
        #: Called with the new value whenever ``enabled`` is set (monitoring events follow consent).
        self.on_enabled = None

    @property
    def enabled(self) -> bool:
        """True while usages are recorded; flipped by the consent refresher."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        for stats in list(self.functions.values()):
            stats.off = not self._enabled or stats.exempt
        hook = self.on_enabled
        if hook is not None:
            try:
                hook(self._enabled)
            except Exception:
                log.internal_error("recorder.on_enabled")

    # -- registration -------------------------------------------------------
    def function(self, name: str, module: str, kind: str) -> FunctionStats:
        """Return the stats object for a callable, creating it once."""
        stats = self.functions.get(name)
        if stats is None:
            stats = self.functions[name] = FunctionStats(name, module, kind, self.span_budget, self.error_budget)
            stats.off = not self._enabled
        return stats

    def reset_budgets(self) -> None:
        """Start a new sampling window (called once a minute by the delivery thread)."""
        for stats in list(self.functions.values()):
            stats.budget = self.span_budget
            stats.error_budget = self.error_budget

    # -- recording ------------------------------------------------------------
    def queue(self, sample: Sample) -> None:
        """Queue a sample for delivery, or count it as dropped when the queue is full."""
        if len(self.samples) >= self.max_queue:
            next(self.dropped["queue_full"])
            return
        self.samples.append(sample)
        start = self.on_first_sample
        if start is not None:
            self.on_first_sample = None
            try:
                start()
            except Exception:
                log.internal_error("recorder.start_delivery")

    def call_attributes(self, stats: FunctionStats, args: tuple, kwargs: dict) -> dict:
        """Return a usage span's attributes: the package's own names and counts, never a caller's string.

        The trampoline binds the call as the original would and passes every
        positional parameter by position, every keyword-only one by keyword,
        then the ``*args`` and ``**kwargs`` extras. So after binding, whether a
        caller wrote ``f("x", ";")`` or ``f("x", sep=";")`` is the same thing:

        * ``usagetrace.params.set``: sorted names of declared parameters with a
          default that hold another object than that default (identity);
        * ``usagetrace.args.count``: positional parameters given a value (required
          ones, and optional ones not holding their default) plus ``*args`` extras,
          self/cls left out;
        * ``usagetrace.kwargs.extra``: how many ``**kwargs`` entries (their keys are
          the caller's data and are never sent).

        ``args`` None: a monitored call (see monitor.py), whose arguments are not
        seen, so nothing is said about them.
        """
        if args is None:
            return {"code.function.name": stats.name, "usagetrace.module": stats.module,
                    "usagetrace.callable.kind": stats.kind}
        n = len(args)  # 0 for an error raised while a generator is iterated: its arguments are gone
        given = max(min(n, stats.required) - stats.skip, 0)
        names = []
        for i, name, default in stats.optional:
            if i < n and args[i] is not default:
                names.append(name)
        given += len(names) + max(n - stats.params, 0)
        extra = 0
        if kwargs:
            for name, default in stats.kwoptional:
                if kwargs.get(name, default) is not default:
                    names.append(name)
            extra = len(kwargs.keys() - stats.kwonly)
        names.sort()
        return {
            "code.function.name": stats.name,
            "usagetrace.module": stats.module,
            "usagetrace.callable.kind": stats.kind,
            "usagetrace.args.count": given,
            "usagetrace.params.set": names,
            "usagetrace.kwargs.extra": extra,
        }

    def sampled(self, stats: FunctionStats, args: tuple, kwargs: dict, start_ns: int) -> None:
        """Record a successful sampled usage that started at ``start_ns``."""
        try:
            end = _clock.time_ns()
            stats.budget -= 1
            self.queue(Sample(stats.name, start_ns, end, self.call_attributes(stats, args, kwargs), None))
        except Exception:
            log.internal_error("recorder.sampled")

    def ended(
        self,
        stats: FunctionStats,
        exc: BaseException,
        args: tuple,
        kwargs: dict,
        start_ns: int,
        count_call: bool = True,
    ) -> None:
        """Record a usage that ended by raising ``exc``, by its :func:`outcome_of`.

        ``count_call=False`` is for exceptions raised while a generator is
        iterated: its call was already counted when it was created, so only a
        failure (an error count and span) is recorded then.
        """
        try:
            outcome = outcome_of(exc)
            if outcome != ERROR:
                if count_call:
                    next(stats.ok if outcome == OK else stats.interrupted)
                    if outcome == OK and start_ns:
                        self.sampled(stats, args, kwargs, start_ns)
                return
        except Exception:
            log.internal_error("recorder.ended")
            return
        self.failed(stats, exc, args, kwargs, start_ns, count_call)

    def failed(
        self,
        stats: FunctionStats,
        exc: BaseException,
        args: tuple,
        kwargs: dict,
        start_ns: int,
        count_call: bool = True,
    ) -> None:
        """Record a failed usage: exact counts always, a span while the error budget lasts."""
        end = _clock.time_ns()
        try:
            if count_call:
                next(stats.err)
            type_name = sanitize.type_name(type(exc), self.package)
            key = (stats.name, type_name)
            counter = self.errors.get(key)
            if counter is None:
                with self._lock:
                    counter = self.errors.setdefault(key, itertools.count())
            next(counter)
            if stats.error_budget <= 0:
                return
            stats.error_budget -= 1
            frames = sanitize.frames(exc.__traceback__, self.package)
            error = (type_name, frames, sanitize.signature(type_name, frames))
            self.queue(Sample(stats.name, start_ns or end, end, self.call_attributes(stats, args, kwargs), error))
        except Exception:
            log.internal_error("recorder.failed")

    # -- reading --------------------------------------------------------------
    def counts(self) -> dict:
        """Return cumulative counts: {("calls", fn, outcome) | ("errors", fn, type) | ("dropped", reason): n}."""
        out = {}
        for stats in list(self.functions.values()):
            if stats.launcher:
                continue
            for outcome, counter in ((OK, stats.ok), (ERROR, stats.err), (INTERRUPTED, stats.interrupted)):
                value = count_value(counter)
                if value:
                    out[("calls", stats.name, outcome)] = value
        for (name, type_name), counter in list(self.errors.items()):
            out[("errors", name, type_name)] = count_value(counter)
        for reason, counter in self.dropped.items():
            value = count_value(counter)
            if value:
                out[("dropped", reason)] = value
        return out

    def drain(self, limit: int | None = None) -> list[Sample]:
        """Remove and return queued samples (thread-safe against concurrent appends)."""
        out = []
        popleft = self.samples.popleft
        n = len(self.samples) if limit is None else min(limit, len(self.samples))
        for _ in range(n):
            try:
                out.append(popleft())
            except IndexError:
                break
        return out
