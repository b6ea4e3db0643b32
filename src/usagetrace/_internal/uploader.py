"""The uploader: the local aggregate's ended periods, sent as one report per package.

Never runs in a person's process. A run whose fold into the store finds a
period ended starts ``python -m usagetrace._internal.uploader`` detached (as
the spool sender is started), at most once per ``aggregate.SPAWN_GAP_NS``;
``usagetrace flush`` calls :func:`upload` with ``everything=True`` (current
periods too).

For each package: under the store lock, the runs' journal is folded into the
store (``aggregate.compact``), expired periods are deleted and the due buckets
move to the outbox, and the next upload is scheduled (``aggregate.reschedule``); then, without the lock, consent is asked
again for each bucket (``spool.decide``, with the project directory and the
kind of grant recorded with it): a no forgets the package's pending data and
its install id; a grant gone from a source this process reads deletes those
buckets unsent; a grant it cannot see (an environment variable it was not
given) keeps them for an uploader that can. A bucket recorded for another
destination (``OTEL_EXPORTER_OTLP_*`` as the runs had them) is kept, never
sent here. Each bucket becomes OTLP delta sums whose
start and time are the period's first and last nanosecond, plus its exemplar spans, each
starting at the period's start with its own duration (:func:`period_times`:
periods, not moments, leave), sanitized by the same
``pipeline.py`` as realtime data, all of a package's buckets in one traces and
one metrics request over one connection, each through ``receipts.send``.
Buckets leave the outbox once the collector accepted them; a rejected (4xx)
report is dropped and counted (``upload_rejected``); a failed one (no answer,
5xx, 3xx, a lost answer) stays, and the next attempt waits an hour, doubling
up to a day. Every bucket's requests carry its id as ``usagetrace.batch.id``
(``batch.py``): a report the collector stored but whose answer was lost, or
whose uploader was killed, is sent again under the same id and counted once.
"""

from __future__ import annotations

import sys

from . import aggregate, clock, log, paths

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

#: What :func:`upload` reports.
OUTCOMES = ("reports", "runs", "requests", "withdrawn", "expired", "rejected", "failed", "undecided", "elsewhere",
            "set_aside")
UPLOAD_BUDGET = 60.0
MAX_RETRY_NS = aggregate.DAY_NS
#: A temporary store file this old belongs to a run that was killed mid-write.
STALE_TMP_S = 600


def _settings_key(bucket: dict) -> tuple:
    s = bucket["settings"]
    return (s.get("endpoint"), s.get("dev_file"), s.get("destination"))


def requests_for(package: str, buckets: list[dict]) -> list[dict]:
    """The OTLP requests of ``buckets``: ``[{"endpoint", "dev_file", "destination", "payloads": [(signal, bytes,
    ids)]}]``.

    One group per destination (all of a package's buckets normally share
    one); in each, one traces request (exemplar spans not yet delivered) and
    one metrics request (every bucket's counts not yet delivered), several
    resources in each.
    """
    from . import batch, pipeline
    from .resource import with_sdk_version
    from .spool import samples_from_json

    groups: dict[tuple, list[dict]] = {}
    for b in buckets:
        groups.setdefault(_settings_key(b), []).append(b)
    out = []
    for (endpoint, dev_file, destination), group in groups.items():
        spans, parts, span_ids, metric_ids = [], [], [], []
        for b in group:
            sent = b.get("sent") or []
            # The bucket's id rides on its resource: re-uploads carry it again (counted once, batch.py).
            # The SDK's version is added here: daily runs leave it out (resource.attributes), stored earlier ones have it.
            resource = {**with_sdk_version(b["resource"]), batch.KEY: b["id"]}
            pipe = pipeline.Pipeline(resource, lambda: True, frozenset(b["settings"].get("extra_keys") or ()))
            samples = [s for kept in b["exemplars"].values() for s in samples_from_json(kept)]
            if samples and "traces" not in sent:
                spans += pipe.spans(period_times(sorted(samples, key=lambda s: s[1]), b["start_ns"]))
                span_ids.append(b["id"])
            if "metrics" not in sent:
                counts = {tuple(k): v for k, v in b["counts"]}
                if b["runs"]:
                    counts[("runs",)] = b["runs"]
                sums = {tuple(k): v for k, v in b["sums"]}
                # The period's boundaries, never the first and last moment something happened: from its
                # first to its last nanosecond, so a report that dates a point by its time keeps it in its day.
                parts.append(pipe.metrics(counts, b["start_ns"], b["end_ns"] - 1, sums))
                metric_ids.append(b["id"])
        payloads = []
        if spans:
            payloads.append(("traces", pipeline.encode_trace_request(spans), span_ids))
        data = pipeline.merge_metrics(parts)
        if data is not None:
            payloads.append(("metrics", pipeline.encode_metric_request(data), metric_ids))
        out.append({"endpoint": endpoint, "dev_file": dev_file, "destination": destination,
                    "payloads": payloads})
    return out


