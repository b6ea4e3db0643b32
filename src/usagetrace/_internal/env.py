"""Reading environment variables defensively.

Every variable usagetrace reads goes through here, so that a bad value (not a
number, not UTF-8, absurdly long) degrades to the default with one debug line
instead of an exception in the host.
"""

import os

from . import log

MAX_ENV_LENGTH = 8192
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


def get(name: str) -> "str | None":
    """Return the variable's value, or None when unset or unusable."""
    try:
        value = os.environ.get(name)
    except Exception:  # pragma: no cover - os.environ replaced by something odd
        log.internal_error("env.get")
        return None
    if value is None:
        return None
    if len(value) > MAX_ENV_LENGTH:
        log.debug("ignoring %s: value longer than %d characters", name, MAX_ENV_LENGTH)
        return None
    if not value.isascii() and any("\udc80" <= ch <= "\udcff" for ch in value):
        # os.environ decodes undecodable bytes to lone surrogates.
        log.debug("ignoring %s: value is not valid UTF-8", name)
        return None
    return value


def flag(name: str) -> "bool | None":
    """Return True/False for a boolean-ish variable, None when unset or not boolean."""
    value = choice(name)
    return None if value is INVALID else value


#: What :func:`choice` returns for a variable that is set to something unusable.
INVALID = "invalid"


def choice(name: str) -> "bool | None | str":
    """Like :func:`flag`, but tells "unset" (None) from "set to something unusable" (:data:`INVALID`).

    Consent needs the difference: an unusable value is a choice that cannot be
    read, so it must turn telemetry off rather than fall through to a default.
    Empty or blank counts as unset.
    """
    value = get(name)
    if value is None:
        return INVALID if _present(name) else None
    if not value.strip():
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    log.debug("%s=%r is not a boolean", name, value[:40])
    return INVALID


def _present(name: str) -> bool:
    """True when the variable exists at all (get() hides over-long and non-UTF-8 values)."""
    try:
        return name in os.environ
    except Exception:  # pragma: no cover
        return False


def do_not_track() -> "str | None":
    """Return the name of the global off switch that is set, if any.

    ``DO_NOT_TRACK`` follows consoledonottrack.com: any value other than empty,
    ``0`` or ``false`` means do not track. ``OTEL_SDK_DISABLED`` follows the
    OpenTelemetry spec: only ``true`` (case-insensitive) disables.
    """
    dnt = get("DO_NOT_TRACK")
    if dnt is None and _present("DO_NOT_TRACK"):
        return "DO_NOT_TRACK"  # set, but too long or not UTF-8: still not "0" or "false"
    if dnt is not None and dnt.strip().lower() not in ("", "0", "false", "no", "off"):
        return "DO_NOT_TRACK"
    if (get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return "OTEL_SDK_DISABLED"
    return None


def package_var(package: str) -> str:
    """Return the per-package switch name: ``my-pkg.sub`` becomes ``MY_PKG_SUB_TELEMETRY``."""
    top = package.split(".", 1)[0]
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in top).upper() + "_TELEMETRY"


def seconds(name: str, default: float, *, low: float = 0.0, high: float = 3600.0) -> float:
    """Return a duration in seconds from a variable, clamped to [low, high]."""
    value = get(name)
    if value is None or not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        log.debug("ignoring %s=%r: not a number", name, value[:40])
        return default
    if number != number:  # NaN
        return default
    return min(max(number, low), high)


def integer(name: str, default: int, *, low: int = 0, high: int = 1 << 30) -> int:
    """Return an integer from a variable, clamped to [low, high]."""
    value = get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        log.debug("ignoring %s=%r: not an integer", name, value[:40])
        return default
    return min(max(number, low), high)
