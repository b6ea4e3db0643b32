"""Counting without a wrapper: ``sys.monitoring`` (PEP 669) events on the package's own code (3.12+).

A public callable that a wrapper would change (it looks up the stack, it is
held somewhere besides the namespaces usagetrace rewrites, it recurses, it is
reached through an instance or a dispatch object) is left exactly as it is:
the same object, the same code, no extra frame. Instead its code object gets
*local* events on usagetrace's own monitoring tool id:

* ``PY_START`` (and, for generators and coroutines, ``PY_RESUME``) begins a
  usage when none of the package is in progress in this thread or task: the
  same ``outside`` context variable the wrappers use, so a call the package
  makes into itself (recursion, a foreign callback back into the package, a
  wrapped function calling a monitored one or the reverse) is an inner call,
  not a usage. The usage is remembered in that variable, with the frame it
  started in, so only the outermost frame ends it.
* ``PY_RETURN`` (``PY_YIELD`` for a suspension) ends it: ``ok``.
* An exception leaving the frame gives no local event (``PY_UNWIND`` and
  ``PY_THROW`` can only be set for the whole process). They are set
  process-wide while anything is monitored: the callback costs a dictionary
  lookup per frame an exception leaves, and nothing when no exception is
  raised (measured in BENCHMARKS.md). Setting them only while a monitored
  call runs would re-instrument every code object on each toggle.
  The outcome is :func:`.recorder.outcome_of` of the exception, as for
  wrapped calls.

Functions that share one code object (made by a factory or a decorator of the package: pyparsing's
camelCase synonyms, a ``@deprecated`` decorator's inner function) are told apart by their closure, on
3.13+ only: their code gets the events once, and ``PY_START`` reads the starting frame's free variables
through its locals proxy (PEP 667: a read that changes nothing, no frame added): the first cell holding
a function or a class is looked up among the public callables registered for that code, and the other
cells are compared by identity (:func:`closure_key`). ``COPY_FREE_VARS`` runs before ``RESUME``, where
``PY_START`` fires, so the cells are there. A function on that code that is no public callable (the
decorator used on private code or by the host) matches none: not counted. On 3.12 ``f_locals`` is a
dict built by copying every local into it (``PyFrame_FastToLocals``) and kept on the frame, which would
keep the arguments alive until the frame ends (observable through weak references): not used there.

Methods on one code object whose closures say nothing (aiostream's operators: a class made by a factory
for each operator, its ``__call__`` shared by all of them) are told apart, on 3.13+ too, by the class of
their first argument (:func:`class_key`): ``type(self)`` (``cls`` itself for a class method) is compared
by identity with the classes the package defines publicly, read through the same locals proxy at the
same point. That is the information a bound-method lookup (or wrapt's ``instance``) already has, not the
host's data: the argument itself is never recorded, formatted, hashed or kept, only ``type()`` of it
(which runs no code of the host's, unlike ``__class__``) is looked up by ``id`` among classes usagetrace
holds. A subclass the host makes is another class: its calls are not counted (identity, not
``issubclass``: a host's subclass may override what the operator does, so its call is not the package's
operator; uncounted, never counted for the wrong name).

Counts and sampled spans go through the same :class:`.recorder.Recorder`
path as wrapped calls. A monitored span carries no argument facts (a wrapper
sees the call's arguments; an event does not, and reading the frame's locals
is the host's business), so those attributes are left out rather than guessed.

The tool id: 0, 1, 2 and 5 are the debugger's, coverage's, the profiler's and
the optimizer's by convention; usagetrace takes 3, else 4, only while it
monitors something, and frees it when nothing is left (``uninstrument()``,
consent withdrawn). When both are taken the callables stay uncounted and say
so. ``sys.settrace``/``setprofile`` and other tools are independent of it.
"""

from __future__ import annotations

import sys
import threading
from types import FunctionType, MethodType

from . import clock, log
from .recorder import _Usage

AVAILABLE = sys.version_info >= (3, 12) and hasattr(sys, "monitoring")
TOOL_IDS = (3, 4)
TOOL_NAME = "usagetrace"

REASON_OLD_PYTHON = "; counting it without a wrapper needs Python 3.12+ (sys.monitoring)"
REASON_NO_TOOL = ("; no free sys.monitoring tool id (3 and 4 are taken by other tools), so it is not counted "
                  "without a wrapper either")
