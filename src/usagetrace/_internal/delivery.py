"""Delivery: one background thread per process for every instrumented package.

Collection (``recorder.py``) is kept apart from delivery. The thread wakes
about once a second to:

* re-check consent when a source changed (so ``usagetrace disable`` in another
  terminal stops a running process within ~2 s),
* start a new sampling window once a minute,
* every ``USAGETRACE_EXPORT_INTERVAL`` seconds (default 5), turn samples into
  spans and counts into delta sums, encode them and send them.

Failed sends are retried with backoff from a buffer bounded in bytes; what
does not fit is dropped and counted (``usagetrace.dropped``).

At exit nothing is sent from the exiting process, so exit is never delayed by
the network: whatever is pending is written to a bounded spool directory in
about a millisecond, and a detached ``python -m usagetrace._internal.spool``
process (or, with ``USAGETRACE_DETACHED_SEND=0``, the next run) delivers it.

That is realtime upload. In daily and weekly upload mode (``config.upload_mode``;
the default for libraries and CLIs) a process never sends: the thread only
counts (``aggregate.Tally``), folds the tallies into the local aggregate every
``USAGETRACE_FOLD_INTERVAL`` seconds (default 300) and at exit, and starts the
detached uploader (``uploader.py``) when a period has ended.
Also at exit, each package that ran with telemetry on is recorded for
``usagetrace status`` (policy, endpoint), however short the run was.

Every request goes out through ``receipts.send``, which keeps a receipt.

Only the delivery thread sends. No lock a host thread can take is held across
I/O; ``flush(timeout)`` hands the export to the thread and waits at most its
timeout (see ``_init_runtime``), and each request has one deadline
(``transport.py``). What the thread imports it imports once, before its first
export (``_Deps``), so the host's import state cannot reach an export.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import threading
from collections import deque

from . import batch, clock, env, log  # bound here: no import statement on the export path

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

# Off the import path (a consented import pays only for what it uses at once): config
# (typing, urllib.parse), transport (gzip), aggregate (json) and random are imported
# where they are first needed, by the delivery thread, a flush or exit.
TYPE_CHECKING = False  # not typing.TYPE_CHECKING: that would import typing
if TYPE_CHECKING:
    from . import aggregate, config

CONSENT_INTERVAL = 2.0
WINDOW = 60.0
MAX_BUFFER_BYTES = 4 * 1024 * 1024
MAX_BACKOFF = 300.0
#: Private, made on first use: the global ``random`` sequence belongs to the host (it may have seeded it).
_RNG = None


class Channel:
    """Delivery state of one package."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.pipeline = None
        self.resource = None
        self.transports: dict[str, object] = {}
        self.targets: dict[str, config.Target] = {}
        self.last_counts: dict = {}
        self.last_time_ns = _clock.time_ns()
        self.retry: deque = deque()  # (signal, payload bytes, item count)
        self.retry_bytes = 0
        self.failures = 0
        self.next_attempt = 0.0
        self.inflight: list = []
        self.sent_requests = 0
        self.upload: config.Upload | None = None
        #: Daily and weekly mode: what this process counted and has not yet folded into the store.
        self.tally: aggregate.Tally | None = None
        self.tally_lock = threading.Lock()
        self.counted_period: str | None = None
        self.last_fold = _clock.monotonic()
        #: True once every lazily built part was built (and imported what it needs): see ``_Deps``.
        self.warm = False

    # -- lazily built parts -------------------------------------------------
    def prepare(self, override) -> None:
        """Build every lazy part now, under ``_guarded``: what they import is imported before any export."""
        if self.warm:
            return

        def build():
            self.resource_attributes()
            self.store_settings()
            if not self.aggregated():
                self.get_pipeline()
                for signal in ("traces", "metrics"):
                    self.transport(signal, override)
            self.settings()

        _deps()
        _guarded(build)
        self.warm = True

    def resource_attributes(self) -> dict:
        if self.resource is None:
            h = self.handle
            attrs = _light("resource").attributes(
                h.package,
                h.version,
                policy=h.policy,
                consent_source=h.consent.source,
                # Daily and weekly: the uploader adds it when it builds the request (resource.with_sdk_version),
                # so a short run's exit does not look the SDK up.
                sdk_version=None if self.aggregated() else _sdk_version(),
            )
            attrs["usagetrace.upload"] = self.upload_mode().mode
            self.resource = attrs
        return self.resource

    # -- upload mode ------------------------------------------------------------
    def upload_mode(self) -> config.Upload:
        """How this package's data leaves the machine (resolved once, off the import path)."""
        config = _light("config")
        if _DELIVERY is not None and _DELIVERY.override is not None:
            # usagetrace.testing / preview: everything goes to the capture, as it happens
            return config.Upload(config.REALTIME, "a capture (usagetrace.testing or preview)")
        if self.upload is None:
            self.upload = config.upload_mode(self.handle.options.get("upload"), self.target("metrics").kind)
        return self.upload

    def aggregated(self) -> bool:
        return self.upload_mode().mode != _light("config").REALTIME

    def store_settings(self) -> dict:
        """What the uploader needs to know about the runs of a bucket: consent inputs and destination."""
        h = self.handle
        # grant, destination: what lets the uploader decide consent and keep the destination without this
        # run's environment (spool.decide, spool.same_destination).
        return {"policy": h.policy, "ci": h.ci, "consent_version": h.consent_version, "endpoint": h.endpoint,
                "dev_file": h.options.get("dev_file"), "extra_keys": sorted(h.options.get("_extra_keys", ())),
                "grant": str(h.consent.source).split(":", 1)[0],
                "destination": _light("config").destination_env()}

    def get_pipeline(self):
        if self.pipeline is None:
            h = self.handle
            self.pipeline = _deps().pipeline.Pipeline(
                self.resource_attributes(),
                lambda: h.consent.enabled,
                frozenset(h.options.get("_extra_keys", ())),
            )
        return self.pipeline

    def target(self, signal: str) -> config.Target:
        if signal not in self.targets:
            h = self.handle
            self.targets[signal] = _light("config").resolve(signal, h.endpoint, h.package, h.options.get("dev_file"))
        return self.targets[signal]

    def transport(self, signal: str, override=None):
        if override is not None:
            return override
        t = self.transports.get(signal)
        if t is None:
            t = self.transports[signal] = _deps().transport.for_target(self.target(signal))
        return t

    # -- counts ---------------------------------------------------------------
    def take_deltas(self) -> tuple[dict, int, int]:
        """Return (increments since the last call, window start, window end) and advance the baseline."""
        counts = self.handle.recorder.counts()
        deltas = {k: v - self.last_counts.get(k, 0) for k, v in counts.items() if v > self.last_counts.get(k, 0)}
        start, end = self.last_time_ns, _clock.time_ns()
        self.last_counts, self.last_time_ns = counts, end
        return deltas, start, end

    def add_payload(self, signal: str, payload: bytes, items: int) -> None:
        # The request's id, fixed now: retries and the spool resend these very bytes (batch.py).
        payload = batch.with_id(payload, batch.new_id())
        self.retry.append((signal, payload, items))
        self.retry_bytes += len(payload)
        while self.retry_bytes > MAX_BUFFER_BYTES and len(self.retry) > 1:
            _, old, old_items = self.retry.popleft()
            self.retry_bytes -= len(old)
            self.count_drop("export_failed", old_items)

    def count_drop(self, reason: str, n: int = 1) -> None:
        counter = self.handle.recorder.dropped.get(reason)
        if counter is not None:
            for _ in range(max(n, 0)):
                next(counter)

    def settings(self) -> dict:
        """What ``usagetrace status`` shows about this package, recorded off the import path."""
        h = self.handle
        return {"policy": h.policy, "ci": h.ci, "endpoint": h.endpoint, "consent_version": h.consent_version,
                "upload": h.options.get("upload"), "upload_mode": self.upload_mode().mode,
                "target": self.target("traces").describe()}

    def discard(self) -> None:
        """Forget everything pending (consent was withdrawn)."""
        rec = self.handle.recorder
        n = len(rec.drain()) + sum(items for _, _, items in self.retry)
        self.retry.clear()
        self.retry_bytes = 0
        self.inflight = []
        self.tally = None
        self.last_counts = rec.counts()
        self.last_time_ns = _clock.time_ns()
        self.count_drop("consent_withdrawn", n)
        # A later re-enable starts afresh: `usagetrace disable` deleted the install id, and
        # data from before and after the withdrawal must not be joinable.
        self.resource = None
        self.pipeline = None
        self.warm = False


