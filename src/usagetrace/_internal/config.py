"""Where data goes: the standard ``OTEL_EXPORTER_OTLP_*`` variables, then the maintainer's endpoint.

Precedence for each signal: ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`` (used
as-is), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces``, ``/v1/metrics`` appended
for HTTP), the maintainer's ``endpoint=``. With none of them, development mode:
OTLP JSON lines to a local file (``USAGETRACE_DEV_FILE`` or the per-user cache
dir) and, with ``USAGETRACE_CONSOLE=1``, to stderr.

An invalid value never raises: it is logged once at debug level and data for
that signal is dropped (counted), rather than sent somewhere the person did not
intend; ``usagetrace status`` names it with its variable (:func:`env_problems`).

Secrets: an endpoint is only ever shown or stored as ``scheme://host:port/path``
(:func:`safe_url`), never with its query or userinfo. A base URL's path is
kept and the signal path appended to it (``http://h:4318/otlp`` sends to
``/otlp/v1/traces``, as the OTLP exporter specification says); its query is
kept in the request (after the signal path) but never shown or stored. An
endpoint with a user name or password is refused (nothing is sent): credentials
belong in ``OTEL_EXPORTER_OTLP_HEADERS``, which is never shown.
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from urllib.parse import unquote, urlsplit

from . import env, log, paths

#: The variables that choose where data goes (not how: headers and certificates are secrets, never on disk).
DESTINATION_VARS = tuple(f"OTEL_EXPORTER_OTLP_{s}{k}" for k in ("ENDPOINT", "PROTOCOL")
                         for s in ("", "TRACES_", "METRICS_")) + ("USAGETRACE_DEV_FILE",)


def destination_env() -> str:
    """A digest of the destination-deciding variables as set now (recorded with the data they decide for).

    A digest, not the values: an endpoint may carry a key in its query and a
    development file is a path, and neither belongs on disk (issue 19). The
    data is only ever sent by a process whose variables give the same digest
    (``spool.same_destination``), so the values themselves are never needed.
    Here, not in spool.py: a daily run's exit records it without importing the spool.
    """
    dumps, sha256 = _digest_parts()
    pairs = sorted((name, os.environ[name].strip()) for name in DESTINATION_VARS
                   if os.environ.get(name, "").strip())
    return "sha256:" + sha256(dumps(pairs).encode()).hexdigest()


_DIGEST_PARTS = None


def _digest_parts():
    """``(dumps, sha256)``, imported on first use (not while off) and then held: the delivery thread's later
    calls run no import (delivery._Deps). ``dumps`` writes ``json.dumps``'s text without importing json, and
    SHA-256 comes from the interpreter's built-in module when there is one: the same digest as before, without
    json's import (2-4 ms) or loading OpenSSL's libcrypto (~1.5 ms) in a daily run's exit."""
    global _DIGEST_PARTS
    if _DIGEST_PARTS is None:
        from .jsonline import dumps

        # The module's name by version: a failed import of the other name would search all of sys.path.
        try:
            if sys.version_info >= (3, 12):
                from _sha2 import sha256
            else:
                from _sha256 import sha256
        except ImportError:  # a build without the built-in hashes
            from hashlib import sha256
        _DIGEST_PARTS = (lambda pairs: dumps(pairs, separators=(", ", ": "), ascii=True), sha256)
    return _DIGEST_PARTS


PROTOCOLS = ("http/protobuf", "http/json", "grpc")
DEFAULT_TIMEOUT = 10.0
SIGNALS = ("traces", "metrics")
#: What to run when gRPC is asked for but not installed (it is an extra: grpcio alone is ~19 MB).
GRPC_EXTRA = "pip install 'usagetrace[grpc]'"


# collections.namedtuple, not typing.NamedTuple: typing costs ~5 ms to import, and a consented
# short run imports this module at exit (wrapt 1.x does not import typing; 2.x does).
_TargetFields = namedtuple(
    "Target",
    ["kind", "url", "protocol", "headers", "timeout", "compression", "secure", "certificate", "client_key",
     "client_certificate"],
    defaults=((), DEFAULT_TIMEOUT, "none", False, None, None, None),
)


class Target(_TargetFields):
    """Where one signal goes, and how.

    ``kind``: "http", "grpc", "file", "console" or "none"; ``url``: the full URL (http),
    host:port (grpc), a path (file), or "" (for "none": the reason); ``protocol``;
    ``headers`` (tuple of (name, value)); ``timeout`` (s); ``compression``; ``secure``;
    ``certificate``, ``client_key``, ``client_certificate`` (paths or None).
    """

    __slots__ = ()

    def describe(self) -> str:
        """Return a short, secret-free technical description (``status --verbose``, state.json)."""
        if self.kind in ("http", "grpc"):
            return f"{self.protocol} {safe_url(self.url) if self.kind == 'http' else self.url}"
        if self.kind == "file":
            return f"development mode: {self.url}"
        return self.kind if not self.url else f"nothing is sent ({self.url})"