REASON_SHARED = ("; its code is not the package's own or is shared by other functions (made by a factory, "
                 "a decorator from elsewhere): monitoring it would count calls of other functions")
REASON_TAKEN = "; its code is already monitored as {other}"
REASON_CLOSURE_OLD = ("; its code is shared with other functions (made by a factory or a decorator of the "
                      "package); telling them apart by their closure at each call needs Python 3.13+ (PEP 667 "
                      "frame locals)")
REASON_CLASS_OLD = ("; its code is shared with other classes' methods (classes made by a factory of the "
                    "package); telling them apart by the class of the first argument at each call needs Python "
                    "3.13+ (PEP 667 frame locals)")
REASON_CLOSURE_OTHER = ("; its code is shared with {other}, told apart by another closure cell ({var!r}): "
                        "one read per call cannot tell both")
#: Functions on one code object told apart by a closure cell read at PY_START: 3.13+ (module docstring).
CLOSURES = AVAILABLE and sys.version_info >= (3, 13)

#: How the probed variable of shared code is looked up at each call: its value (a closure cell), the type
#: of its value (``self``), or its value as a class (``cls`` of a class method).
BY_CELL, BY_TYPE, BY_CLASS = 0, 1, 2

_CO_NESTED, _CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x10, 0x20, 0x80, 0x200
_SUSPENDING = _CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR

_clock = clock.REAL
_getframe = sys._getframe
_lock = threading.RLock()
_tool: int | None = None
#: id(code) -> (code, recorder, stats, how): every code object with events on. ``how``: 0 plain
#: function, 1 generator or async generator (the usage is counted when it first runs), 2 coroutine
#: (counted when it ends, like an awaited wrapped coroutine). For code shared by several public
#: callables: (code, recorder, None, how, variable name, {id(its value): [(stats, names, values)]}, by):
#: :func:`closure_key`'s or :func:`class_key`'s (``by``: how the variable's value is looked up, see
#: :data:`BY_CELL`); the values are held, so their ids stay theirs.
_codes: dict[int, tuple] = {}
#: id(frame) of a coroutine usage that is suspended -> its marker (resumed: active again; dropped when it
#: returns or an exception, GeneratorExit from close() included, leaves it).
_suspended: dict[int, object] = {}
#: Bumped whenever events are turned off: a usage marked before then may never see its end event (a call
#: running on another thread while consent is withdrawn), so a later start does not take it for a usage
#: still in progress.
_epoch = 0


class _Active(_Usage):
    """A monitored usage in progress: the value of the package's ``outside`` variable while it runs.

    Falsy like every usage marker (wrapt's ``enabled`` check, inner calls),
    with the function's stats, the id of the frame that started it (only that
    frame ends it) and the context-variable token to restore.
    """

    __slots__ = ("frame", "token", "start", "how", "epoch")


def tool_id() -> int | None:
    """The sys.monitoring tool id usagetrace holds now, or None."""
    return _tool


def is_own(func, package: str) -> bool:
    """True when ``func``'s code belongs to it alone: defined by the package, not nested in a factory.

    A closure means a factory shares the code, except a ``__class__`` cell alone in code that is not
    nested: a method of a class defined outside any function (a class made inside a factory function
    has nested code, one code object for every class the factory makes).
    """
    try:
        code = func.__code__
        name = func.__globals__.get("__name__")
        if not (isinstance(name, str) and (name == package or name.startswith(package + "."))):
            return False  # functools.wraps copies __module__; the code is the decorator library's
        if code.co_flags & _CO_NESTED:
            return False  # made inside a function: each run of it makes one more function on this code
        # Zero-argument super() (or __class__) gives a method its class in a closure cell. Outside a
        # function the class body runs once, so that code is still this one method's: not shared.
        return func.__closure__ is None or code.co_freevars == ("__class__",)
    except Exception:
        return False