class _Flush:
    """A host's flush() request, served by the delivery thread; ``done`` is released when it was."""

    __slots__ = ("deadline", "only", "result", "abandoned", "done")

    def __init__(self, deadline: float, only) -> None:
        self.deadline = deadline
        self.only = only
        self.result = False
        self.abandoned = False
        self.done = _thread.allocate_lock()
        self.done.acquire()


class Delivery:
    """The process-wide delivery service (see the module docstring)."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.export_interval = env.seconds("USAGETRACE_EXPORT_INTERVAL", 5.0, low=0.05, high=3600.0)
        self.fold_interval = env.seconds("USAGETRACE_FOLD_INTERVAL", 300.0, low=0.05, high=86400.0)
        #: Set by ``usagetrace.testing`` and ``usagetrace preview``: every signal goes here.
        self.override = None
        #: ``usagetrace preview`` runs the command with this set: everything goes
        #: to a local file and is flushed there at exit; nothing touches the network.
        self.preview_file = env.get("USAGETRACE_PREVIEW_FILE")
        if self.preview_file:
            from . import config, transport

            self.override = transport.FileTransport(config.Target("file", self.preview_file, "http/json"))
        self._init_runtime()
        self._exit_registered = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork_in_parent,
                                after_in_child=self._after_fork)

    def _init_runtime(self) -> None:
        # Locking rule: no lock a host thread can take is ever held across I/O (network or disk).
        # ``_lock`` guards the channel table and is held for microseconds. All sending is done by
        # the delivery thread alone; a host's flush() hands it a request and waits, bounded by its
        # own timeout (``_Flush``). ``_busy`` is held by whoever exports; a host thread takes it
        # only when the thread cannot serve it (exit, no thread can start), and only with a timeout.
        self._lock = threading.RLock()
        self._busy = threading.Lock()
        self._flushes: deque = deque()
        self._wake = threading.Event()
        #: Held while the thread runs: released by the thread as its very last step.
        self._running = _thread.allocate_lock()
        self._state = _thread.allocate_lock()  # orders starting and leaving the thread
        self._native_id = 0
        self._next_export = 0.0
        self._stopping = False
        self._paused = False
        self._spool_checked = False

    # -- registration -----------------------------------------------------------
    def register(self, handle, start: bool = True) -> None:
        """Make a package known to delivery; start the thread on its first sample."""
        with self._lock:
            if handle.package not in self.channels or self.channels[handle.package].handle is not handle:
                self.channels[handle.package] = Channel(handle)
            if not self._exit_registered:
                # Even a run that records nothing is recorded as "ran with telemetry on".
                atexit.register(self._at_exit)
                self._exit_registered = True
            if start:
                self._ensure_thread()

    def unregister(self, handle) -> None:
        with self._lock:
            ch = self.channels.get(handle.package)
            if ch is not None and ch.handle is handle:
                del self.channels[handle.package]

    def _ensure_thread(self) -> None:
        """Start the thread unless it runs.

        A bare ``_thread`` thread, not a ``threading.Thread``: the host's
        ``threading.enumerate()`` and ``active_count()`` (thread-leak checks in
        test suites, "wait for all threads" loops) see exactly what they saw
        without telemetry. Like a daemon thread it never delays exit; the code it
        runs never calls ``threading.current_thread()``, which would register it.
        """
        with self._state:
            self._stopping = False
            if self._running.acquire(blocking=False):
                try:
                    _thread.start_new_thread(self._run, ())
                except BaseException:
                    self._running.release()
                    raise

    def is_running(self) -> bool:
        """True while the delivery thread runs (for tests and ``status``)."""
        return self._running.locked()

    # -- the loop ---------------------------------------------------------------
    def _run(self) -> None:
        self._native_id = threading.get_native_id()
        while True:
            try:
                self._loop()
            except BaseException:  # the loop logs its own errors; this is the interpreter going away
                with self._state:
                    self._release_flushes()
                    self._running.release()
                return
            with self._state:
                # Leave only if still asked to: a parent that went on after a fork may
                # have asked this thread to carry on before it got here.
                if self._stopping:
                    self._release_flushes()  # their callers stop waiting now (not delivered)
                    self._running.release()  # the last thing this thread does
                    return

    def _release_flushes(self) -> None:
        while self._flushes:
            try:
                self._flushes.popleft().done.release()
            except Exception:
                pass

    def _loop(self) -> None:
        last_consent = last_window = _clock.monotonic()
        next_export = self._next_export or _clock.monotonic() + self.export_interval  # kept across a fork's pause
        while not self._stopping:
            if not self._flushes:
                self._wake.wait(min(1.0, self.export_interval))
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._serve_flushes()
                now = _clock.monotonic()
                if now - last_consent >= CONSENT_INTERVAL:
                    last_consent = now
                    self._refresh_consent()
                if now - last_window >= WINDOW:
                    last_window = now
                    for ch in list(self.channels.values()):
                        if ch.handle.recorder is not None:
                            ch.handle.recorder.reset_budgets()
                if now >= next_export and not host_traces_memory():
                    next_export = self._next_export = now + self.export_interval
                    self._prepare_thread()
                    with self._busy:
                        self._export_all(deadline=None, force=False)
                        if not self._spool_checked:
                            self._spool_checked = True
                            self._deliver_spool(deadline=_clock.monotonic() + 10.0)
            except Exception:
                log.internal_error("delivery.loop")

    def _prepare_thread(self) -> None:
        """Before the thread's first export: every import done (``_Deps``), and sends that give up on stop."""
        # A fork waits for this thread (_before_fork sets _paused): a request in flight is abandoned
        # within ~10 ms and stays queued. Exit does not wait for it: there the request goes on (the exit
        # spools a copy; storage counts a request id once) until the interpreter ends this thread.
        _deps().transport.set_cancel(lambda: self._paused)

    def _serve_flushes(self) -> None:
        """Run the exports host threads asked for with flush() (each with its own deadline)."""
        while self._flushes and not self._stopping:
            request = self._flushes.popleft()
            try:
                if not request.abandoned and _clock.monotonic() < request.deadline:
                    self._prepare_thread()
                    with self._busy:
                        request.result = self._export_all(deadline=request.deadline, force=True,
                                                          only=request.only)
            finally:
                request.done.release()

    def _refresh_consent(self) -> None:
        for ch in list(self.channels.values()):
            was = ch.handle.consent.enabled
            now = ch.handle.refresh_consent()
            if was and not now and ch.handle.recorder is not None:
                with self._lock:
                    ch.discard()
                if ch.aggregated():
                    self._withdrawn(ch)

    @staticmethod
    def _withdrawn(ch: Channel) -> None:
        """Consent went away while running: what waits for the daily upload is deleted too (a no: the id too)."""
        _light("forget").forget(ch.handle.package, install_id=ch.handle.consent.state == _light("consent").DENIED)

    # -- exporting --------------------------------------------------------------
    def _export_all(self, deadline: float | None, force: bool, only=None) -> bool:
        delivered = True
        for ch in list(self.channels.values()):
            if self._paused:
                return False  # a fork waits for this thread: no new work (nothing is lost)
            if only is not None and ch.handle is not only:
                continue
            if ch.handle.recorder is None:
                continue
            try:
                kept = self._collect(ch, force)
                delivered = self._send(ch, deadline, force) and kept and delivered
            except Exception:
                log.internal_error("delivery.export")
                delivered = False
        return delivered

    def _collect(self, ch: Channel, force: bool = False) -> bool:
        """Turn what was recorded into requests (realtime) or tallies (daily, weekly); False if not kept."""
        h = ch.handle
        if not h.consent.enabled:
            ch.discard()
            return True
        ch.prepare(self.override)
        if ch.aggregated():
            return self._accumulate(ch, fold=force)
        samples = h.recorder.drain()
        ch.inflight = samples
        deltas, start, end = ch.take_deltas()
        if not samples and not deltas:
            ch.inflight = []
            return True
        _pipeline = _deps().pipeline
        if ch.pipeline is None and not self.preview_file:
            # For `usagetrace status`; here, off the import path.
            _deps().state.remember_package(h.package, ch.settings())
        pipe = ch.get_pipeline()
        if samples:
            spans = pipe.spans(samples)
            if spans:
                ch.add_payload("traces", _pipeline.encode_trace_request(spans), len(spans))
        data = pipe.metrics(deltas, start, end)
        if data is not None:
            ch.add_payload("metrics", _pipeline.encode_metric_request(data), 0)
        ch.inflight = []
        return True

    # -- daily and weekly: counting and folding (never any network) ------------------------------
    def _accumulate(self, ch: Channel, fold: bool) -> bool:
        """Add what was recorded since the last call to the channel's tally; fold it into the store when due.

        Returns False when a fold was due and failed (the tally is kept for the next one).
        """
        aggregate = _light("aggregate")
        with ch.tally_lock:
            rec = ch.handle.recorder
            samples = rec.drain()
            deltas, start, end = ch.take_deltas()
            if samples or deltas:
                mode = ch.upload_mode().mode
                period = aggregate.period_of(mode, end)
                if ch.tally and ch.tally.period != period:
                    self._fold(ch)  # a new day (or week): the earlier one's tallies stay in its period
                if not ch.tally:
                    ch.tally = aggregate.Tally()
                    ch.tally.period = period
                ch.tally.add_counts(deltas, start, end)
                ch.tally.add_samples(samples)
            if fold or _clock.monotonic() - ch.last_fold >= self.fold_interval:
                return self._fold(ch)
            return True

    def _fold(self, ch: Channel) -> bool:
        """Write the channel's tally into the store (the caller holds ``tally_lock``); True when nothing is left."""
        aggregate = _light("aggregate")
        tally = ch.tally
        ch.last_fold = _clock.monotonic()
        if not tally:
            return True
        h = ch.handle
        try:
            attrs = dict(ch.resource_attributes())
            attrs.pop("usagetrace.session.id", None)  # runs are counted instead
            detached = env.flag("USAGETRACE_DETACHED_SEND") is not False
            done = aggregate.record(h.package, ch.upload_mode().mode, attrs, ch.store_settings(), tally,
                                    h.refresh_consent, count_run=tally.period[0] != ch.counted_period,
                                    can_upload=detached)
        except Exception:
            log.debug("cannot write the local aggregate of %s; kept in memory", h.package, exc_info=True)
            return False
        ch.tally = None
        if not done["written"]:
            if not h.consent.enabled:  # withdrawn just now: nothing after no
                ch.discard()
                self._withdrawn(ch)
            return True
        ch.counted_period = tally.period[0]
        if done["upload_due"]:
            _light("spool").spawn_sender("usagetrace._internal.uploader")
        return True

    def _send(self, ch: Channel, deadline: float | None, force: bool) -> bool:
        """Send what is queued; True only when all of it was accepted (a dropped request is not delivered)."""
        delivered = True
        while ch.retry:
            if self._paused:
                return False
            now = _clock.monotonic()
            if not force and now < ch.next_attempt:
                return False
            if deadline is not None and now >= deadline:
                return False
            signal, payload, items = ch.retry[0]
            target = ch.target(signal)
            timeout = target.timeout if deadline is None else min(target.timeout, deadline - now)
            d = _deps()
            receipts, _transport = d.receipts, d.transport
            result = receipts.send(ch.transport(signal, self.override), target, ch.handle.package, signal, payload,
                                   timeout)
            if result == _transport.OK or result == _transport.DROP:
                ch.retry.popleft()
                ch.retry_bytes -= len(payload)
                if result == _transport.DROP:
                    ch.count_drop("export_failed", items)
                    delivered = False
                else:
                    ch.sent_requests += 1
                ch.failures = 0
                continue
            ch.failures += 1
            backoff = min(max(float(result), 1.0) * (2 ** min(ch.failures - 1, 8)), MAX_BACKOFF)
            ch.next_attempt = _clock.monotonic() + backoff * (0.8 + 0.4 * _rng().random())
            return False
        return delivered

    def flush(self, timeout: float, only=None) -> bool:
        """Export now; True when everything pending was delivered within ``timeout`` seconds.

        The delivery thread does the sending; the calling thread only waits for
        it, at most ``timeout`` (an export still under way then carries on in the
        background, within its own deadline).
        """
        timeout = max(timeout, 0.0)
        deadline = _clock.monotonic() + timeout
        if not self._stopping:
            try:
                self._ensure_thread()
            except Exception:  # no thread can start (interpreter shutting down): export here, bounded
                pass
            else:
                request = _Flush(deadline, only)
                self._flushes.append(request)
                self._wake.set()
                if request.done.acquire(timeout=timeout):
                    return request.result
                request.abandoned = True
                return False
        # At exit (the thread is leaving): the calling thread exports, after the thread's export if
        # one is still running, within the same deadline.
        if not self._busy.acquire(timeout=max(deadline - _clock.monotonic(), 0.0)):
            return False
        try:
            return self._export_all(deadline=deadline, force=True, only=only)
        finally:
            self._busy.release()

    # -- exit and fork ----------------------------------------------------------
    def _at_exit(self) -> None:
        """Spool whatever is pending and leave; never waits on the network."""
        try:
            self._stopping = True
            self._wake.set()
            if self.preview_file:
                self.flush(5.0)  # a local file: bounded, and the person asked to see it
                return
            # not _deps(): exit imports no SDK; and the spool only when something is spooled (not in daily mode)
            written = 0
            active = [ch for ch in self.channels.values() if ch.handle.recorder is not None and ch.handle.consent.enabled]
            for ch in active:
                if ch.aggregated():
                    # Counted into the local store (no network, no spool); the uploader is started when due.
                    self._accumulate(ch, fold=True)  # after the thread's accumulate or fold, if one is running
                    continue
                samples = list(ch.inflight) + ch.handle.recorder.drain()
                deltas, start, end = ch.take_deltas()
                payloads = [(s, p) for s, p, _ in list(ch.retry)]
                if not samples and not deltas and not payloads:
                    continue
                if _light("spool").write(ch, samples, deltas, start, end, payloads):
                    written += 1
            for ch in active if self.override is None else ():
                _light("state").remember_package(ch.handle.package, ch.settings())  # after the data is safe
            if written and env.flag("USAGETRACE_DETACHED_SEND") is not False and self.override is None:
                _light("spool").spawn_sender()
        except Exception:
            log.internal_error("delivery.at_exit")

    def _before_fork(self) -> None:
        """Stop the thread before ``os.fork()``, so the host forks a single-threaded process.

        A fork with a second thread alive is what Python 3.12+ warns about
        (DeprecationWarning: "This process is multi-threaded, use of fork() may
        lead to deadlocks in the child"): the host must not get that warning,
        or a child that inherits a lock held by our thread, because of
        telemetry. The idle thread stops in microseconds; one busy sending
        abandons its request (it stays queued) within ~10 ms, the wait being
        bounded at 0.2 s, then the fork goes ahead as before. (A name lookup
        stuck in its helper thread at that moment cannot be stopped: that thread
        may still exist at the fork.)
        """
        try:
            with self._state:
                if not self._running.locked():
                    return
                self._paused = not self._stopping
                self._stopping = True
            self._wake.set()
            if self._running.acquire(timeout=0.2):
                self._running.release()
                # The lock is released a moment before the OS thread is gone, and the
                # warning counts OS threads: wait for it to leave /proc (Linux), briefly.
                task = f"/proc/self/task/{self._native_id}"
                deadline = _clock.monotonic() + 0.1
                while self._native_id and os.path.exists(task) and _clock.monotonic() < deadline:
                    _clock.sleep(0.0005)
        except Exception:
            log.internal_error("delivery.before_fork")

    def _after_fork_in_parent(self) -> None:
        """In the parent after a fork: the thread starts again with the next sample.

        Not here: Python 3.13 counts the parent's threads for its warning after
        these handlers have run. Until the next sample nothing is lost: counts
        are kept, and exit writes whatever is pending without the thread.
        """
        try:
            if self._paused:
                self._paused = False
                self._restart_on_first_sample()
        except Exception:
            log.internal_error("delivery.after_fork_in_parent")

    def _restart_on_first_sample(self) -> None:
        for ch in list(self.channels.values()):
            rec = ch.handle.recorder
            if rec is not None:
                rec.on_first_sample = lambda h=ch.handle: self.register(h)

    def _after_fork(self) -> None:
        """In a forked child: new locks and thread; report only the child's own activity."""
        try:
            self._init_runtime()
            for ch in self.channels.values():
                ch.pipeline = None
                ch.transports = {}
                ch.resource = None  # new session id
                ch.warm = False
                ch.retry = deque()
                ch.retry_bytes = 0
                ch.inflight = []
                ch.tally = None  # the parent folds its own
                ch.tally_lock = threading.Lock()
                ch.counted_period = None  # the child is a run of its own
                rec = ch.handle.recorder
                if rec is not None:
                    rec.samples.clear()
                    rec._lock = threading.Lock()
                    ch.last_counts = rec.counts()
                ch.last_time_ns = _clock.time_ns()
            self._restart_on_first_sample()
        except Exception:
            log.internal_error("delivery.after_fork")

    def _deliver_spool(self, deadline: float) -> None:
        spool = _deps().spool
        # Daily and weekly packages never send from a person's process.
        packages = {p for p, ch in self.channels.items() if not ch.aggregated()}
        if packages:
            spool.deliver(packages=packages, deadline=deadline, override=self.override)


