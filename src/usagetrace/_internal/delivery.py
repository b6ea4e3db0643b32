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
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import threading
from collections import deque

from . import clock, env, log

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

    # -- lazily built parts -------------------------------------------------
    def resource_attributes(self) -> dict:
        if self.resource is None:
            from . import resource

            h = self.handle
            attrs = resource.attributes(
                h.package,
                h.version,
                policy=h.policy,
                consent_source=h.consent.source,
                sdk_version=_sdk_version(),
            )
            attrs["usagetrace.upload"] = self.upload_mode().mode
            self.resource = attrs
        return self.resource

    # -- upload mode ------------------------------------------------------------
    def upload_mode(self) -> config.Upload:
        """How this package's data leaves the machine (resolved once, off the import path)."""
        from . import config

        if _DELIVERY is not None and _DELIVERY.override is not None:
            # usagetrace.testing / preview: everything goes to the capture, as it happens
            return config.Upload(config.REALTIME, "a capture (usagetrace.testing or preview)")
        if self.upload is None:
            self.upload = config.upload_mode(self.handle.options.get("upload"), self.target("metrics").kind)
        return self.upload

    def aggregated(self) -> bool:
        from . import config

        return self.upload_mode().mode != config.REALTIME

    def store_settings(self) -> dict:
        """What the uploader needs to know about the runs of a bucket: consent inputs and destination."""
        from . import spool

        h = self.handle
        # grant, project_dir, destination: what lets the uploader decide consent and keep the destination
        # without this run's environment and directory (spool.decide, spool.same_destination).
        return {"policy": h.policy, "ci": h.ci, "consent_version": h.consent_version, "endpoint": h.endpoint,
                "dev_file": h.options.get("dev_file"), "extra_keys": sorted(h.options.get("_extra_keys", ())),
                "grant": str(h.consent.source).split(":", 1)[0], "project_dir": spool.project_dir(),
                "destination": spool.destination_env()}

    def get_pipeline(self):
        if self.pipeline is None:
            from . import pipeline

            h = self.handle
            self.pipeline = pipeline.Pipeline(
                self.resource_attributes(),
                lambda: h.consent.enabled,
                frozenset(h.options.get("_extra_keys", ())),
            )
        return self.pipeline

    def target(self, signal: str) -> config.Target:
        if signal not in self.targets:
            from . import config

            h = self.handle
            self.targets[signal] = config.resolve(signal, h.endpoint, h.package, h.options.get("dev_file"))
        return self.targets[signal]

    def transport(self, signal: str, override=None):
        if override is not None:
            return override
        t = self.transports.get(signal)
        if t is None:
            from . import transport

            t = self.transports[signal] = transport.for_target(self.target(signal))
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
        from . import batch

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
        self._lock = threading.RLock()
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
                    self._running.release()
                return
            with self._state:
                # Leave only if still asked to: a parent that went on after a fork may
                # have asked this thread to carry on before it got here.
                if self._stopping:
                    self._running.release()  # the last thing this thread does
                    return

    def _loop(self) -> None:
        last_consent = last_window = _clock.monotonic()
        next_export = self._next_export or _clock.monotonic() + self.export_interval  # kept across a fork's pause
        while not self._stopping:
            self._wake.wait(min(1.0, self.export_interval))
            self._wake.clear()
            if self._stopping:
                break
            try:
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
                    if not self._hold_lock():
                        break
                    try:
                        self._export_all(deadline=None, force=False)
                        if not self._spool_checked:
                            self._spool_checked = True
                            self._deliver_spool(deadline=_clock.monotonic() + 10.0)
                    finally:
                        self._lock.release()
            except Exception:
                log.internal_error("delivery.loop")

    def _hold_lock(self) -> bool:
        """Take the delivery lock, or give up (False) when asked to stop: a fork waits for this thread."""
        while not self._lock.acquire(timeout=0.01):
            if self._stopping:
                return False
        return True

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
        from . import consent
        from .forget import forget

        forget(ch.handle.package, install_id=ch.handle.consent.state == consent.DENIED)

    # -- exporting --------------------------------------------------------------
    def _export_all(self, deadline: float | None, force: bool, only=None) -> bool:
        delivered = True
        for ch in list(self.channels.values()):
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
        if ch.aggregated():
            return self._accumulate(ch, fold=force)
        samples = h.recorder.drain()
        ch.inflight = samples
        deltas, start, end = ch.take_deltas()
        if not samples and not deltas:
            ch.inflight = []
            return True
        from . import pipeline as _pipeline

        if ch.pipeline is None and not self.preview_file:
            from . import state

            # For `usagetrace status`; here, off the import path.
            state.remember_package(h.package, ch.settings())
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
        from . import aggregate

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
        from . import aggregate

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
            from . import spool

            spool.spawn_sender("usagetrace._internal.uploader")
        return True

    def _send(self, ch: Channel, deadline: float | None, force: bool) -> bool:
        """Send what is queued; True only when all of it was accepted (a dropped request is not delivered)."""
        delivered = True
        while ch.retry:
            now = _clock.monotonic()
            if not force and now < ch.next_attempt:
                return False
            if deadline is not None and now >= deadline:
                return False
            signal, payload, items = ch.retry[0]
            target = ch.target(signal)
            timeout = target.timeout if deadline is None else min(target.timeout, deadline - now)
            from . import receipts
            from . import transport as _transport

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
        """Export now from the calling thread; True when everything pending was delivered in time."""
        deadline = _clock.monotonic() + max(timeout, 0.0)
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            return self._export_all(deadline=deadline, force=True, only=only)
        finally:
            self._lock.release()

    # -- exit and fork ----------------------------------------------------------
    def _at_exit(self) -> None:
        """Spool whatever is pending and leave; never waits on the network."""
        try:
            self._stopping = True
            self._wake.set()
            if self.preview_file:
                self.flush(5.0)  # a local file: bounded, and the person asked to see it
                return
            from . import spool, state

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
                if spool.write(ch, samples, deltas, start, end, payloads):
                    written += 1
            for ch in active if self.override is None else ():
                state.remember_package(ch.handle.package, ch.settings())  # after the data is safe
            if written and env.flag("USAGETRACE_DETACHED_SEND") is not False and self.override is None:
                spool.spawn_sender()
        except Exception:
            log.internal_error("delivery.at_exit")

    def _before_fork(self) -> None:
        """Stop the thread before ``os.fork()``, so the host forks a single-threaded process.

        A fork with a second thread alive is what Python 3.12+ warns about
        (DeprecationWarning: "This process is multi-threaded, use of fork() may
        lead to deadlocks in the child"): the host must not get that warning,
        or a child that inherits a lock held by our thread, because of
        telemetry. The idle thread stops in microseconds; one busy sending is
        waited for at most 0.2 s, then the fork goes ahead as before.
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
        from . import spool

        # Daily and weekly packages never send from a person's process.
        packages = {p for p, ch in self.channels.items() if not ch.aggregated()}
        if packages:
            spool.deliver(packages=packages, deadline=deadline, override=self.override)


def _rng():
    global _RNG
    if _RNG is None:
        import random

        _RNG = random.Random()
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


def _sdk_version() -> str:
    try:
        # A one-line module: far cheaper than importlib.metadata (~10 ms, paid at exit when a
        # short run spools before its first export).
        from opentelemetry.sdk.version import __version__

        return __version__
    except Exception:
        pass
    try:
        from importlib import metadata

        return metadata.version("opentelemetry-sdk")
    except Exception:
        return "unknown"


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