def period_times(samples: list, period_start_ns: int) -> list[tuple]:
    """Exemplar samples timed relative to their period: each starts at the period's start and keeps its duration.

    A daily or weekly report carries periods, not moments: the time of day of
    a call could be joined with a maintainer's own server logs. Durations stay
    (they are what an exemplar is for); the order of the exemplars is kept by
    the caller's sort, not by their times.
    """
    return [(name, period_start_ns, period_start_ns + max(end - start, 0), attrs, error)
            for name, start, end, attrs, error in samples]


def _done(bucket: dict) -> bool:
    sent = bucket.get("sent") or []
    return "metrics" in sent and ("traces" in sent or not any(bucket["exemplars"].values()))


def _remove_stale_temporaries(package: str) -> None:
    """Delete half-written store files left by runs killed mid-write (``paths.atomic_write`` temporaries)."""
    import os

    path = aggregate.store_path(package)
    folder, name = os.path.split(path)
    try:
        for entry in os.scandir(folder):
            if entry.name.startswith(name + ".") and entry.name.endswith(".tmp") \
                    and _clock.time() - entry.stat().st_mtime > STALE_TMP_S:
                os.unlink(entry.path)
    except OSError:
        pass


def _take(package: str, everything: bool, counts: dict) -> list[dict]:
    """Move the due buckets to the outbox (expiring old ones); return the outbox."""
    _remove_stale_temporaries(package)
    now = _clock.time_ns()
    with aggregate.Store(package) as store:
        doc = store.doc
        counts["set_aside"] += int(store.set_aside)
        folded = aggregate.compact(store)  # the runs' journal into the store (bounded, never twice)
        expired = aggregate.expire(doc, now)
        counts["expired"] += expired
        due = [b for b in doc["buckets"] if everything or b["end_ns"] <= now]
        if due:
            ids = {b["id"] for b in due}
            doc["buckets"] = [b for b in doc["buckets"] if b["id"] not in ids]
            doc["outbox"] += due
        if due or expired or store.set_aside or folded:
            store.save()
        aggregate.finished(folded)
        if not doc["outbox"]:
            aggregate.reschedule(package, doc, now)
        return list(doc["outbox"])


def _decide(package: str, outbox: list[dict], counts: dict, override=None):
    """Consent and destination per bucket: (the buckets to send now, ids to delete unsent), or None after a no."""
    from . import spool

    sendable, withdrawn = [], set()
    for b in outbox:
        answer, decision = spool.decide(package, b["settings"])
        if answer == spool.NO:
            from .forget import forget

            forget(package, install_id=True)  # a no: the package's pending data and its id are deleted
            counts["withdrawn"] += len(outbox)
            return None
        if answer == spool.WITHDRAWN:
            withdrawn.add(b["id"])
        elif answer == spool.UNDECIDED:
            counts["undecided"] += 1  # a grant this process cannot see: kept, not sent
        elif override is None and not spool.same_destination(b["settings"].get("destination")):
            counts["elsewhere"] += 1  # recorded for another destination: kept, never sent here
        else:
            sendable.append(b)
    counts["withdrawn"] += len(withdrawn)
    return sendable, withdrawn