def _rng():
    global _RNG
    if _RNG is None:
        _RNG = _deps().random.Random()
    return _RNG


def host_traces_memory() -> bool:
    """True while the host traces allocations with ``tracemalloc``: exports wait until it stops.

    tracemalloc sees every thread. An export in the background (first of all
    its lazy imports) would show up in a measurement the host is taking of
    its own memory. Nothing is lost by waiting: counts are exact, samples
    bounded, and whatever is pending at exit is spooled as usual.
    """
    module = sys.modules.get("tracemalloc")
    try:
        return module is not None and module.is_tracing()
    except Exception:
        return False


_SDK_VERSION = None


def _sdk_version() -> str:
    global _SDK_VERSION
    if _SDK_VERSION is None:
        _SDK_VERSION = _find_sdk_version()
    return _SDK_VERSION


def _find_sdk_version() -> str:
    # Paid at exit when a short realtime run spools before its first export (daily runs leave it out).
    return _light("resource").sdk_version()


class _Deps:
    """Every module the export path uses, imported once and then held here.

    Why: the delivery thread must not depend on the host's import state. A host
    may snapshot and restore ``sys.modules`` (pytest's ``pytester`` does) or
    install ``sys.meta_path`` finders. An ``import`` run by the thread at export
    time would go through both: it could re-import half of the OTel SDK and
    protobuf next to the live copies (every later export then fails), or show
    our imports to the host's import hook. So everything an export needs is
    imported in one go before the first export (by the delivery thread, or by a
    flush or the exit that comes first), and afterwards only these references
    are used: no import statement runs on the export path. The modules they
    import themselves are bound at their top level for the same reason
    (``transport``, ``pipeline``, ``otlp_json``, ``receipts``). Nothing of this
    runs with telemetry off: it is reached only from an active channel.
    """

    def __init__(self) -> None:
        import random

        from . import (aggregate, config, consent, forget, otlp_json, paths, pipeline, receipts, resource, spool,
                       state, transport)

        otlp_json.prepare()  # protobuf message classes and json_format, bound now
        # What these modules import on first need (kept off the path of a run with telemetry off), bound now.
        consent._load()
        paths._real_clock()
        state._json_module()
        aggregate._json_module()
        log._get()  # the logger (logging is imported on first use)
        self.random = random
        self.aggregate, self.config, self.consent, self.forget = aggregate, config, consent, forget
        self.otlp_json, self.pipeline, self.receipts, self.resource = otlp_json, pipeline, receipts, resource
        self.spool, self.state, self.transport = spool, state, transport
        self.sdk_version = _sdk_version()


