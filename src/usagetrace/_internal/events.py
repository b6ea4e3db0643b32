"""Commands, one-shot events and the plumbing every integration shares.

``usagetrace.command()`` and ``usagetrace.event()`` live here, together with
the small helpers the integrations (``usagetrace.integrations.*``) use to put
a sample on the same consent-gated, allowlisted pipeline as usage spans:

* :func:`handle_for` finds a package's :class:`Instrumentation` handle, or
  creates one that wraps nothing (for apps and CLIs that are not libraries);
* :func:`recorder` returns the package's recorder only while consent is on;
* :func:`record` queues one span sample (never raises, never blocks).

Measurements
------------
A maintainer *declares* every measurement before sending it, with a type:
``int``, ``float``, ``bool`` or a tuple of allowed strings (an enum)::

    with usagetrace.command("generate", package="lhp",
                            measures={"flowgroups": int, "dry_run": bool,
                                      "env": ("dev", "test", "prod")}) as cmd:
        ...
        cmd.set(flowgroups=23, dry_run=False, env="dev")

A declaration that is wrong (a free-form ``str`` type, a bad key, an empty
enum) raises ``TypeError``/``ValueError`` where it is made, whether or not
consent is on, so the maintainer's own tests catch it. Values given at run
time never raise: an undeclared key, or a value that does not fit its
declaration (a string outside the enum, a float for an ``int``), is dropped
and logged at debug level. Declared keys travel as
``usagetrace.measure.<key>`` and join that package's allowlist only.

Measurements of one-shot events are declared once per package with
``usagetrace.instrument(..., measures={...})``.
"""

from __future__ import annotations

import re
import sys

from . import clock, instrumentation, log

# Not imported here: the recorder (threading, contextvars) and the allowlist (typing)
# are needed only once consent is on.
MEASURE_PREFIX = "usagetrace.measure."  # == allowlist.MEASURE_PREFIX (asserted in tests/integrations/test_import_cost.py)

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

__all__ = ["Command", "command", "event", "record", "validate_measures"]

EMIT_CHOICES = ("success", "always")
# Patterns, compiled (and cached by re) on first use: not at import, which every integration pays while off.
_KEY = r"^[a-z][a-z0-9_]{0,63}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,127}$"
_ENUM_VALUE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_MAX_ENUM = 64
_validated: dict = {}


# ------------------------------------------------------------------- plumbing
def record(
    package: str, name: str, attributes: dict, start_ns: int, end_ns: int | None = None, error=None
) -> bool:
    """Queue one span sample for ``package`` if consent is on; return True when queued. Never raises.

    ``attributes`` must use allowlisted keys only (anything else is dropped at
    export anyway); ``error`` is ``(type name, frames, signature)`` or None.
    """
    try:
        rec = instrumentation.recorder(package)
        if rec is None:
            return False
        from .recorder import Sample

        end = _clock.time_ns() if end_ns is None else end_ns
        rec.queue(Sample(name, start_ns, max(end, start_ns), attributes, error))
        return True
    except Exception:
        log.internal_error("events.record")
        return False


def error_info(exc: BaseException, package: str) -> tuple:
    """Return ``(type name, in-package frames, signature)`` for an exception."""
    from . import sanitize  # only with consent on: an error to record

    type_name = sanitize.type_name(type(exc), package)
    frames = sanitize.frames(exc.__traceback__, package)
    return (type_name, frames, sanitize.signature(type_name, frames))