def closure_key(func, package: str) -> tuple | None:
    """What tells ``func`` apart from the other functions on its code, or None:
    ``(name, value, names, values, id(func), BY_CELL)``.

    Only for the package's own code (its globals are the package's) with a closure, on 3.13+. ``name``
    and ``value``: the first cell that holds a function, a method or a class (what a factory or a
    decorator closes over: the function it wraps or stands for), else another object that is no plain
    value (a number, a string: equal ones are often one object), the one looked up at each call;
    ``names`` and ``values``: every cell the code does not rebind itself, all compared at each call
    whose ``value`` matches, so two functions that differ in any other cell (the same function
    deprecated with two messages; the host's own function made by the package's decorator) are never
    taken for each other. A cell rebound from elsewhere after this (a sibling closure's ``nonlocal``)
    makes that function's calls uncounted, never miscounted. Two different functions whose compared
    cells hold the same objects cannot be told apart at all (the instrumentation counts neither).
    """
    return _closure_key(func, package) if CLOSURES else None


def _closure_key(func, package: str) -> tuple | None:
    try:
        name = func.__globals__.get("__name__")
        if not (isinstance(name, str) and (name == package or name.startswith(package + "."))):
            return None
        closure = func.__closure__
        if not closure:
            return None
        code = func.__code__
        values = {}
        for var, cell in zip(code.co_freevars, closure):
            try:
                values[var] = cell.cell_contents
            except ValueError:  # an empty cell: read as missing at each call
                continue
        names = tuple(var for var in values if var not in _rebound(code))
        probe = next((var for var in names if isinstance(values[var], (FunctionType, MethodType, type))), None)
        if probe is None:  # else an object made for this function (aiostream's operator instance)
            probe = next((var for var in names if not isinstance(values[var], _PLAIN)), None)
        if probe is None:
            return None  # plain values (numbers, strings) alone: equal ones are often one object for many
        return probe, values[probe], names, tuple(values[var] for var in names), id(func), BY_CELL
    except Exception:
        return None


def class_key(func, package: str, cls: type, classmethod: bool = False) -> tuple | None:
    """What tells method ``func`` of the package's class ``cls`` apart from the other functions on its code
    (methods of other classes made by one factory), or None: ``(name, cls, names, values, id(func), by)``.

    ``name``: the first argument (``self``, or ``cls`` when ``classmethod``); a call is ``func``'s when
    ``type(self) is cls`` (``cls is cls``) and the closure cells not rebound by the code hold the same
    objects as ``func``'s (``names`` and ``values``, the first argument's entry being ``cls``). 3.13+ only,
    like :func:`closure_key`; the module docstring says why reading the first argument's type is not
    reading the host's data. None when the code may rebind the first argument (an assignment, ``del``, or
    a cell an inner function could rebind): read again at a generator's resume, it could be another object.
    """
    return _class_key(func, package, cls, classmethod) if CLOSURES else None


def _class_key(func, package: str, cls: type, classmethod: bool) -> tuple | None:
    try:
        name = func.__globals__.get("__name__")
        if not (isinstance(name, str) and (name == package or name.startswith(package + "."))):
            return None
        if not isinstance(cls, type):
            return None
        code = func.__code__
        if code.co_argcount < 1:
            return None  # no first positional argument (``*args`` only): nothing names the instance
        first = code.co_varnames[0]
        if first in code.co_cellvars or first in _rebound(code):
            return None
        values = {first: cls}
        for var, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                values[var] = cell.cell_contents
            except ValueError:  # an empty cell: read as missing at each call
                continue
        names = tuple(var for var in values if var == first or var not in _rebound(code))
        return (first, cls, names, tuple(values[var] for var in names), id(func),
                BY_CLASS if classmethod else BY_TYPE)
    except Exception:
        return None


#: Values that say nothing about which function a closure belongs to: equal ones are often the same object.
_PLAIN = (type(None), bool, int, float, complex, str, bytes, tuple, frozenset, range, type(Ellipsis))


def closure_ident(closure) -> tuple:
    """A hashable identity of :func:`closure_key`'s result: the ids of the values compared."""
    return tuple(id(v) for v in closure[3])


_REBOUND: dict = {}