_DEPS: _Deps | None = None
#: Our own packages, held from the start: a host that dropped them from ``sys.modules`` (a
#: restored snapshot) before our first export must not make that export import usagetrace anew.
_OWN = [sys.modules.get(name) for name in ("usagetrace", "usagetrace._internal")]


def _held_modules() -> dict:
    """Every module our loaded code already refers to (usagetrace's, the stdlib's it uses, ...), by name."""
    held: dict = {}
    stack = [m for m in _OWN if m is not None]
    while stack:
        module = stack.pop()
        name = getattr(module, "__name__", None)
        if not isinstance(name, str) or name in held:
            continue
        held[name] = module
        stack.extend(v for v in list(vars(module).values()) if type(v) is type(sys))
    return held


def _light(name: str):
    """One of the modules of ``_Deps``, without importing the others (exit and fold paths: no SDK there)."""
    deps = _DEPS
    if deps is not None:
        return getattr(deps, name)
    if name == "config":
        from . import config as module
    elif name == "spool":
        from . import spool as module
    elif name == "state":
        from . import state as module
    elif name == "aggregate":
        from . import aggregate as module
    elif name == "resource":
        from . import resource as module
    elif name == "forget":
        from . import forget as module
    elif name == "consent":
        from . import consent as module
    else:
        return getattr(_deps(), name)
    return module