def safe_url(url: str) -> str:
    """``scheme://host:port/path`` of a URL: never its userinfo, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "(an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def where(target: Target) -> str:
    """Where data goes, in plain words: the host and port, a local file, or nothing and why."""
    if target.kind == "http":
        parts = urlsplit(target.url)
        return safe_url(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")
    if target.kind == "grpc":
        return f"{'https' if target.secure else 'http'}://{target.url} (gRPC)"
    if target.kind == "file":
        return f"a local file, {target.url} (development mode: nothing leaves this machine)"
    if target.kind == "console":
        return "the terminal (nothing leaves this machine)"
    return f"nothing is sent ({target.url})" if target.url else "nothing is sent"


def _signal_setting(signal: str, suffix: str) -> tuple[str, str] | None:
    """Return (variable name, value) of the signal-specific variable, else the generic one."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"):
        value = env.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None


def _signal_var(signal: str, suffix: str) -> str | None:
    setting = _signal_setting(signal, suffix)
    return setting[1] if setting else None


def grpc_installed() -> bool:
    """Return True when the ``grpc`` module can be imported (found on the path; nothing is imported)."""
    try:
        from importlib.util import find_spec

        return find_spec("grpc") is not None
    except Exception:  # ValueError for a half-imported module, ImportError from odd finders
        return False


def parse_headers(text: str | None) -> tuple[tuple[str, str], ...] | None:
    """Parse ``k1=v1,k2=v2`` (values URL-encoded); None when malformed."""
    if not text:
        return ()
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip().lower()
        if not sep or not key or not all(c.isalnum() or c in "-_." for c in key):
            return None
        value = unquote(value).strip()
        if any(c in value for c in "\r\n\x00"):
            return None
        out.append((key, value))
    return tuple(out)


def _timeout(signal: str) -> float:
    raw = _signal_var(signal, "TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        number = float(raw)
    except ValueError:
        log.debug("ignoring OTEL_EXPORTER_OTLP_TIMEOUT=%r: not a number", raw[:40])
        return DEFAULT_TIMEOUT
    if not number > 0 or number == float("inf"):
        return DEFAULT_TIMEOUT
    # The spec says milliseconds; the Python SDK long read seconds. Values up to
    # 120 are taken as seconds (nobody means a 120 ms export timeout).
    seconds = number if number <= 120 else number / 1000.0
    return min(seconds, 60.0)


USERINFO_REFUSED = ("the endpoint holds a user name or password, which usagetrace never sends, shows or stores: "
                    "nothing is sent. Put credentials in OTEL_EXPORTER_OTLP_HEADERS "
                    "(e.g. Authorization=Basic%20...) and remove them from the URL")


def _userinfo(url: str) -> bool:
    return "@" in urlsplit(url).netloc


def _valid_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


def resolve(signal: str, maintainer_endpoint: str | None, package: str, dev_file: str | None = None) -> Target:
    """Return where ``signal`` data of ``package`` goes now. Never raises."""
    try:
        return _resolve(signal, maintainer_endpoint, package, dev_file)
    except Exception:
        log.internal_error("config.resolve")
        return Target("none", "configuration error", "")


def _resolve(signal: str, maintainer_endpoint: str | None, package: str, dev_file: str | None) -> Target:
    chosen = _signal_setting(signal, "PROTOCOL")
    protocol = (chosen[1] if chosen else "http/protobuf").lower()
    if protocol not in PROTOCOLS:
        # Guessing a protocol could send somewhere, or in a way, the person did not intend.
        log.debug("OTEL_EXPORTER_OTLP_PROTOCOL=%r is not one of %s; not sending %s", protocol[:40], PROTOCOLS, signal)
        return Target("none", f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol[:40]!r} is not one of "
                              f"{', '.join(PROTOCOLS)}: nothing is sent", "")
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if specific and specific.strip():
        url, append = specific.strip(), False
    elif generic and generic.strip():
        url, append = generic.strip(), True
    elif maintainer_endpoint:
        url, append = maintainer_endpoint.strip(), True
    else:
        path = dev_file or env.get("USAGETRACE_DEV_FILE") or os.path.join(paths.user_dir("cache"), "dev", f"{package}.jsonl")
        return Target("file", path, "http/json")
    if not _valid_http_url(url):
        log.debug("the OTLP endpoint is not an http(s) URL; not sending %s", signal)
        return Target("none", "the endpoint is not an http(s) URL", protocol)
    if _userinfo(url):
        log.debug("the OTLP endpoint holds a user name or password; not sending %s", signal)
        return Target("none", USERINFO_REFUSED, protocol)
    headers = parse_headers(_signal_var(signal, "HEADERS"))
    if headers is None:
        log.debug("OTEL_EXPORTER_OTLP_HEADERS is malformed; sending without headers")
        headers = ()
    compression = (_signal_var(signal, "COMPRESSION") or "none").lower()
    if compression not in ("gzip", "none"):
        compression = "none"
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    common = dict(
        protocol=protocol,
        headers=headers,
        timeout=_timeout(signal),
        compression=compression,
        secure=secure,
        certificate=_signal_var(signal, "CERTIFICATE"),
        client_key=_signal_var(signal, "CLIENT_KEY"),
        client_certificate=_signal_var(signal, "CLIENT_CERTIFICATE"),
    )
    if protocol == "grpc":
        if not grpc_installed():
            # Never fall back to HTTP: a collector's gRPC and HTTP ports differ, so the data would
            # go somewhere the person did not configure. Nothing is sent (drops are counted).
            log.debug("%s=grpc but grpc is not installed; not sending %s", chosen[0], signal)
            return Target("none", f"{chosen[0]}=grpc needs gRPC, which is not installed: {GRPC_EXTRA}", protocol)
        insecure = env.flag("OTEL_EXPORTER_OTLP_INSECURE")
        if insecure is not None:
            common["secure"] = not insecure
        port = parts.port or (443 if secure else 4317)
        return Target("grpc", f"{parts.hostname}:{port}", **common)
    if append:
        # The OTLP exporter spec: the signal path goes after the base URL's path, never into its query.
        base = parts._replace(path=parts.path.rstrip("/") + f"/v1/{signal}", fragment="")
        url = base.geturl()
    else:
        url = parts._replace(fragment="").geturl()
    return Target("http", url, **common)


