"""The uploader: the local aggregate's ended periods, sent as one report per package.

Never runs in a person's process. A run whose fold into the store finds a
period ended starts ``python -m usagetrace._internal.uploader`` detached (as
the spool sender is started), at most once per ``aggregate.SPAWN_GAP_NS``;
``usagetrace flush`` calls :func:`upload` with ``everything=True`` (current
periods too).

For each package: under the store lock, expired periods are deleted and the
due buckets move to the outbox; then, without the lock, consent is asked
again (not on: the package's pending data is forgotten unsent, and its install
id too when the answer is a no); each bucket becomes OTLP delta sums whose
start and time are the period's first and last nanosecond, plus its exemplar spans, each
starting at the period's start with its own duration (:func:`period_times`:
periods, not moments, leave), sanitized by the same
``pipeline.py`` as realtime data, all of a package's buckets in one traces and
one metrics request over one connection, each through ``receipts.send``.
Buckets leave the outbox once the collector accepted them; a rejected (4xx)
report is dropped and counted (``upload_rejected``); a failed one stays, and
the next attempt waits an hour, doubling up to a day.
"""

from __future__ import annotations

import sys

from . import aggregate, clock, log, paths

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

#: What :func:`upload` reports.
OUTCOMES = ("reports", "runs", "requests", "withdrawn", "expired", "rejected", "failed", "set_aside")
UPLOAD_BUDGET = 60.0
MAX_RETRY_NS = aggregate.DAY_NS
#: A temporary store file this old belongs to a run that was killed mid-write.
STALE_TMP_S = 600


def _settings_key(bucket: dict) -> tuple:
    s = bucket["settings"]
    return (s.get("endpoint"), s.get("dev_file"))


def requests_for(package: str, buckets: list[dict]) -> list[dict]:
    """The OTLP requests of ``buckets``: ``[{"endpoint", "dev_file", "payloads": [(signal, bytes, ids)]}]``.

    One group per destination (all of a package's buckets normally share
    one); in each, one traces request (exemplar spans not yet delivered) and
    one metrics request (every bucket's counts not yet delivered), several
    resources in each.
    """
    from . import pipeline
    from .spool import samples_from_json

    groups: dict[tuple, list[dict]] = {}
    for b in buckets:
        groups.setdefault(_settings_key(b), []).append(b)
    out = []
    for (endpoint, dev_file), group in groups.items():
        spans, parts, span_ids, metric_ids = [], [], [], []
        for b in group:
            sent = b.get("sent") or []
            pipe = pipeline.Pipeline(b["resource"], lambda: True, frozenset(b["settings"].get("extra_keys") or ()))
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
        out.append({"endpoint": endpoint, "dev_file": dev_file, "payloads": payloads})
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
        expired = aggregate.expire(doc, now)
        counts["expired"] += expired
        due = [b for b in doc["buckets"] if everything or b["end_ns"] <= now]
        if due:
            ids = {b["id"] for b in due}
            doc["buckets"] = [b for b in doc["buckets"] if b["id"] not in ids]
            doc["outbox"] += due
        if due or expired or store.set_aside:
            store.save()
        return list(doc["outbox"])


def _allowed(package: str, outbox: list[dict]):
    """The consent decision that forbids sending any of ``outbox``, or None when all may be sent."""
    from . import consent

    for b in outbox:
        s = b["settings"]
        version = s.get("consent_version")
        decision = consent.resolve(package, s.get("policy") or consent.OPT_IN, ci=s.get("ci") or "off",
                                   under_pytest=False, notice_shown=True,
                                   consent_version=None if version is None else str(version))
        if not decision.enabled:
            return decision
    return None


def _upload_package(package: str, everything: bool, deadline: float, override, counts: dict) -> None:
    from . import config, consent, receipts, state
    from . import transport as _transport

    outbox = _take(package, everything, counts)
    if not outbox:
        return
    refused = _allowed(package, outbox)
    if refused is not None:
        from .forget import forget

        # Withdrawn since (or unreadable, or off in this environment): deleted unsent; a no also loses the id.
        forget(package, install_id=refused.state == consent.DENIED)
        counts["withdrawn"] += len(outbox)
        return
    sent: dict[str, set] = {}
    rejected: set = set()
    failed = False
    retry_s = 0.0
    session = _transport.HttpSession()
    try:
        for group in requests_for(package, outbox):
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
            if b["id"] in rejected:
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
    counts["reports"] += len(delivered)
    counts["runs"] += sum(b["runs"] for b in delivered)
    counts["rejected"] += n_rejected
    counts["failed"] += len(kept)
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
            with paths.locked(aggregate.store_path(package) + ".upload.lock", timeout=0.0):
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
