"""Receipts: a bounded local record of every export that left the machine, per package.

Every network send goes through :func:`send`: in-process delivery, the
detached spool sender and any later uploader alike, so nothing leaves without
a receipt. A receipt says when, to which endpoint (``scheme://host:port`` only:
no path, query or credentials), which protocol and signal, how many bytes went
on the wire, what the endpoint answered, and what the request contained,
decoded to OTLP/JSON (``usagetrace history`` renders it the way
``usagetrace preview`` does). A request that certainly did not leave (no
connection) gets no receipt, only an entry as the package's latest attempt.

Storage: ``<state dir>/receipts/<package>.jsonl``, one receipt per line, at
most ``MAX_BYTES`` per package (the oldest are dropped first), and
``<package>.last.json`` with the latest attempt and the latest delivery, for
``usagetrace status``. Appends and trims hold a lock, so concurrent senders
interleave whole lines. Recording never raises into the sender.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from . import clock, log, otlp_json, paths
from . import transport as _transport

MAX_BYTES = 2 * 1024 * 1024
#: A receipt whose decoded request is larger keeps its summary, not its content.
MAX_RECEIPT_BYTES = 512 * 1024
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _dir() -> str:
    return paths.state_path("receipts")


def _file(package: str, suffix: str) -> str:
    safe = "".join(ch if ch in _SAFE else "_" for ch in package)[:100] or "_"
    return os.path.join(_dir(), safe + suffix)


def endpoint_of(target) -> str:
    """``scheme://host:port`` of a network target: what a receipt keeps of the address."""
    if target.kind == "grpc":
        host, _, port = target.url.rpartition(":")
        scheme = "https" if target.secure else "http"
    else:
        parts = urlsplit(target.url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
    host = host.strip("[]")
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def send(transport, target, package: str, signal: str, payload: bytes, timeout: float):
    """Send one encoded request with ``transport`` and record what left the machine; return its result."""
    network = getattr(transport, "sends_over_network", False) is True
    if network:
        _transport.forget_attempt()
    result = transport.send(signal, payload, timeout)
    if network:
        try:
            record(package, target, signal, payload, result, _transport.last_attempt())
        except Exception:
            log.internal_error("receipts.record")
    return result


def record(package: str, target, signal: str, payload: bytes, result, attempt: tuple) -> None:
    """Write the receipt (when the request left) and the package's latest-attempt record."""
    reached, outcome, size = attempt
    when = clock.utc()
    endpoint = endpoint_of(target)
    accepted = result == _transport.OK
    summary = {"time": when, "signal": signal, "endpoint": endpoint, "outcome": outcome or str(result),
               "accepted": accepted}
    path = _file(package, ".jsonl")
    with paths.locked(path + ".lock", timeout=5.0):
        last = _load_last(package)
        last["attempt"] = summary
        if accepted:
            last["delivered"] = summary
        paths.atomic_write(_file(package, ".last.json"), json.dumps(last, sort_keys=True))
        if reached is False:
            return
        receipt = {
            "time": when,
            "package": package,
            "signal": signal,
            "endpoint": endpoint,
            "protocol": target.protocol,
            "bytes": size,
            "outcome": outcome or str(result),
            "accepted": accepted,
            "left_machine": "yes" if reached else "unknown (no answer)",
            "request": otlp_json.to_dict(signal, payload),
        }
        line = json.dumps(receipt, separators=(",", ":"), sort_keys=True)
        if len(line) > MAX_RECEIPT_BYTES:
            receipt["request"] = None
            receipt["omitted"] = (f"the decoded request is {len(line)} bytes, more than the "
                                  f"{MAX_RECEIPT_BYTES // 1024} KiB kept per receipt; the summary below is complete")
            receipt["summary"] = _summary(signal, payload)
            line = json.dumps(receipt, separators=(",", ":"), sort_keys=True)
        _append(path, line + "\n")


def _summary(signal: str, payload: bytes) -> dict:
    from ..testing import flatten

    items = flatten(signal, otlp_json.to_dict(signal, payload))
    if signal == "traces":
        names: dict[str, int] = {}
        for span in items:
            names[span["name"]] = names.get(span["name"], 0) + 1
        return {"spans": len(items), "span_names": names}
    return {"points": len(items), "metrics": sorted({p["metric"] for p in items})}


def _append(path: str, line: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        _trim(path)


def _trim(path: str) -> None:
    """Keep the newest receipts that fit in half the budget (so trimming is rare)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
    kept, total = [], 0
    for line in reversed(lines):
        total += len(line.encode("utf-8"))
        if total > MAX_BYTES // 2:
            break
        kept.append(line)
    paths.atomic_write(path, "".join(reversed(kept)))


def _load_last(package: str) -> dict:
    try:
        with open(_file(package, ".last.json"), encoding="utf-8") as fh:
            data = json.loads(fh.read(64 * 1024))
        return data if isinstance(data, dict) else {}
    except Exception:
        return {}


def last(package: str) -> dict:
    """``{"attempt": {...}, "delivered": {...}}`` for ``package`` (either may be missing)."""
    return _load_last(package)


def load(package: str) -> tuple[list[dict], int]:
    """Return (receipts oldest first, number of unreadable lines skipped)."""
    out, bad = [], 0
    try:
        with open(_file(package, ".jsonl"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if isinstance(item, dict):
                    out.append(item)
                else:
                    bad += 1
    except FileNotFoundError:
        pass
    return out, bad


def count(package: str) -> int:
    """How many receipts ``package`` has (lines counted, not parsed)."""
    try:
        with open(_file(package, ".jsonl"), "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))
    except OSError:
        return 0


def packages() -> list[str]:
    """Packages that have receipts or a recorded attempt here."""
    try:
        names = os.listdir(_dir())
    except OSError:
        return []
    found = set()
    for name in names:
        for suffix in (".last.json", ".jsonl"):
            if name.endswith(suffix):
                found.add(name[: -len(suffix)])
                break
    return sorted(found)