def console_enabled() -> bool:
    """Return True when development output should also go to stderr."""
    return bool(env.flag("USAGETRACE_CONSOLE"))


# ------------------------------------------------------------------ upload mode

REALTIME, DAILY, WEEKLY = "realtime", "daily", "weekly"
UPLOAD_MODES = (REALTIME, DAILY, WEEKLY)
#: The default for libraries and CLIs: counted on the machine, one upload a day.
DEFAULT_UPLOAD = DAILY
UPLOAD_VAR = "USAGETRACE_UPLOAD"


class Upload(namedtuple("Upload", ["mode", "source", "note"], defaults=("",))):
    """How a package's data leaves the machine, and why: for delivery and ``usagetrace status``.

    ``mode``: realtime, daily or weekly; ``source``: USAGETRACE_UPLOAD, instrument(upload=...),
    default, development mode, ...; ``note``: why the mode differs from what was asked for,
    or what is wrong with the variable.
    """

    __slots__ = ()


def upload_mode(requested: str | None, target_kind: str, state_dir: str | None = None, *,
                captured: bool = False) -> Upload:
    """Return the upload mode for a package whose maintainer asked for ``requested`` (None: the default).

    Precedence: a capture (``usagetrace.testing``, ``usagetrace preview``) is
    realtime; then ``USAGETRACE_UPLOAD`` (the person's or operator's choice,
    taken as given); then ``requested``, then daily. A maintainer's or the
    default daily/weekly becomes realtime in development mode (no endpoint:
    the local file) and where the store would not last until the upload (CI,
    containers, a temporary or unwritable state directory: ``runenv.not_lasting``).
    An unusable ``USAGETRACE_UPLOAD`` never makes data leave more often: the
    safe choice is daily, or weekly when the maintainer asked for weekly. Never raises.
    """
    if captured:
        return Upload(REALTIME, "a capture (usagetrace.testing or preview)")
    raw = env.get(UPLOAD_VAR)
    if raw is None and env._present(UPLOAD_VAR):
        raw = "(unreadable)"
    if raw is not None and raw.strip():
        value = raw.strip().lower()
        if value in UPLOAD_MODES:
            return Upload(value, UPLOAD_VAR)
        safe = WEEKLY if requested == WEEKLY else DAILY
        return Upload(safe, f"{UPLOAD_VAR} (unusable)",
                      f"{UPLOAD_VAR}={raw.strip()[:40]!r} is not one of {', '.join(UPLOAD_MODES)}: using {safe}, "
                      "the safe choice (nothing leaves during runs; counts wait on this machine for one upload "
                      f"a {'week' if safe == WEEKLY else 'day'}). Fix or unset the variable.")
    mode = requested if requested in UPLOAD_MODES else DEFAULT_UPLOAD
    source = "instrument(upload=...)" if requested in UPLOAD_MODES else "default"
    if mode == REALTIME:
        return Upload(mode, source)
    asked = f"{mode} ({'the default' if source == 'default' else 'the maintainer asked for it'})"
    if target_kind == "file":
        return Upload(REALTIME, "development mode", f"not {asked}: there is no endpoint, so data goes to the "
                                                    "local development file as it happens")
    if target_kind != "http" and target_kind != "grpc":
        return Upload(REALTIME, source, "nothing can be sent with this configuration")
    from . import runenv

    reason = runenv.not_lasting(state_dir or paths.user_dir("state"))
    if reason:
        return Upload(REALTIME, source, f"not {asked}: the local store would probably not last until the "
                                        f"upload here ({reason}); set {UPLOAD_VAR}={mode} if it does")
    return Upload(mode, source)


