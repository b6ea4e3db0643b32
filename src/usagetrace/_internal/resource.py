"""The anonymized resource: who is sending, with nothing that identifies a person.

Built directly from an allowlist. ``Resource.create()`` is never used: it
merges the host's ``OTEL_RESOURCE_ATTRIBUTES`` and detectors that can bring
``host.name`` in.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import uuid

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
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def os_type() -> str:
    """Return the semantic-conventions ``os.type`` value."""
    for prefix, name in _OS.items():
        if sys.platform.startswith(prefix):
            return name
    return "freebsd" if sys.platform.startswith("freebsd") else "other"


def host_arch() -> str:
    """Return the semantic-conventions ``host.arch`` value (never the machine name)."""
    return _ARCH.get(platform.machine().lower(), "other")


def _machine_id() -> str | None:
    for path in _MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii") as fh:
                value = fh.read(128).strip()
            if value:
                return value
        except Exception:
            continue
    return None


def salted_machine_id(package: str) -> str | None:
    """Return SHA-256(package + machine id) formatted as a UUID, or None without a machine id."""
    mid = _machine_id()
    if not mid:
        return None
    digest = hashlib.sha256(f"usagetrace:{package}:{mid}".encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


def install_id(package: str, *, create: bool = True) -> tuple[str, str]:
    """Return (install id, where it came from) for ``package``.

    A random UUID4 per package per user, stored in the user data dir. When it
    cannot be stored, a salted hash of the machine id; failing that a random
    id for this process only.
    """
    path = _id_file(package)
    try:
        with open(path, encoding="ascii") as fh:
            value = fh.read(64).strip()
        return str(uuid.UUID(value)), "stored"
    except FileNotFoundError:
        pass
    except Exception:
        log.debug("install id file %s corrupt; replacing it", path)
    if create:
        value = str(uuid.uuid4())
        try:
            paths.atomic_write(path, value + "\n")
            return value, "stored"
        except Exception:
            log.debug("cannot store install id under %s", path, exc_info=True)
    hashed = salted_machine_id(package)
    if hashed:
        return hashed, "machine-id"
    return str(uuid.uuid4()), "ephemeral"


def stored_install_id(package: str) -> str | None:
    """The install id stored for ``package``, or None (never creates one)."""
    try:
        with open(_id_file(package), encoding="ascii") as fh:
            return str(uuid.UUID(fh.read(64).strip()))
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
    value = str(uuid.uuid4())
    paths.atomic_write(_id_file(package), value + "\n")
    return value


def attributes(package: str, version: str, *, policy: str, consent_source: str, sdk_version: str) -> dict:
    """Return the resource attributes for one instrumented package."""
    from .. import __version__

    provider = runenv.ci_provider()
    attrs = {
        "service.name": package,
        "service.version": version,
        # A preview must not leave an id behind for someone who never agreed.
        "usagetrace.install.id": install_id(package, create=not os.environ.get("USAGETRACE_PREVIEW_FILE"))[0],
        "usagetrace.session.id": uuid.uuid4().hex,
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
    if provider:
        attrs["usagetrace.ci.provider"] = provider
    return attrs