def _rebound(code) -> frozenset:
    """The free variables ``code`` assigns or deletes (``nonlocal``): their values change, not compared;
    and the local variables it assigns or deletes (a first argument rebound: not told apart by)."""
    cached = _REBOUND.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    import dis

    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("STORE_DEREF", "DELETE_DEREF") and ins.argval in code.co_freevars:
            names.add(ins.argval)
        elif ins.opname.startswith(("STORE_FAST", "DELETE_FAST")):
            # 3.13's superinstructions (STORE_FAST_STORE_FAST, STORE_FAST_LOAD_FAST) name two variables:
            # both taken as rebound (a loaded one too: rebound or not, it is never told apart by then).
            names.update(ins.argval if isinstance(ins.argval, tuple) else (ins.argval,))
    names = frozenset(names)
    _REBOUND[id(code)] = (code, names)
    return names


def closure_would_do(func, package: str) -> bool:
    """True when :func:`closure_key` would tell ``func`` apart on 3.13+ (for the reason given before)."""
    return _closure_key(func, package) is not None


def class_would_do(func, package: str, cls: type, classmethod: bool = False) -> bool:
    """True when :func:`class_key` would tell ``func`` apart on 3.13+ (for the reason given before)."""
    return _class_key(func, package, cls, classmethod) is not None


def owner_of(code) -> object | None:
    """The stats of the callable ``code`` is monitored for, or None."""
    entry = _codes.get(id(code))
    return entry[2] if entry is not None else None


def _by_closure(entry, frame):
    """The stats of the public callable the starting ``frame`` (on shared code) is, or None.

    Reads the frame's free variables (and, by class, the type of its first argument: only compared by
    ``id`` with classes held here, never kept) through its locals proxy (3.13+: a read changes nothing).
    """
    try:
        local = frame.f_locals
        probe = entry[4]
        by = entry[6]
        value = local[probe]
        if by == BY_TYPE:
            value = type(value)  # ob_type: no __class__ lookup, so no code of the host's runs
        hits = entry[5].get(id(value))
        value = None
        if hits is None:
            return None
        for stats, names, values in hits:
            for name, value in zip(names, values):
                if name != probe and local[name] is not value:  # the probe's value matched by its id
                    break
            else:
                return stats
    except KeyError:  # an empty cell
        return None
    return None


def _events(code) -> int:
    ev = sys.monitoring.events
    if code.co_flags & _SUSPENDING:
        return ev.PY_START | ev.PY_RESUME | ev.PY_YIELD | ev.PY_RETURN
    return ev.PY_START | ev.PY_RETURN


def _acquire() -> bool:
    """Take a free tool id and register the callbacks (under ``_lock``)."""
    global _tool
    if _tool is not None:
        return True
    mon = sys.monitoring
    for candidate in TOOL_IDS:
        try:
            if mon.get_tool(candidate) is not None:
                continue
            mon.use_tool_id(candidate, TOOL_NAME)
        except ValueError:  # taken between the check and the claim
            continue
        ev = mon.events
        callbacks = ((ev.PY_START, _on_start), (ev.PY_RESUME, _on_resume), (ev.PY_THROW, _on_resume),
                     (ev.PY_YIELD, _on_yield), (ev.PY_RETURN, _on_return), (ev.PY_UNWIND, _on_unwind))
        for event, callback in callbacks:
            mon.register_callback(candidate, event, callback)
        mon.set_events(candidate, ev.PY_UNWIND | ev.PY_THROW)
        _tool = candidate
        return True
    return False


def _release() -> None:
    """Give the tool id back once nothing is monitored (under ``_lock``)."""
    global _tool
    if _tool is None or _codes:
        return
    mon = sys.monitoring
    tool, _tool = _tool, None
    try:
        mon.set_events(tool, 0)
        ev = mon.events
        for event in (ev.PY_START, ev.PY_RESUME, ev.PY_THROW, ev.PY_YIELD, ev.PY_RETURN, ev.PY_UNWIND):
            mon.register_callback(tool, event, None)
        if mon.get_tool(tool) == TOOL_NAME:
            mon.free_tool_id(tool)
    except Exception:
        log.internal_error("monitor.release")
    _suspended.clear()