# ------------------------------------------------------------ bad variables

_BOOLEAN_VARS = ("OTEL_EXPORTER_OTLP_INSECURE", "USAGETRACE_CONSOLE", "USAGETRACE_DETACHED_SEND")
_SECONDS_VARS = ("USAGETRACE_EXPORT_INTERVAL", "USAGETRACE_FOLD_INTERVAL")


def env_problems() -> list[tuple[str, str]]:
    """``(variable, what is wrong and what happens)`` for every variable usagetrace reads that is set to a
    value it cannot use (``usagetrace status`` names each one). Secret values (headers, an endpoint's
    userinfo or query) are never repeated. Never raises."""
    try:
        return _env_problems()
    except Exception:
        log.internal_error("config.env_problems")
        return []


def _shown(value: str) -> str:
    return repr(value.strip()[:40])


def _env_problems() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    names = []
    for signal in ("", "TRACES_", "METRICS_"):
        names += [f"OTEL_EXPORTER_OTLP_{signal}{suffix}"
                  for suffix in ("ENDPOINT", "PROTOCOL", "HEADERS", "TIMEOUT", "COMPRESSION")]
    xdg = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
    names += [*_BOOLEAN_VARS, *_SECONDS_VARS, UPLOAD_VAR, "USAGETRACE_HOME", "OTEL_SDK_DISABLED", *xdg]
    for name in names:
        value = env.get(name)
        if value is None:
            if env._present(name):
                out.append((name, "cannot be read (longer than 8192 characters or not UTF-8): ignored"))
            continue
        if not value.strip():
            continue
        suffix = name.rsplit("_", 1)[-1]
        problem = None
        if name.startswith("OTEL_EXPORTER_OTLP_") and suffix == "ENDPOINT":
            if not _valid_http_url(value.strip()):
                problem = "is not an http(s) URL: nothing is sent"
            elif _userinfo(value.strip()):
                problem = USERINFO_REFUSED
        elif name.startswith("OTEL_EXPORTER_OTLP_") and suffix == "PROTOCOL":
            if value.strip().lower() not in PROTOCOLS:
                problem = f"={_shown(value)} is not one of {', '.join(PROTOCOLS)}: nothing is sent"
        elif name.startswith("OTEL_EXPORTER_OTLP_") and suffix == "HEADERS":
            if parse_headers(value) is None:
                problem = "is malformed (not key=value,key2=value2, URL-encoded): sending without headers"
        elif name.startswith("OTEL_EXPORTER_OTLP_") and suffix == "TIMEOUT":
            try:
                number = float(value)
                bad = not 0 < number < float("inf")
            except ValueError:
                bad = True
            if bad:
                problem = f"={_shown(value)} is not a positive number: using {DEFAULT_TIMEOUT:g} s"
        elif name.startswith("OTEL_EXPORTER_OTLP_") and suffix == "COMPRESSION":
            if value.strip().lower() not in ("gzip", "none"):
                problem = f"={_shown(value)} is not gzip or none: sending uncompressed"
        elif name in _BOOLEAN_VARS:
            if env.choice(name) is env.INVALID:
                problem = f"={_shown(value)} is not 1/0, true/false, yes/no or on/off: ignored"
        elif name in _SECONDS_VARS:
            try:
                number = float(value)
                bad = number != number
            except ValueError:
                bad = True
            if bad:
                problem = f"={_shown(value)} is not a number of seconds: the default applies"
        elif name == UPLOAD_VAR:
            if value.strip().lower() not in UPLOAD_MODES:
                problem = (f"={_shown(value)} is not one of {', '.join(UPLOAD_MODES)}: using daily (weekly where "
                           "the maintainer asked for it), the safe choice")
        elif name in xdg:
            if not os.path.isabs(value):
                problem = f"={_shown(value)} is not an absolute path: ignored (the XDG rule)"
        elif name == "USAGETRACE_HOME":
            if not os.path.isabs(value):
                problem = f"={_shown(value)} is not an absolute path: ignored (the per-user directories are used)"
        elif name == "OTEL_SDK_DISABLED":
            if value.strip().lower() not in ("true", "false"):
                problem = (f"={_shown(value)}: only `true` turns telemetry off (the OpenTelemetry rule); "
                           "use OTEL_SDK_DISABLED=true or DO_NOT_TRACK=1")
        if problem:
            out.append((name, problem))
    return out