def _upload_package(package: str, everything: bool, deadline: float, override, counts: dict) -> None:
    from . import config, receipts, state
    from . import transport as _transport

    outbox = _take(package, everything, counts)
    if not outbox:
        return
    decided = _decide(package, outbox, counts, override)
    if decided is None:
        return
    sendable, withdrawn = decided
    sent: dict[str, set] = {}
    rejected: set = set()
    failed = False
    retry_s = 0.0
    session = _transport.HttpSession()
    try:
        for group in requests_for(package, sendable):
            for signal, payload, ids in group["payloads"]:
                now = _clock.monotonic()
                if now >= deadline:
                    failed = True
                    break
                target = config.resolve(signal, group["endpoint"], package, group["dev_file"])
                transport = override if override is not None else _transport.for_target(target, session)
                result = receipts.send(transport, target, package, signal, payload, min(target.timeout, deadline - now))
                if result == _transport.OK:
                    counts["requests"] += 1
                    for i in ids:
                        sent.setdefault(i, set()).add(signal)
                elif result == _transport.DROP:
                    rejected.update(ids)  # never accepted as it is: the whole report goes
                else:
                    failed = True
                    retry_s = max(retry_s, float(result))
    finally:
        session.close()
    now_ns = _clock.time_ns()
    with aggregate.Store(package) as store:
        doc = store.doc
        kept, delivered = [], []
        for b in doc["outbox"]:
            if b["id"] in rejected or b["id"] in withdrawn:
                continue
            if b["id"] in sent:
                b["sent"] = sorted(set(b.get("sent") or []) | sent[b["id"]])
            (delivered if _done(b) else kept).append(b)
        doc["outbox"] = kept
        meta = doc["meta"]
        n_rejected = len(rejected & {b["id"] for b in outbox})
        if n_rejected:
            aggregate._drop(doc, "upload_rejected", n_rejected)
            meta["rejected"] = int(meta.get("rejected", 0)) + n_rejected
        if delivered:
            meta["last_upload"] = {"time": clock.utc(),
                                   "reports": len(delivered), "runs": sum(b["runs"] for b in delivered),
                                   "periods": sorted({b["period"] for b in delivered})}
        if failed:
            meta["failures"] = int(meta.get("failures", 0)) + 1
            wait = max(aggregate.RETRY_NS * 2 ** min(meta["failures"] - 1, 5), int(retry_s * 1e9))
            meta["retry_ns"] = now_ns + min(wait, MAX_RETRY_NS)
        else:
            meta.pop("failures", None)
            meta.pop("retry_ns", None)
        store.save()
        aggregate.reschedule(package, doc, now_ns)
    counts["reports"] += len(delivered)
    counts["runs"] += sum(b["runs"] for b in delivered)
    counts["rejected"] += n_rejected
    tried = {b["id"] for b in sendable}
    counts["failed"] += sum(1 for b in kept if b["id"] in tried)
    if delivered and override is None:
        first = outbox[0]["settings"]
        state.remember_package(package, {k: first.get(k) for k in ("policy", "ci", "endpoint", "consent_version")})


def upload(packages=None, *, everything: bool = False, deadline: float | None = None, override=None) -> dict:
    """Upload due periods (``everything``: all pending) of ``packages`` (default: every store); return counts.

    ``{outcome: number}`` for :data:`OUTCOMES` (reports and runs delivered,
    requests accepted, reports withdrawn / expired / rejected / kept after a
    failure, broken stores set aside) plus ``busy`` (packages another uploader
    was working on: not looked at). Never raises.
    """
    counts: dict = dict.fromkeys(OUTCOMES, 0)
    counts["busy"] = 0
    deadline = deadline if deadline is not None else _clock.monotonic() + UPLOAD_BUDGET
    for package in aggregate.packages() if packages is None else packages:
        try:
            # ``everything`` is a person's ``usagetrace flush``: wait (bounded by the deadline) for a detached
            # uploader at work on the package to finish rather than skip it; the detached one never waits.
            wait = min(30.0, max(0.0, deadline - _clock.monotonic())) if everything else 0.0
            with paths.locked(aggregate.store_path(package) + ".upload.lock", timeout=wait):
                _upload_package(package, everything, deadline, override, counts)
        except paths.LockTimeout:
            counts["busy"] += 1
        except Exception:
            log.debug("upload of %s failed", package, exc_info=True)
            counts["failed"] += 1
    return counts


def main(argv: list | None = None) -> int:
    """Entry point of the detached uploader."""
    from .spool import run_detached

    return run_detached(upload, argv)


if __name__ == "__main__":
    sys.exit(main())
