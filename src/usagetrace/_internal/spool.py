"""The spool: telemetry a process could not send before exiting, waiting on disk.

Each file holds one package's pending data from one process, as JSON: raw
samples and count increments (turned into spans and delta sums by whoever
sends it, with their original timestamps) and already-encoded OTLP requests.

Bounds: at most ``MAX_FILES`` files and ``MAX_BYTES`` bytes; files older than
``MAX_AGE`` are deleted unsent. Consent is checked again before sending
(:func:`decide`, with the project directory of the run that wrote the file):
a "no" means the file is deleted, not sent; a grant this process cannot see
(an environment variable it was not given) keeps the file for a sender that
can. Each file keeps its destination: the ``OTEL_EXPORTER_OTLP_*`` variables
that chose it are recorded, and a sender configured otherwise keeps the file
rather than send it elsewhere. :func:`deliver` reports what happened to each
file (delivered, withdrawn, expired, rejected, failed and kept, undecided,
elsewhere, unreadable) for ``usagetrace flush``.

Exactly once: every request carries a ``usagetrace.batch.id`` (``batch.py``).
The sender first turns a file's raw samples and counts into requests, each
with its id, and writes them back, then sends them; a file is rewritten
after each accepted request. A sender killed at any point, a lock taken over
while an old sender still sends, or an answer lost after the collector stored
the request: the next attempt sends the same bytes under the same id, which
storage counts once.

``python -m usagetrace._internal.spool`` is the detached sender a process
starts at exit: it delivers the spool within ``SENDER_BUDGET`` seconds and exits.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from . import clock, log, paths

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

VERSION = 2
MAX_FILES = 200
MAX_BYTES = 32 * 1024 * 1024
MAX_AGE = 7 * 24 * 3600
SENDER_BUDGET = 20.0


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


def destination_env() -> str:
    """A digest of the destination-deciding variables as set now: :func:`config.destination_env`."""
    from .config import destination_env

    return destination_env()


#: :func:`decide` answers.
SEND, NO, WITHDRAWN, UNDECIDED = "send", "no", "withdrawn", "undecided"


def decide(package: str, settings: dict):
    """Whether data recorded under ``settings`` may be sent now: ``(answer, consent decision)``.

    SEND: consent is on. NO: the person said no (or DO_NOT_TRACK): delete,
    install id too. WITHDRAWN: the grant the data was recorded under is gone
    from a source this process reads (the user's file, the policy): delete
    unsent. UNDECIDED: the grant came from a source this process cannot see
    (an environment variable it was not given) or consent cannot be read:
    keep, send nothing (only a "no" deletes).
    """
    from . import consent

    version = settings.get("consent_version")
    # No project files here: they can only say no, and the run that recorded the data read those of its
    # directory (which is not kept: the current directory is the person's, never written down).
    decision = consent.resolve(package, settings.get("policy") or consent.OPT_IN, ci=settings.get("ci") or "off",
                               under_pytest=False, notice_shown=True,
                               consent_version=None if version is None else str(version),
                               project_dir=consent.NO_PROJECT)
    if decision.enabled:
        return SEND, decision
    if decision.state == consent.DENIED:
        return NO, decision
    grant = str(settings.get("grant") or "")
    unseen = decision.state == consent.INVALID or decision.source in ("error", "ci") or grant == "env"
    return (UNDECIDED if unseen else WITHDRAWN), decision


def same_destination(recorded) -> bool:
    """True when this process sends where data recorded with ``recorded`` (:func:`destination_env`) must go."""
    return recorded is None or recorded == destination_env()


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
            "consent_version": h.consent_version,
            "grant": str(h.consent.source).split(":", 1)[0],
            "endpoint": h.endpoint,
            "destination": destination_env(),
            "dev_file": h.options.get("dev_file"),
            "extra_keys": sorted(h.options.get("_extra_keys", ())),
            "resource": channel.resource_attributes(),
            "start_ns": start_ns,
            "end_ns": end_ns,
            "samples": [list(s) for s in samples],
            "counts": [[list(k), v] for k, v in deltas.items()],
            "payloads": [[signal, base64.b64encode(p).decode("ascii")] for signal, p in payloads],
        }
        name = f"{int(_clock.time() * 1000)}-{os.getpid()}-{h.package}.json"
        paths.atomic_write(os.path.join(directory, name), json.dumps(doc, separators=(",", ":")))
        return True
    except Exception:
        log.debug("cannot write the spool; pending telemetry dropped", exc_info=True)
        return False


def samples_from_json(items) -> list[tuple]:
    """Samples as :class:`recorder.Sample` fields again, from their JSON form (lists). Raises on a bad shape."""
    out = []
    for name, start, end, attrs, error in items:
        if error is not None:
            type_name, frames, signature = error
            error = (str(type_name), [(str(m), str(f), int(line)) for m, f, line in frames], str(signature))
        if not isinstance(attrs, dict):
            raise ValueError("sample attributes are not a mapping")
        out.append((str(name), int(start), int(end), dict(attrs), error))
    return out


#: The detached process's first lines (``python -I -c``): the host's import path minus the places
#: that belong to the host's directory, then ``main`` of the module named in argv[1].
_BOOT = (
    "import sys\n"
    "own, extra = {own!r}, {extra!r}\n"
    "i = next((k for k, p in enumerate(sys.path) if p.endswith('-packages')), len(sys.path))\n"
    "sys.path[i:i] = [p for p in own if p not in sys.path]\n"
    "sys.path += [p for p in extra if p not in sys.path]\n"
    "import importlib\n"
    "sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))\n"
)


def _import_path() -> tuple[list, list]:
    """(where usagetrace itself was imported from, the host's other absolute import-path entries).

    Never the current directory, nothing relative, and not ``sys.path[0]`` (the
    host script's directory or ``''``): those are where a planted ``json.py``
    or ``usagetrace/`` would come from. The rest is appended after the
    standard library, so nothing there can shadow it.
    """
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    extra = []
    for p in sys.path[1:]:
        if isinstance(p, str) and p and os.path.isabs(p) and p != cwd and p != here and p not in extra:
            extra.append(p)
    return [here], extra


def safe_directory() -> str:
    """Where a detached process runs: never the host's directory (its files are not ours to see)."""
    if os.name == "nt":
        return os.environ.get("SystemRoot") or os.path.splitdrive(sys.executable)[0] + "\\"
    return "/"


def spawn_sender(module: str = "usagetrace._internal.spool", *args: str) -> bool:
    """Start ``module``'s ``main`` as a detached, isolated process; never waits for it to work.

    Isolated: ``python -I`` (no current directory or script directory on
    ``sys.path``, no ``PYTHON*`` variables, no user site), the import path
    given explicitly (:func:`_import_path`), running in ``/``; what it needs
    from the host's directory (the project consent files) is recorded with
    the data, not looked up in its own directory.

    Never the host's child (POSIX, Linux and macOS alike): ``/bin/sh`` in a
    new session starts the sender in the background and exits at once; we
    reap that shell ourselves (``waitpid`` on its pid only, ~1 ms), so the
    sender is re-parented to init: no zombie, and neither ``os.wait()``,
    ``waitpid(-1)``, ``subprocess`` bookkeeping nor ``/proc/<pid>/task/*/children``
    of the host ever sees it. Windows has no parent/child waiting: the
    sender is started ``DETACHED_PROCESS`` in a new process group, in the
    system directory, with ``-I`` as well.
    """
    if getattr(sys, "frozen", False) or not sys.executable:
        return False  # a frozen app's executable is the app itself
    try:
        import subprocess

        own, extra = _import_path()
        command = [sys.executable, "-I", "-c", _BOOT.format(own=own, extra=extra), module,
                   "--after", str(os.getpid()), *args]
        common = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      close_fds=True, cwd=safe_directory())
        if os.name == "nt":
            # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
            subprocess.Popen(command, creationflags=0x00000008 | 0x00000200, **common)
            return True
        if os.path.exists("/bin/sh"):
            shell = ["/bin/sh", "-c", '"$@" &', "sh", *command]
        else:  # no shell (a distroless image): a Python intermediate, a little slower
            shell = [sys.executable, "-I", "-c",
                     "import os, sys\nif os.fork() == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n",
                     *command]
        proc = subprocess.Popen(shell, start_new_session=True, **common)
        try:
            proc.wait(timeout=5.0)  # the intermediate only forks: it is gone in about a millisecond
        except subprocess.TimeoutExpired:
            pass  # left in subprocess's own list, reaped there: never a zombie of the host
        return True
    except Exception:
        log.debug("cannot start the detached sender", exc_info=True)
        return False


#: What :func:`deliver` reports, per file.
OUTCOMES = ("delivered", "withdrawn", "expired", "rejected", "failed", "undecided", "elsewhere", "unreadable")


def _written_at(name: str, path: str) -> float:
    """When a spool file was first written: its name says (rewrites after partial sends change its mtime)."""
    mtime = os.stat(path).st_mtime
    try:
        return min(int(name.split("-", 1)[0]) / 1000.0, mtime)
    except ValueError:
        return mtime


def _package_of(name: str) -> str:
    return name.split("-", 2)[-1][: -len(".json")] if name.count("-") >= 2 else ""


def _encode_pending(path: str, doc: dict) -> None:
    """Turn the file's raw samples and counts into requests with their ids, and write that back first.

    From then on the file holds only finished requests: whatever happens, they
    are sent as these bytes, never re-encoded under a new id.
    """
    from . import batch, pipeline

    samples = samples_from_json(doc.get("samples", []))
    counts = {tuple(k): int(v) for k, v in doc.get("counts", [])}
    if not samples and not counts:
        return
    payloads = doc.setdefault("payloads", [])
    pipe = pipeline.Pipeline(doc.get("resource", {}), lambda: True, frozenset(doc.get("extra_keys", ())))
    spans = pipe.spans(samples)
    if spans:
        payload = batch.with_id(pipeline.encode_trace_request(spans), batch.new_id())
        payloads.append(["traces", base64.b64encode(payload).decode("ascii")])
    data = pipe.metrics(counts, int(doc.get("start_ns", 0)), int(doc.get("end_ns", 0)))
    if data is not None:
        payload = batch.with_id(pipeline.encode_metric_request(data), batch.new_id())
        payloads.append(["metrics", base64.b64encode(payload).decode("ascii")])
    doc["samples"], doc["counts"] = [], []
    paths.atomic_write(path, json.dumps(doc, separators=(",", ":")))


def _send_file(path: str, deadline: float, override=None) -> tuple[str, int]:
    """Deliver one spool file; return (outcome, requests accepted).

    "delivered", "withdrawn", "rejected", "unreadable" delete it; "failed",
    "undecided" and "elsewhere" keep it.
    """
    from . import config, pipeline, receipts, state
    from . import transport as _transport
    from .forget import forget

    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("v") not in (1, VERSION):
        return "unreadable", 0  # unknown format: nothing we can send
    package = str(doc["package"])
    answer, decision = decide(package, doc)
    if answer == NO:
        forget(package, install_id=True)  # a no: everything of the package goes, this file too
        return "withdrawn", 0
    if answer == WITHDRAWN:
        return "withdrawn", 0  # the grant it was recorded under is gone: delete unsent
    if answer == UNDECIDED:
        return "undecided", 0  # a grant we cannot see is not a no: keep it for a sender that can
    if override is None and not same_destination(doc.get("destination")):
        return "elsewhere", 0  # recorded for another destination than this process's: never sent here
    del pipeline  # imported above so a broken install fails here, before anything is rewritten
    _encode_pending(path, doc)
    accepted = rejected = 0
    remaining = [(signal, base64.b64decode(data)) for signal, data in doc.get("payloads", [])]
    while remaining:
        now = _clock.monotonic()
        if now >= deadline:
            break
        signal, payload = remaining[0]
        target = config.resolve(signal, doc.get("endpoint"), package, doc.get("dev_file"))
        transport = override if override is not None else _transport.for_target(target)
        result = receipts.send(transport, target, package, signal, payload, min(target.timeout, deadline - now))
        if result == _transport.OK or result == _transport.DROP:
            remaining.pop(0)
            if result == _transport.OK:
                accepted += 1
            else:
                rejected += 1
            if remaining:  # what is left, without what was answered: a kill now resends only the rest
                doc["payloads"] = [[s, base64.b64encode(p).decode("ascii")] for s, p in remaining]
                paths.atomic_write(path, json.dumps(doc, separators=(",", ":")))
            continue
        break  # failed (or 3xx/5xx: retry later): keep this and the rest, same bytes, same ids
    if accepted and override is None:
        settings = {k: doc.get(k) for k in ("policy", "ci", "endpoint", "consent_version")}
        settings["target"] = config.resolve("traces", doc.get("endpoint"), package, doc.get("dev_file")).describe()
        state.remember_package(package, settings)
    if not remaining:
        return ("rejected" if rejected else "delivered"), accepted
    return "failed", accepted


def deliver(packages: set | None = None, deadline: float | None = None, override=None) -> dict:
    """Send spooled files (of ``packages`` only, if given); return what happened to them.

    ``{outcome: number of files}`` for each of :data:`OUTCOMES`, plus
    ``requests`` (requests the collector accepted), ``left`` (files not
    reached before the deadline) and ``busy`` (True when another sender held
    the spool, so nothing was looked at).
    """
    counts: dict = dict.fromkeys(OUTCOMES, 0)
    counts.update(requests=0, left=0, busy=False)
    directory = paths.spool_dir()
    deadline = deadline if deadline is not None else _clock.monotonic() + SENDER_BUDGET
    # The operating system's lock (flock): released when its holder exits or is killed, so it is never
    # stale and never taken over while an old sender still sends.
    try:
        lock = paths.locked(os.path.join(directory, ".lock"), timeout=0.0)
        lock.__enter__()
    except paths.LockTimeout:
        counts["busy"] = True  # another sender is at work
        return counts
    except OSError:
        return counts  # no spool directory can exist here: nothing is spooled
    try:
        for _, path, _ in _files(directory):
            name = os.path.basename(path)
            if packages is not None and _package_of(name) not in packages:
                continue
            if _clock.monotonic() >= deadline:
                counts["left"] += 1
                continue
            try:
                if _clock.time() - _written_at(name, path) > MAX_AGE:
                    outcome, accepted = "expired", 0
                else:
                    outcome, accepted = _send_file(path, deadline, override)
            except Exception:
                log.debug("spool file %s unusable; deleting it", path, exc_info=True)
                outcome, accepted = "unreadable", 0
            counts[outcome] += 1
            counts["requests"] += accepted
            if outcome not in ("failed", "undecided", "elsewhere"):
                try:
                    os.unlink(path)
                except OSError:
                    pass
    finally:
        lock.__exit__(None, None, None)
    return counts


def discard(package: str) -> int:
    """Delete every spooled file of ``package`` unsent; return how many were deleted."""
    deleted = 0
    for _, path, _ in _files(paths.spool_dir()):
        if _package_of(os.path.basename(path)) == package:
            try:
                os.unlink(path)
                deleted += 1
            except OSError:
                pass
    return deleted


PARENT_WAIT = 2.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


def _yield_to_parent(argv: list) -> None:
    """With ``--after PID``: lower our priority and wait (at most ``PARENT_WAIT`` s) until PID has exited.

    The sender is spawned by a process that is exiting; its own start-up and
    the OTel SDK import would otherwise compete with that exit for the CPU.
    (PID is not our parent: we were re-parented to init.)
    """
    try:
        if "--after" not in argv:
            return
        pid = int(argv[argv.index("--after") + 1])
        if hasattr(os, "nice"):
            os.nice(10)
        deadline = _clock.monotonic() + PARENT_WAIT
        while os.name != "nt" and _alive(pid) and _clock.monotonic() < deadline:
            _clock.sleep(0.01)
    except Exception:
        pass


def run_detached(work, argv: list | None = None) -> int:
    """A detached process's whole life: let the exiting parent go first, do ``work``, exit 0 whatever happens."""
    try:
        _yield_to_parent(sys.argv[1:] if argv is None else argv)
        work()
    except Exception:
        pass
    return 0


def main(argv: list | None = None) -> int:
    """Entry point of the detached sender."""
    return run_detached(deliver, argv)


if __name__ == "__main__":
    sys.exit(main())