def start(rec, stats, code, closure=None) -> str | None:
    """Count calls of ``code`` as usages of ``stats``' callable; None when done, else why not (a suffix).

    ``closure``: :func:`closure_key` (or :func:`class_key`) of the function, when its code is shared:
    only calls of the function with that value in that cell (that class of its first argument) are its
    usages.
    """
    if not AVAILABLE:
        return REASON_OLD_PYTHON
    if closure is not None and not CLOSURES:
        return REASON_CLOSURE_OLD
    with _lock:
        entry = _codes.get(id(code))
        if entry is not None:
            if closure is None or entry[2] is not None:
                if entry[2] is None:
                    names = sorted(hit[0].name for hits in entry[5].values() for hit in hits)
                    return REASON_TAKEN.format(other=", ".join(names))
                return None if entry[2] is stats and closure is None else REASON_TAKEN.format(other=entry[2].name)
            var, value, names, values = closure[:4]
            if var != entry[4] or closure[5] != entry[6]:
                other = next(iter(entry[5].values()))[0][0].name
                return REASON_CLOSURE_OTHER.format(other=other, var=entry[4])
            hits = entry[5].setdefault(id(value), [])
            for hit in hits:
                if hit[1] == names and all(a is b for a, b in zip(hit[2], values)):
                    # The same closure: one callable under two names, counted under the first.
                    return None if hit[0] is stats else REASON_TAKEN.format(other=hit[0].name)
            hits.append((stats, names, values))
            return None
        if not _acquire():
            return REASON_NO_TOOL
        flags = code.co_flags
        how = 2 if flags & _CO_COROUTINE else 1 if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR) else 0
        if closure is None:
            _codes[id(code)] = (code, rec, stats, how)
        else:
            var, value, names, values = closure[:4]
            _codes[id(code)] = (code, rec, None, how, var, {id(value): [(stats, names, values)]}, closure[5])
        try:
            sys.monitoring.set_local_events(_tool, code, _events(code))
        except Exception as exc:
            del _codes[id(code)]
            _release()
            return f"; sys.monitoring refused its code object ({type(exc).__name__})"
    return None


def forget(code, closure) -> None:
    """Stop counting one of the callables on shared ``code`` (its siblings stay counted). Never raises."""
    with _lock:
        try:
            entry = _codes.get(id(code))
            if entry is None or entry[2] is not None:
                return
            hits = entry[5].get(id(closure[1]), [])
            hits[:] = [hit for hit in hits if not (hit[1] == closure[2]
                                                   and all(a is b for a, b in zip(hit[2], closure[3])))]
            if hits or entry[5].pop(id(closure[1]), None) is None or entry[5]:
                return
        except Exception:
            log.internal_error("monitor.forget")
            return
    stop([code])


def stop(codes) -> None:
    """Turn the events of ``codes`` off; free the tool id when nothing is left. Never raises."""
    global _epoch
    with _lock:
        _epoch += 1
        stopped = set()
        for code in codes:
            try:
                entry = _codes.pop(id(code), None)
                if entry is not None:
                    if entry[2] is None:
                        stopped.update(id(hit[0]) for hits in entry[5].values() for hit in hits)
                    stopped.add(id(entry[2]))
                    if _tool is not None:
                        sys.monitoring.set_local_events(_tool, code, 0)
            except Exception:
                log.internal_error("monitor.stop")
        for frame_id, marker in list(_suspended.items()):
            if id(marker.stats) in stopped:  # their end event will not come
                _suspended.pop(frame_id, None)
        _release()


# ------------------------------------------------------------------ callbacks
#
# They run on the host's threads, inside its calls: never raise (an exception here
# would surface in the host's code), never hold a frame, do as little as possible
# before deciding the event is not a usage.


def _begin(entry, stats, outside, start: int):
    """Mark a usage (or one run of a generator's) in progress in this thread or task."""
    marker = _Active()
    marker.stats = stats
    marker.frame = id(_getframe(2))
    marker.how = entry[3]
    marker.start = start
    marker.epoch = _epoch
    marker.token = outside.set(marker)
    return marker


def _stale(outside, current) -> bool:
    """Clear a usage marked before events were last off; True when no usage is in progress now."""
    try:
        outside.reset(current.token)
    except ValueError:
        outside.set(True)
    return bool(outside.get())  # what it restored may itself be a usage in progress