# ---------------------------------------------------------------- measurements
def _spec(key, spec):
    if not isinstance(key, str) or not re.fullmatch(_KEY, key):
        raise ValueError(
            f"usagetrace: measurement name {key!r} must be lowercase letters, digits and _ "
            "(at most 64 characters, starting with a letter)"
        )
    if spec is bool or spec is int or spec is float:
        return spec
    if spec is str:
        raise TypeError(
            f"usagetrace: measurement {key!r} is declared as str; free-form strings are never sent. "
            f"Declare the allowed values instead, e.g. {key!r}: ('dev', 'test', 'prod')"
        )
    if isinstance(spec, (tuple, list, frozenset, set)):
        values = tuple(spec) if isinstance(spec, (tuple, list)) else tuple(sorted(spec, key=str))
        if not values or len(values) > _MAX_ENUM:
            raise ValueError(f"usagetrace: measurement {key!r} must list 1 to {_MAX_ENUM} allowed values")
        for value in values:
            if not isinstance(value, str) or not re.fullmatch(_ENUM_VALUE, value):
                raise ValueError(
                    f"usagetrace: allowed value {value!r} of measurement {key!r} must be a short "
                    "identifier-like string (letters, digits, . _ -; at most 64 characters)"
                )
        return frozenset(values)
    raise TypeError(
        f"usagetrace: measurement {key!r} has type {spec!r}; use int, float, bool or a tuple of allowed strings"
    )


def validate_measures(measures) -> dict:
    """Return a normalized ``{key: int|float|bool|frozenset}``; raise TypeError/ValueError when invalid."""
    if measures is None:
        return {}
    if not isinstance(measures, dict):
        raise TypeError(f"usagetrace: measures must be a dict of name -> type, not {type(measures).__name__}")
    return {key: _spec(key, spec) for key, spec in measures.items()}


def _declared(package: str, measures) -> dict:
    """Validate (cached) and make the declared keys allowed for ``package``'s current handle."""
    if measures is None:
        return {}
    try:
        cache_key = tuple((k, tuple(v) if isinstance(v, (list, set)) else v) for k, v in measures.items())
        hash(cache_key)
    except Exception:
        cache_key = None
    specs = _validated.get(cache_key) if cache_key is not None else None
    if specs is None:
        specs = validate_measures(measures)
        if cache_key is not None and len(_validated) < 4096:
            _validated[cache_key] = specs
    _allow(package, specs)
    return specs


def _allow(package: str, specs: dict) -> None:
    """Add ``usagetrace.measure.<key>`` for each declared key to the package's allowlist extension."""
    if not specs:
        return
    try:
        handle = instrumentation.get(package)
        if handle is None:
            return
        keys = {MEASURE_PREFIX + k for k in specs}
        current = handle.options.get("_extra_keys")
        merged = set(current or ()) | keys
        if current is not None and keys <= set(current):
            return
        handle.options["_extra_keys"] = frozenset(merged)
        # A pipeline built before this declaration keeps its own key set: widen it.
        # (No delivery service before the first export: never import it just to look.)
        delivery = sys.modules.get(__package__ + ".delivery")
        service = delivery._DELIVERY if delivery is not None else None
        channel = service.channels.get(package) if service is not None else None
        pipe = getattr(channel, "pipeline", None)
        if pipe is not None and channel.handle is handle:
            pipe.span_keys = frozenset(pipe.span_keys | keys)
    except Exception:
        log.internal_error("events.allow")


def _fits(spec, value) -> bool:
    if spec is bool:
        return isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if spec is float:
        # Finite, without math (an extension module: ~0.4 ms of every run's import, telemetry off too) and
        # without calling a subclass's own __sub__ or __float__: inf - inf and nan - nan are nan, never 0.
        if isinstance(value, float):
            return float.__sub__(value, value) == 0.0
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                int.__float__(value)
            except OverflowError:
                return False
            return True
        return False
    return isinstance(value, str) and value in spec


def measure_attributes(specs: dict, values: dict, where: str) -> dict:
    """Return ``{usagetrace.measure.<key>: value}`` for declared, fitting values; drop the rest (debug log)."""
    out = {}
    for key, value in values.items():
        spec = specs.get(key)
        if spec is None:
            log.debug("usagetrace: %s: measurement %r was not declared; dropped", where, key)
            continue
        if not _fits(spec, value):
            log.debug(
                "usagetrace: %s: value of type %s does not fit measurement %r; dropped",
                where,
                type(value).__name__,
                key,
            )
            continue
        out[MEASURE_PREFIX + key] = float(value) if spec is float else value
    return out


