"""The anonymized resource: who is sending, with nothing that identifies a person.

Built directly from an allowlist. ``Resource.create()`` is never used: it
merges the host's ``OTEL_RESOURCE_ATTRIBUTES`` and detectors that can bring
``host.name`` in.
"""

from __future__ import annotations

import os
import sys

from . import log, paths, runenv

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "x86",
    "i686": "x86",
    "x86": "x86",
    "armv7l": "arm32",
    "armv6l": "arm32",
    "ppc64le": "ppc64",
    "ppc64": "ppc64",
    "s390x": "s390x",
}
_OS = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}


def os_type() -> str:
    """Return the semantic-conventions ``os.type`` value."""
    for prefix, name in _OS.items():
        if sys.platform.startswith(prefix):
            return name
    return "freebsd" if sys.platform.startswith("freebsd") else "other"


def host_arch() -> str:
    """Return the semantic-conventions ``host.arch`` value (never the machine name)."""
    if hasattr(os, "uname"):
        machine = os.uname().machine  # what platform.machine() returns here, without its ~6 ms import at exit
    else:
        import platform

        machine = platform.machine()
    return _ARCH.get(machine.lower(), "other")


_HEX = frozenset("0123456789abcdef")


def _uuid_text(hex32: str) -> str:
    """``8-4-4-4-12`` text of 32 hex digits, as ``str(uuid.UUID(...))`` gives it.

    The ``uuid`` module is not used: it imports ``platform`` (~6 ms), which a
    run would pay at exit, where this is first needed.
    """
    h = hex32.lower()
    if len(h) != 32 or not set(h) <= _HEX:
        raise ValueError("not a UUID")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_uuid4() -> str:
    """A random (version 4) UUID from ``os.urandom``, the source ``uuid.uuid4`` uses."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return _uuid_text(raw.hex())


def _parse_uuid(text: str) -> str:
    """The canonical text of a stored id (hyphens optional); ValueError when it is not one."""
    return _uuid_text(text.strip().replace("-", ""))


#: The prefix of an install id made for one run only (no home directory, or none writable): never stored,
#: never computable by anyone else; the report can tell such ids from real installs.
PER_RUN_PREFIX = "run-"


def install_id(package: str, *, create: bool = True) -> tuple[str, str]:
    """Return (install id, where it came from) for ``package``.

    A random UUID4 per package per user, stored in the user data dir
    ("stored"). When it cannot be stored (no home, an unwritable one), a
    random id for this run only, marked ``run-`` ("per-run"): never anything
    derived from the machine, which anyone on it could compute and nobody
    could reset.
    """
    try:
        path = _id_file(package)
    except OSError:
        return PER_RUN_PREFIX + new_uuid4(), "per-run"
    try:
        # Bytes, then decoded: bytes.decode("ascii") is built in, a text file's ascii codec is a module to
        # load (at the exit of every daily run).
        with open(path, "rb") as fh:
            value = fh.read(64).decode("ascii").strip()
        return _parse_uuid(value), "stored"
    except FileNotFoundError:
        pass
    except Exception:
        log.debug("install id file %s corrupt; replacing it", path)
    if create:
        value = new_uuid4()
        try:
            paths.atomic_write(path, value + "\n")
            return value, "stored"
        except Exception:
            log.debug("cannot store install id under %s", path, exc_info=True)
    return PER_RUN_PREFIX + new_uuid4(), "per-run"


def stored_install_id(package: str) -> str | None:
    """The install id stored for ``package``, or None (never creates one)."""
    try:
        with open(_id_file(package), "rb") as fh:
            return _parse_uuid(fh.read(64).decode("ascii"))
    except (OSError, ValueError):
        return None


def delete_install_id(package: str) -> str | None:
    """Delete the stored install id; return it (None when there was none). Raises OSError."""
    value = stored_install_id(package)
    try:
        os.unlink(_id_file(package))
    except FileNotFoundError:
        pass
    return value


def _id_file(package: str) -> str:
    return os.path.join(paths.ids_dir(), f"{package}.id")


def reset_install_id(package: str) -> str:
    """Replace the stored install id with a new random one and return it. Raises OSError."""
    value = new_uuid4()
    paths.atomic_write(_id_file(package), value + "\n")
    return value


def attributes(package: str, version: str, *, policy: str, consent_source: str, sdk_version: str | None) -> dict:
    """Return the resource attributes for one instrumented package.

    ``sdk_version=None`` leaves ``telemetry.sdk.version`` out: a daily or weekly run stores its tallies
    without it and the uploader, which builds the request with the SDK, adds it (:func:`with_sdk_version`),
    so the run's exit does not look the SDK up (~0.6 ms, a namespace-package search).
    """
    from .. import __version__

    provider = runenv.ci_provider()
    attrs = {
        "service.name": package,
        "service.version": version,
        # A preview must not leave an id behind for someone who never agreed.
        "usagetrace.install.id": install_id(package, create=not os.environ.get("USAGETRACE_PREVIEW_FILE"))[0],
        "usagetrace.session.id": new_uuid4().replace("-", ""),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "os.type": os_type(),
        "host.arch": host_arch(),
        "usagetrace.ci": provider is not None,
        "usagetrace.run.context": runenv.run_context(),
        "usagetrace.consent.policy": policy,
        "usagetrace.consent.source": consent_source.split(":", 1)[0],
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": sdk_version,
        "telemetry.distro.name": "usagetrace",
        "telemetry.distro.version": __version__,
    }
    if sdk_version is None:
        del attrs["telemetry.sdk.version"]
    if provider:
        attrs["usagetrace.ci.provider"] = provider
    return attrs


def with_sdk_version(attrs: dict) -> dict:
    """``attrs`` with ``telemetry.sdk.version`` where :func:`attributes` puts it, when it was left out."""
    if "telemetry.sdk.version" in attrs:
        return attrs
    out = {}
    for key, value in attrs.items():
        out[key] = value
        if key == "telemetry.sdk.language":
            out["telemetry.sdk.version"] = sdk_version()
    out.setdefault("telemetry.sdk.version", sdk_version())
    return out


def sdk_version() -> str:
    """The installed OpenTelemetry SDK's version, "unknown" when it cannot be found."""
    try:
        # A one-line module: far cheaper than importlib.metadata (~10 ms).
        from opentelemetry.sdk.version import __version__

        return __version__
    except Exception:
        pass
    try:
        from importlib import metadata

        return metadata.version("opentelemetry-sdk")
    except Exception:
        return "unknown"