def _guarded(work):
    """Run ``work`` (imports) with the modules we already hold put back where the host removed them.

    A host may have dropped them from ``sys.modules`` (a restored snapshot). For
    the import only, they are put back, so the imports bind the live modules,
    never fresh copies (a second ``threading`` made in our thread makes the
    interpreter's exit wait for that thread; a second protobuf breaks every
    message), and then taken out again: the host's view is as it left it.
    """
    held = _held_modules()
    added = [name for name in held if name not in sys.modules]
    for name in added:
        sys.modules[name] = held[name]
    try:
        return work()
    finally:
        for name in added:
            if sys.modules.get(name) is held[name]:
                del sys.modules[name]


def _deps() -> _Deps:
    global _DEPS
    if _DEPS is None:
        for attempt in range(3):
            try:
                _DEPS = _guarded(_Deps)
                break
            except Exception:
                # The host changed sys.modules under this import (a restore in another thread):
                # again, with what was imported meanwhile now held by the modules that did.
                if attempt == 2:
                    raise
    return _DEPS


_DELIVERY: Delivery | None = None
_DELIVERY_LOCK = threading.Lock()


def get() -> Delivery:
    """Return the process-wide delivery service, creating it on first use."""
    global _DELIVERY
    if _DELIVERY is None:
        with _DELIVERY_LOCK:
            if _DELIVERY is None:
                _DELIVERY = Delivery()
    return _DELIVERY

