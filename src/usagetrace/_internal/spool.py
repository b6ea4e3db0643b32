"""The spool: telemetry a process could not send before exiting, waiting on disk.

Each file holds one package's pending data from one process, as JSON: raw
samples and count increments (turned into spans and delta sums by whoever
sends it, with their original timestamps) and already-encoded OTLP requests.

Bounds: at most ``MAX_FILES`` files and ``MAX_BYTES`` bytes; files older than
``MAX_AGE`` are deleted unsent. Consent is checked again before sending, so a
withdrawal in between means the file is deleted, not sent.

``python -m usagetrace._internal.spool`` is the detached sender a process
starts at exit: it delivers the spool within ``SENDER_BUDGET`` seconds and exits.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

from . import log, paths

VERSION = 1
MAX_FILES = 200
MAX_BYTES = 32 * 1024 * 1024
MAX_AGE = 7 * 24 * 3600
SENDER_BUDGET = 20.0
_LOCK_STALE = 60.0


def _files(directory: str) -> list[tuple[float, str, int]]:
    out = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    for entry in entries:
        if entry.name.endswith(".json"):
            try:
                st = entry.stat()
                out.append((st.st_mtime, entry.path, st.st_size))
            except OSError:
                continue
    return sorted(out)


def write(channel, samples, deltas, start_ns, end_ns, payloads) -> bool:
    """Write one package's pending data; return True when written. Enforces the bounds."""
    try:
        directory = paths.spool_dir()
        h = channel.handle
        existing = _files(directory)
        dropped = 0
        total = sum(size for _, _, size in existing)
        while existing and (len(existing) >= MAX_FILES or total > MAX_BYTES):
            _, path, size = existing.pop(0)
            try:
                os.unlink(path)
                dropped += 1
                total -= size
            except OSError:
                break
        if dropped:
            deltas = dict(deltas)
            deltas[("dropped", "spool_full")] = deltas.get(("dropped", "spool_full"), 0) + dropped
        doc = {
            "v": VERSION,
            "package": h.package,
            "policy": h.policy,
            "ci": h.ci,
            "endpoint": h.endpoint,
            "dev_file": h.options.get("dev_file"),
            "extra_keys": sorted(h.options.get("_extra_keys", ())),
            "resource": channel.resource_attributes(),
            "start_ns": start_ns,
            "end_ns": end_ns,
            "samples": [list(s) for s in samples],
            "counts": [[list(k), v] for k, v in deltas.items()],
            "payloads": [[signal, base64.b64encode(p).decode("ascii")] for signal, p in payloads],
        }
        name = f"{int(time.time() * 1000)}-{os.getpid()}-{h.package}.json"
        paths.atomic_write(os.path.join(directory, name), json.dumps(doc, separators=(",", ":")))
        return True
    except Exception:
        log.debug("cannot write the spool; pending telemetry dropped", exc_info=True)
        return False


def spawn_sender() -> bool:
    """Start the detached sender process; never waits for it."""
    if getattr(sys, "frozen", False) or not sys.executable:
        return False  # a frozen app's executable is the app itself
    try:
        import subprocess

        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        subprocess.Popen(
            [sys.executable, "-m", "usagetrace._internal.spool", "--after", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            **kwargs,
        )
        return True
    except Exception:
        log.debug("cannot start the detached sender", exc_info=True)
        return False


def _send_file(path: str, deadline: float, override=None) -> bool:
    """Deliver one spool file; return True when it can be deleted."""
    from . import config, consent, pipeline
    from . import transport as _transport

    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        return True  # unknown format: nothing we can send
    package = str(doc["package"])
    state = consent.resolve(package, doc.get("policy", consent.OPT_IN), ci=doc.get("ci", "off"),
                            under_pytest=False, notice_shown=True)
    if not state.enabled:
        return True  # withdrawn since: delete unsent
    payloads = [(signal, base64.b64decode(data)) for signal, data in doc.get("payloads", [])]
    samples = [tuple(s) for s in doc.get("samples", [])]
    counts = {tuple(k): int(v) for k, v in doc.get("counts", [])}
    if samples or counts:
        pipe = pipeline.Pipeline(doc.get("resource", {}), lambda: True, frozenset(doc.get("extra_keys", ())))
        fixed = []
        for name, start, end, attrs, error in samples:
            if error is not None:
                type_name, frames, signature = error
                error = (type_name, [tuple(f) for f in frames], signature)
            fixed.append((name, int(start), int(end), dict(attrs), error))
        spans = pipe.spans(fixed)
        if spans:
            payloads.append(("traces", pipeline.encode_trace_request(spans)))
        data = pipe.metrics(counts, int(doc.get("start_ns", 0)), int(doc.get("end_ns", 0)))
        if data is not None:
            payloads.append(("metrics", pipeline.encode_metric_request(data)))
    remaining = []
    for signal, payload in payloads:
        now = time.monotonic()
        if now >= deadline:
            remaining.append((signal, payload))
            continue
        target = config.resolve(signal, doc.get("endpoint"), package, doc.get("dev_file"))
        transport = override if override is not None else _transport.for_target(target)
        result = transport.send(signal, payload, min(target.timeout, deadline - now))
        if result not in (_transport.OK, _transport.DROP):
            remaining.append((signal, payload))
    if not remaining:
        return True
    # Keep what failed, already encoded, for the next attempt.
    doc["samples"], doc["counts"] = [], []
    doc["payloads"] = [[s, base64.b64encode(p).decode("ascii")] for s, p in remaining]
    paths.atomic_write(path, json.dumps(doc, separators=(",", ":")))
    return False


def deliver(packages: set | None = None, deadline: float | None = None, override=None) -> int:
    """Send spooled files (of ``packages`` only, if given); return how many were delivered."""
    directory = paths.spool_dir()
    deadline = deadline if deadline is not None else time.monotonic() + SENDER_BUDGET
    lock = os.path.join(directory, ".lock")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        try:
            if time.time() - os.stat(lock).st_mtime > _LOCK_STALE:
                os.unlink(lock)
        except OSError:
            pass
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return 0  # another sender is at work
    delivered = 0
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        for mtime, path, _ in _files(directory):
            if time.monotonic() >= deadline:
                break
            name = os.path.basename(path)
            package = name.split("-", 2)[-1][: -len(".json")] if name.count("-") >= 2 else ""
            if packages is not None and package not in packages:
                continue
            try:
                if time.time() - mtime > MAX_AGE or _send_file(path, deadline, override):
                    os.unlink(path)
                    delivered += 1
            except Exception:
                log.debug("spool file %s unusable; deleting it", path, exc_info=True)
                try:
                    os.unlink(path)
                except OSError:
                    pass
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
    return delivered


PARENT_WAIT = 2.0


def _yield_to_parent(argv: list) -> None:
    """With ``--after PID``: lower our priority and wait (at most ``PARENT_WAIT`` s) until PID has exited.

    The sender is spawned by a process that is exiting; its own start-up and
    the OTel SDK import would otherwise compete with that exit for the CPU.
    """
    try:
        if "--after" not in argv:
            return
        pid = int(argv[argv.index("--after") + 1])
        if hasattr(os, "nice"):
            os.nice(10)
        deadline = time.monotonic() + PARENT_WAIT
        while os.getppid() == pid and time.monotonic() < deadline:
            time.sleep(0.01)
    except Exception:
        pass


def main(argv: list | None = None) -> int:
    """Entry point of the detached sender."""
    try:
        _yield_to_parent(sys.argv[1:] if argv is None else argv)
        deliver()
    except Exception:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