def _on_start(code, offset):
    try:
        entry = _codes.get(id(code))
        if entry is None:
            return
        stats = entry[2]
        if stats is not None and stats.off:
            return
        outside = entry[1].outside
        current = outside.get()
        if not current and (type(current) is not _Active or current.epoch == _epoch
                            or not _stale(outside, current)):
            return  # inside a usage of the package: an inner call
        if stats is None:  # code shared by several public callables: which one is starting? (not asked
            stats = _by_closure(entry, _getframe(1))  # for an inner call: reading the cells costs)
            if stats is None or stats.off:
                return  # a function on that code that is no public callable
        start = _clock.time_ns() if stats.budget > 0 else 0
        how = entry[3]
        if how == 1:
            # A generator's usage is its call, as for a wrapped one: counted once, when it first runs.
            # Its runs are marked while they last (inner calls are not usages) and its errors recorded;
            # nothing is kept between runs (3.13 closes a generator suspended outside a ``try``
            # without any event, so state kept per frame could never be dropped).
            _begin(entry, stats, outside, 0)
            next(stats.ok)
            if start:
                entry[1].sampled(stats, None, None, start)
            return
        marker = _Active()  # _begin() inlined: the hot path of a plain function
        marker.stats = stats
        marker.frame = frame = id(_getframe(1))
        marker.how = how
        marker.start = start
        marker.epoch = _epoch
        marker.token = outside.set(marker)
        if how:
            _suspended[frame] = marker  # a coroutine is closed with PY_THROW + PY_UNWIND: dropped then
    except Exception:
        log.internal_error("monitor.start")


def _on_resume(code, offset, *exc):
    try:
        entry = _codes.get(id(code))
        if entry is None:
            return
        outside = entry[1].outside
        if entry[3] == 1:
            if not outside.get():
                return  # inside another usage
            stats = entry[2]
            if stats is None:
                stats = _by_closure(entry, _getframe(1))
                if stats is None:
                    return
            if not stats.off:
                _begin(entry, stats, outside, 0)  # a run of a generator, not inside another usage
            return
        marker = _suspended.get(id(_getframe(1)))
        # Shared code: the frame alone says whose usage it is (a live frame's id is its own).
        if marker is not None and (marker.stats is entry[2] or entry[2] is None):
            marker.token = outside.set(marker)
    except Exception:
        log.internal_error("monitor.resume")


def _current(entry, code):
    """The usage the returning frame ends, or None (an inner call, or a frame not started as a usage)."""
    marker = entry[1].outside.get()
    if type(marker) is not _Active or (marker.stats is not entry[2] and entry[2] is not None) \
            or marker.frame != id(_getframe(2)):
        return None
    try:
        entry[1].outside.reset(marker.token)
    except ValueError:  # a generator resumed in another context than it started in
        entry[1].outside.set(True)
    return marker


def _on_yield(code, offset, value):
    try:
        entry = _codes.get(id(code))
        if entry is not None:
            _current(entry, code)  # suspended: the consumer's code runs outside the usage
    except Exception:
        log.internal_error("monitor.yield")


def _on_return(code, offset, value):
    try:
        entry = _codes.get(id(code))
        if entry is None:
            return
        rec = entry[1]
        outside = rec.outside
        marker = outside.get()  # _current() inlined: this is the hot path
        if type(marker) is not _Active or (marker.stats is not entry[2] and entry[2] is not None) \
                or marker.frame != id(_getframe(1)):
            return
        try:
            outside.reset(marker.token)
        except ValueError:
            outside.set(True)
        stats = marker.stats
        if marker.how:
            if marker.how == 1:
                return  # counted when it started
            _suspended.pop(marker.frame, None)
        next(stats.ok)
        if marker.start:
            rec.sampled(stats, None, None, marker.start)
    except Exception:
        log.internal_error("monitor.return")


def _on_unwind(code, offset, exc):
    try:
        entry = _codes.get(id(code))
        if entry is None:
            return  # not ours: the cost of a global event, one lookup per frame an exception leaves
        marker = _current(entry, code)
        if marker is None:
            if entry[3] == 2:
                _suspended.pop(id(_getframe(1)), None)
            return
        if marker.how == 2:
            _suspended.pop(marker.frame, None)
        # A generator's usage was counted when it started: an error while it runs adds the error only.
        entry[1].ended(marker.stats, exc, None, None, marker.start, count_call=marker.how != 1)
    except Exception:
        log.internal_error("monitor.unwind")
