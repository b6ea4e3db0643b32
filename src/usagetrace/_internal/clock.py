"""The real clocks, out of reach of a host that fakes its own.

Test suites freeze or move time (freezegun, time-machine). freezegun replaces
``time.time``, ``time.time_ns``, ``time.monotonic``, ``time.gmtime``, ... in the
``time`` module and in every module attribute that holds one of them, for as
long as time is frozen. Read through those, a frozen monotonic clock turns
usagetrace's bounded waits into unbounded ones, and a wall clock moved to the
year 9999 stamps data beyond what OTLP's unsigned 64-bit nanoseconds can carry
(the encoder refuses it, and the counts would never be sent).

usagetrace reads time only through :data:`REAL`: an object (freezegun scans
module attributes, not what objects hold) with the functions as they were when
usagetrace was imported, or, when a fake was already in place then, the POSIX
``clock_gettime`` readings of the same clocks, which freezegun leaves alone.

time-machine instead patches the C functions themselves (``time.time``,
``time.time_ns``, ``clock_gettime(_ns)`` of ``CLOCK_REALTIME``, ``datetime.now``,
...), so the builtin objects captured above are patched too. Worse, a ticking
travel returns its exact destination only on its *first* read and real time
elapsed since that read afterwards: any read of ours would shift what the host
sees next (``datetime.now()`` inside ``travel("1980-03-25 16:00")`` saying
``16:00:00.000181``). While it travels, the wall clock is therefore read
through time-machine's own escape hatch (the original C functions, which do not
touch the traveller's state). The monotonic clocks are not patched by
time-machine. Anything else patched in C is bounded by :func:`clamp_ns` where
timestamps leave the process, and telemetry then simply carries the host's time.
"""

import sys
import time as _time
from types import SimpleNamespace

#: The largest timestamp OTLP can carry (fixed64 nanoseconds since the epoch).
MAX_NS = 2**64 - 1
_BUILTIN = type(len)


def _real(name: str, clock: str, scale: "float | None"):
    found = getattr(_time, name)
    if type(found) is _BUILTIN:  # the C function itself: not a Python-level fake
        return found
    gettime, clock_id = getattr(_time, "clock_gettime_ns", None), getattr(_time, clock, None)
    if gettime is None or clock_id is None:
        return found
    if scale is None:
        return lambda: gettime(clock_id)
    return lambda: gettime(clock_id) * scale


def _hatched(name: str, base):
    """``base`` unless time-machine travels; then its escape hatch's ``name`` (read without moving the host's clock)."""
    modules = sys.modules

    def read():
        tm = modules.get("time_machine")
        if tm is not None:
            hatch = getattr(tm, "escape_hatch", None)
            if hatch is not None and hatch.is_travelling():
                try:
                    return getattr(hatch.time, name)()
                except ValueError:  # the travel ended in between: the builtin is its own again
                    pass
        return base()

    read.__name__ = name
    return read


REAL = SimpleNamespace(
    time_ns=_hatched("time_ns", _real("time_ns", "CLOCK_REALTIME", None)),
    time=_hatched("time", _real("time", "CLOCK_REALTIME", 1e-9)),
    monotonic=_real("monotonic", "CLOCK_MONOTONIC", 1e-9),
    sleep=_time.sleep,  # not faked by freezegun or time-machine
)


def clamp_ns(value: int) -> int:
    """``value`` within what OTLP can carry (a host clock patched in C can say anything)."""
    return 0 if value < 0 else MAX_NS if value > MAX_NS else value


#: The UTC timestamp format of usagetrace's local records (state, receipts, uploads).
ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def utc(fmt: str = ISO_SECONDS, seconds: "float | None" = None) -> str:
    """``time.strftime(fmt)`` of ``seconds`` (default: now, by the real clock) in UTC."""
    return _time.strftime(fmt, _time.gmtime(REAL.time() if seconds is None else seconds))