def _check_name(kind: str, name) -> str:
    if not isinstance(name, str) or not re.fullmatch(_NAME, name):
        raise ValueError(
            f"usagetrace: {kind} name {name!r} must be a short name (letters, digits, space . _ : / -; "
            "at most 128 characters)"
        )
    return name


def _check_package(package) -> str:
    if not isinstance(package, str) or not package:
        raise TypeError("usagetrace: package= must be the instrumented package's import name")
    return package


# --------------------------------------------------------------------- command
class Command:
    """One run of a declared command; use through :func:`usagetrace.command`."""

    __slots__ = ("name", "package", "specs", "emit", "values", "start_ns", "_active")

    def __init__(self, name: str, package: str, specs: dict, emit: str) -> None:
        self.name = name
        self.package = package
        self.specs = specs
        self.emit = emit
        self.values: dict = {}
        self.start_ns = 0
        self._active = False

    def set(self, **measures) -> None:
        """Set declared measurements; undeclared or ill-fitting values are dropped. Never raises."""
        if not self._active:
            return
        try:
            self.values.update(measure_attributes(self.specs, measures, f"command {self.name!r}"))
        except Exception:
            log.internal_error("events.command.set")

    def __enter__(self) -> Command:
        # Cost nothing when consent is off: no clock, no bookkeeping.
        self._active = instrumentation.recorder(self.package) is not None
        if self._active:
            self.start_ns = _clock.time_ns()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._active:
            return False
        self._active = False
        try:
            from .recorder import ERROR, outcome_of  # imported already: the recorder exists while active

            failed = exc is not None and outcome_of(exc) == ERROR
            if failed and self.emit != "always":
                return False
            attributes = {"usagetrace.command.name": self.name}
            attributes.update(self.values)
            error = error_info(exc, self.package) if failed else None
            record(self.package, "usagetrace.command", attributes, self.start_ns, error=error)
        except Exception:
            log.internal_error("events.command.exit")
        return False


def command(name: str, *, package: str, measures: dict | None = None, emit: str = "success") -> Command:
    """Return a context manager recording one run of command ``name`` of ``package``.

    One ``usagetrace.command`` span is queued when the block ends: after
    success only (``emit="success"``, the default) or also after a failure
    (``emit="always"``; the span then carries the exception type and the
    in-package stack, never the message). Raises ``TypeError``/``ValueError``
    for a bad declaration (see the module docstring), regardless of consent.
    """
    _check_package(package)
    _check_name("command", name)
    if emit not in EMIT_CHOICES:
        raise ValueError(f"usagetrace: emit must be one of {EMIT_CHOICES!r}, not {emit!r}")
    specs = _declared(package, measures)
    return Command(name, package, specs, emit)


# ----------------------------------------------------------------------- event
def _package_specs(package: str) -> dict:
    handle = instrumentation.get(package)
    if handle is None:
        return {}
    return _declared(package, handle.options.get("measures"))


def event(name: str, *, package: str, **measures) -> None:
    """Record one ``usagetrace.event`` span (e.g. ``session_start``) for ``package``.

    Measurements must be declared with ``usagetrace.instrument(package,
    measures={...})``; undeclared or ill-fitting ones are dropped. A bad
    name or declaration raises ``TypeError``/``ValueError``; nothing else does.
    """
    _check_package(package)
    _check_name("event", name)
    specs = _package_specs(package)  # validates the declaration even when consent is off
    if instrumentation.recorder(package) is None:
        return
    try:
        attributes = {"usagetrace.event.name": name}
        attributes.update(measure_attributes(specs, measures, f"event {name!r}"))
        now = _clock.time_ns()
        record(package, "usagetrace.event", attributes, now, now)
    except Exception:
        log.internal_error("events.event")
