"""The local aggregate: a package's exact tallies per period, kept on this machine until the daily upload.

In daily and weekly upload mode (``config.upload_mode``) nothing leaves a
run. Each run adds its tallies (the recorder's exact counts; command runs,
events and declared measurements counted from its samples; its drops; one
run) to a per-package, per-user store, and a few exemplar spans per function
per period (errors first). The detached uploader (``uploader.py``) later turns
each ended period into one report.

Store: ``<state dir>/aggregate/<package>.json``, one JSON document::

    {"v": 1, "package": ..., "buckets": [...], "outbox": [...], "meta": {...}}

A *bucket* holds one period's tallies for one set of resource attributes
(package version, Python, OS, CI, run context, consent policy and source,
install id; never a session id) and one set of settings (policy, endpoint,
...). The uploader moves buckets to the *outbox* before sending them and
removes them once the collector accepted them. ``meta`` keeps the upload
schedule and counts of what was lost (folded into the next bucket as
``usagetrace.dropped``, so maintainers see them too).

Writes are bounded, whatever the store's size. A run never reads or rewrites
the store: it appends one line with its tallies to ``<package>.journal``
under a short ``flock`` (``record``: well under a millisecond, the same at
any store size), then reads a tiny ``<package>.schedule`` to know whether an
upload is due. The journal is capped (``MAX_JOURNAL_BYTES``): past it a run
appends only a drop marker (counted as ``store_full``). The uploader (and
``usagetrace flush``) folds the journal into the store (:func:`compact`):
it renames the journal aside (runs go on appending to a new one), merges it,
saves the store with the name of what it merged, then deletes it, so a
kill at any point neither loses nor doubles a run. A line torn by a kill
mid-append is skipped and counted (``journal_torn``). The store itself is
capped when written (``MAX_FILE_BYTES``): the oldest buckets are dropped and
their runs counted (``store_full``). :func:`load` (status, preview) shows the
store with the journal merged in, without writing.

Concurrency and crashes: every store change is a read-modify-write under an
exclusive ``flock`` (``paths.locked``) and an atomic rename; a store that
cannot be read is renamed aside (``.broken-<time>``, the newest 3 kept) and
counted, never raised. Bounds: ``MAX_BUCKETS`` buckets, ``MAX_KEYS`` counts
and ``EXEMPLARS`` spans per key per bucket; beyond them tallies are dropped and
counted (``store_full``); nothing older than ``MAX_AGE`` is ever sent.
"""

from __future__ import annotations

import os

from . import clock, jsonline, log, paths

#: json, bound where a store is first read or written whole (the uploader, status), then held (no import
#: statement runs here again: delivery._Deps). A run's exit appends its line with jsonline: no json (2-4 ms).
_json = None


def _json_module():
    global _json
    if _json is None:
        import json as _json
    return _json

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

VERSION = 1
DAY_NS = 86_400 * 10**9
#: Periods that started longer ago are deleted unsent (like Go's telemetry, which never uploads old weeks).
MAX_AGE_NS = 21 * DAY_NS
MAX_BUCKETS = 64
MAX_KEYS = 4096
MAX_EXEMPLAR_KEYS = 512
#: Exemplar spans kept per function (command, event, ...) per period; failed calls first.
EXEMPLARS = 3
MAX_FILE_BYTES = 8 * 1024 * 1024
#: The journal of runs not yet folded into the store; past it a run appends only a (counted) drop marker.
MAX_JOURNAL_BYTES = 4 * 1024 * 1024
#: Room kept past the cap for drop markers (~60 bytes each); past that, nothing more is appended.
JOURNAL_SLACK = 256 * 1024
#: Once an upload was started, do not start another for this long (many runs end at once).
SPAWN_GAP_NS = 15 * 60 * 10**9
#: After a failed upload: retry no sooner than this, doubling up to a day.
RETRY_NS = 3600 * 10**9
LOCK_TIMEOUT = 2.0
KEEP_BROKEN = 3
NUMERIC = "(numeric)"
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_COUNT_KINDS = frozenset({"calls", "errors", "dropped", "runs", "commands", "events", "measurements"})


def directory() -> str:
    return paths.state_path("aggregate")


def store_path(package: str) -> str:
    safe = "".join(ch if ch in _SAFE else "_" for ch in package)[:100] or "_"
    return os.path.join(directory(), safe + ".json")


def journal_path(package: str) -> str:
    return store_path(package)[: -len(".json")] + ".journal"


def schedule_path(package: str) -> str:
    return store_path(package)[: -len(".json")] + ".schedule"


def period_of(mode: str, ts_ns: int) -> tuple[str, int, int]:
    """``(name, start ns, end ns)`` of the UTC day (daily) or ISO week from Monday (weekly) holding ``ts_ns``."""
    day = ts_ns // DAY_NS
    if mode == "weekly":
        day -= (day + 3) % 7  # 1970-01-01 was a Thursday
        length = 7
    else:
        length = 1
    start = day * DAY_NS
    name = clock.utc("%Y-%m-%d", day * 86_400)
    return (f"week of {name}" if mode == "weekly" else name), start, start + length * DAY_NS


# ------------------------------------------------------------------ one run's tallies


def _measure_bucket(value) -> tuple[str, float | None]:
    """How ``usagetrace report`` groups a measurement value: its text, or (numeric) with the number."""
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, (int, float)):
        return NUMERIC, float(value)
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text, None
    return NUMERIC, number


def _exemplar_key(name: str, attrs: dict) -> str:
    for key in ("code.function.name", "usagetrace.command.name", "usagetrace.event.name", "url.path",
                "usagetrace.callback.id", "usagetrace.email.action"):
        value = attrs.get(key)
        if isinstance(value, str):
            return value if value == name else f"{name}|{value}"
    return name


def _keep(reservoir: list, sample) -> bool:
    """Add ``sample`` to a bounded reservoir: failed calls first, then new exception signatures."""
    if len(reservoir) < EXEMPLARS:
        reservoir.append(sample)
        return True
    if sample[4] is None:
        return False
    for i, kept in enumerate(reservoir):
        if kept[4] is None:
            reservoir[i] = sample
            return True
    signatures = [kept[4][2] for kept in reservoir]
    if sample[4][2] not in signatures:
        for i, sig in enumerate(signatures):
            if signatures.count(sig) > 1:
                reservoir[i] = sample
                return True
    return False


class Tally:
    """What one process recorded for one package in one period, not yet in the store."""

    __slots__ = ("period", "counts", "sums", "exemplars", "first_ns", "last_ns")

    def __init__(self) -> None:
        self.period: tuple[str, int, int] | None = None
        self.counts: dict[tuple, int] = {}
        self.sums: dict[tuple, float] = {}
        self.exemplars: dict[str, list] = {}
        self.first_ns = 0
        self.last_ns = 0

    def __bool__(self) -> bool:
        return bool(self.counts or self.exemplars)

    def _seen(self, start_ns: int, end_ns: int) -> None:
        if not self.first_ns or start_ns < self.first_ns:
            self.first_ns = start_ns
        self.last_ns = max(self.last_ns, end_ns)

    def add_counts(self, deltas: dict, start_ns: int, end_ns: int) -> None:
        """Add the recorder's count increments over ``[start_ns, end_ns]``."""
        counts = self.counts
        for key, value in deltas.items():
            if value > 0:
                counts[key] = counts.get(key, 0) + value
        if deltas:
            self._seen(start_ns, end_ns)

    def add_samples(self, samples) -> None:
        """Count command runs, events and measurements exactly; keep a few samples as exemplars."""
        counts, sums = self.counts, self.sums
        for sample in samples:
            name, start, end, attrs, error = sample
            if name == "usagetrace.command" and isinstance(attrs.get("usagetrace.command.name"), str):
                command = attrs["usagetrace.command.name"]
                code = attrs.get("process.exit.code")
                # As the report reads command spans: ok, or interrupted (Ctrl-C, 130: not a failure), or error.
                outcome = "ok" if error is None and code in (None, 0) else "interrupted" if code == 130 else "error"
                key = ("commands", command, outcome)
                counts[key] = counts.get(key, 0) + 1
                for attr, value in attrs.items():
                    if attr.startswith("usagetrace.measure."):
                        measurement = attr[len("usagetrace.measure."):]
                        bucket, number = _measure_bucket(value)
                        key = ("measurements", command, measurement, bucket)
                        counts[key] = counts.get(key, 0) + 1
                        if number is not None:
                            key = ("measurement_sum", command, measurement)
                            sums[key] = sums.get(key, 0.0) + number
            elif name == "usagetrace.event" and isinstance(attrs.get("usagetrace.event.name"), str):
                key = ("events", attrs["usagetrace.event.name"])
                counts[key] = counts.get(key, 0) + 1
            _keep(self.exemplars.setdefault(_exemplar_key(name, attrs), []), sample)
            self._seen(start, end)


# ------------------------------------------------------------------ the store document


class Broken(ValueError):
    """The store exists but is not a document this version can use."""


def _new_doc(package: str) -> dict:
    return {"v": VERSION, "package": package, "buckets": [], "outbox": [], "meta": {}}


def _check_bucket(b) -> dict:
    """Raise :class:`Broken` unless ``b`` is a bucket in the expected shape; return it."""
    try:
        if not isinstance(b, dict) or not isinstance(b["resource"], dict) or not isinstance(b["settings"], dict):
            raise Broken("bucket")
        for field in ("start_ns", "end_ns", "first_ns", "last_ns", "runs"):
            if not isinstance(b[field], int):
                raise Broken(field)
        if not isinstance(b["period"], str) or b["mode"] not in ("daily", "weekly") or not isinstance(b["id"], str):
            raise Broken("period")
        for key, value in b["counts"]:
            if not isinstance(value, int) or not key or key[0] not in _COUNT_KINDS:
                raise Broken("counts")
        for key, value in b["sums"]:
            if not isinstance(value, (int, float)) or key[0] != "measurement_sum":
                raise Broken("sums")
        from .spool import samples_from_json

        for key, samples in b["exemplars"].items():
            samples_from_json(samples)
    except Broken:
        raise
    except Exception as exc:
        raise Broken(f"bucket: {exc!r}") from None
    return b


def _parse(text: str, package: str) -> dict:
    try:
        doc = _json_module().loads(text)
    except ValueError as exc:
        raise Broken(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION or doc.get("package") != package:
        raise Broken("unknown format")
    for section in ("buckets", "outbox"):
        if not isinstance(doc.get(section), list):
            raise Broken(section)
        for bucket in doc[section]:
            _check_bucket(bucket)
    if not isinstance(doc.get("meta"), dict):
        raise Broken("meta")
    return doc


def _set_aside(path: str) -> None:
    """Rename a broken store out of the way (for a person to look at); keep only the newest few."""
    try:
        os.replace(path, f"{path}.broken-{clock.utc('%Y%m%dT%H%M%S')}-{os.getpid()}")
        folder, name = os.path.split(path)
        aside = sorted(e for e in os.listdir(folder) if e.startswith(name + ".broken-"))
        for old in aside[:-KEEP_BROKEN]:
            os.unlink(os.path.join(folder, old))
    except OSError:
        try:
            os.unlink(path)  # cannot rename it: it must not stop every later run
        except OSError:
            pass


def _load_locked(path: str, package: str) -> tuple[dict, bool]:
    """Return (document, True when a broken store was set aside). The caller holds the lock."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return _new_doc(package), False
    except (OSError, UnicodeDecodeError):
        text = None
    try:
        if text is None or len(text) > MAX_FILE_BYTES:
            raise Broken("unreadable or too large")
        return _parse(text, package), False
    except Broken as exc:
        log.debug("aggregate store %s unusable (%s); setting it aside", path, exc)
        _set_aside(path)
        doc = _new_doc(package)
        _drop(doc, "store_broken", 1)
        doc["meta"]["set_aside"] = 1
        return doc, True


def _save_locked(path: str, doc: dict) -> None:
    """Write the store, never larger than ``MAX_FILE_BYTES``: the oldest buckets go first, their runs counted."""
    json = _json_module()
    text = json.dumps(doc, separators=(",", ":"))
    while len(text) > MAX_FILE_BYTES and (doc["buckets"] or doc["outbox"]):
        section = "buckets" if doc["buckets"] else "outbox"
        oldest = min(doc[section], key=lambda b: b["start_ns"])
        doc[section].remove(oldest)
        _drop(doc, "store_full", max(int(oldest["runs"]), 1))
        text = json.dumps(doc, separators=(",", ":"))
    paths.atomic_write(path, text)


def _drop(doc: dict, reason: str, n: int) -> None:
    drops = doc["meta"].setdefault("drops", {})
    drops[reason] = int(drops.get(reason, 0)) + n


class Store:
    """One package's store, locked for a read-modify-write (``with Store(pkg) as doc: ...``)."""

    def __init__(self, package: str, timeout: float = LOCK_TIMEOUT) -> None:
        self.package = package
        self.path = store_path(package)
        self.timeout = timeout
        self.lock = None
        self.doc: dict = {}
        self.set_aside = False

    def __enter__(self) -> Store:
        self.lock = paths.locked(self.path + ".lock", timeout=self.timeout)
        self.lock.__enter__()
        try:
            self.doc, self.set_aside = _load_locked(self.path, self.package)
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self

    def save(self) -> None:
        _save_locked(self.path, self.doc)

    def __exit__(self, *exc) -> None:
        self.lock.__exit__(*exc)


def _bucket(doc: dict, period: tuple[str, int, int], mode: str, resource: dict, settings: dict) -> dict | None:
    """The bucket for these attributes and period, created when new (None when the store is full)."""
    # Declared measurement keys are not part of the key: a run that declared none adds to the same counts.
    same = {k: v for k, v in settings.items() if k != "extra_keys"}
    for b in doc["buckets"]:
        if b["period"] == period[0] and b["mode"] == mode and b["resource"] == resource and \
                {k: v for k, v in b["settings"].items() if k != "extra_keys"} == same:
            keys = set(b["settings"].get("extra_keys") or ()) | set(settings.get("extra_keys") or ())
            b["settings"]["extra_keys"] = sorted(keys)
            return b
    if len(doc["buckets"]) + len(doc["outbox"]) >= MAX_BUCKETS:
        return None
    b = {"id": os.urandom(16).hex(), "period": period[0], "mode": mode, "start_ns": period[1], "end_ns": period[2],
         "first_ns": 0, "last_ns": 0, "runs": 0, "resource": resource, "settings": settings,
         "counts": [], "sums": [], "exemplars": {}}
    doc["buckets"].append(b)
    return b


def _merge(doc: dict, b: dict, tally: Tally, run: int) -> None:
    counts = {tuple(k): v for k, v in b["counts"]}
    full = 0
    for key, value in tally.counts.items():
        if key in counts or len(counts) < MAX_KEYS:
            counts[key] = counts.get(key, 0) + value
        else:
            full += value
    for reason, n in doc["meta"].pop("drops", {}).items():
        key = ("dropped", str(reason))
        counts[key] = counts.get(key, 0) + int(n)
    sums = {tuple(k): v for k, v in b["sums"]}
    for key, value in tally.sums.items():
        sums[key] = sums.get(key, 0.0) + value
    exemplars = b["exemplars"]
    for key, samples in tally.exemplars.items():
        reservoir = exemplars.get(key)
        if reservoir is None:
            if len(exemplars) >= MAX_EXEMPLAR_KEYS:
                continue
            reservoir = exemplars[key] = []
        for sample in samples:
            _keep(reservoir, [sample[0], sample[1], sample[2], sample[3], sample[4]])
    if full:
        counts[("dropped", "store_full")] = counts.get(("dropped", "store_full"), 0) + full
    b["counts"] = [[list(k), v] for k, v in counts.items()]
    b["sums"] = [[list(k), v] for k, v in sums.items()]
    b["runs"] += run
    first = max(tally.first_ns, b["start_ns"])
    b["first_ns"] = first if not b["first_ns"] else min(b["first_ns"], first)
    b["last_ns"] = min(max(b["last_ns"], tally.last_ns, first), b["end_ns"] - 1)


def expire(doc: dict, now_ns: int) -> int:
    """Delete buckets (waiting or in the outbox) whose period started more than ``MAX_AGE`` ago; count them."""
    expired = 0
    for section in ("buckets", "outbox"):
        kept = [b for b in doc[section] if b["start_ns"] >= now_ns - MAX_AGE_NS]
        expired += len(doc[section]) - len(kept)
        doc[section] = kept
    if expired:
        _drop(doc, "expired", expired)
        doc["meta"]["expired"] = int(doc["meta"].get("expired", 0)) + expired
    return expired


def upload_due(doc: dict, now_ns: int) -> bool:
    """True when a period has ended (or a report waits in the outbox) and no upload is scheduled later."""
    meta = doc["meta"]
    if now_ns < int(meta.get("retry_ns", 0)) or now_ns - int(meta.get("spawned_ns", 0)) < SPAWN_GAP_NS:
        return False
    return bool(doc["outbox"]) or any(b["end_ns"] <= now_ns for b in doc["buckets"])


def _tally_line(mode: str, period, resource: dict, settings: dict, tally: Tally, run: int) -> str:
    return jsonline.dumps({
        "v": VERSION, "mode": mode, "period": list(period), "resource": resource, "settings": settings,
        "counts": [[list(k), v] for k, v in tally.counts.items()],
        "sums": [[list(k), v] for k, v in tally.sums.items()],
        "exemplars": {k: [list(x) for x in v] for k, v in tally.exemplars.items()},
        "first_ns": tally.first_ns, "last_ns": tally.last_ns, "run": run,
    })


def _append(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def record(package: str, mode: str, resource: dict, settings: dict, tally: Tally, allowed, count_run: bool,
           can_upload: bool = True) -> dict:
    """Append ``tally`` (and one run, with ``count_run``) to the journal; return ``{"written", "upload_due",
    "set_aside"}``. Raises OSError or ``paths.LockTimeout``. Bounded: never reads the store.

    ``upload_due`` is True (and the upload is then taken as started, for
    ``SPAWN_GAP_NS``) only for a caller that ``can_upload``: it starts the uploader.

    ``allowed()`` is asked again while the journal lock is held: a ``usagetrace
    disable`` that deleted the store first is never undone by a run that was
    already ending (nothing after no).
    """
    now = _clock.time_ns()
    period = tally.period or period_of(mode, tally.last_ns or now)
    line = _tally_line(mode, period, resource, settings, tally, 1 if count_run else 0)
    path = journal_path(package)
    written = True
    with paths.locked(path + ".lock", timeout=LOCK_TIMEOUT):
        if not allowed():
            return {"written": False, "upload_due": False, "set_aside": False}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size + len(line) >= MAX_JOURNAL_BYTES:
                written = False  # full until the uploader folds it: the run is dropped, and counted
                line = jsonline.dumps({"v": VERSION, "dropped": {"store_full": 1}})
                if size + len(line) >= MAX_JOURNAL_BYTES + JOURNAL_SLACK:
                    line = ""
            if line:
                # A leading newline too: a line torn by a kill mid-append never swallows the next run's.
                _append(fd, ("\n" + line + "\n").encode("utf-8"))
        finally:
            os.close(fd)
    due = can_upload and _claim_upload(package, now, period)
    return {"written": written, "upload_due": due, "set_aside": False}


def _claim_upload(package: str, now: int, period) -> bool:
    """True (and the next upload pushed ``SPAWN_GAP_NS`` away) when ``<package>.schedule`` says one is due."""
    path = schedule_path(package)
    try:
        with open(path, "rb") as fh:  # digits: no text codec to load (encodings.ascii is not loaded at exit)
            next_ns = int(fh.read(32) or 0)
    except (OSError, ValueError):
        next_ns = 0  # never scheduled (or unreadable): the uploader looks once, then writes the schedule
    if now < next_ns:
        return False
    paths.atomic_write(path, str(now + SPAWN_GAP_NS))
    return True


def reschedule(package: str, doc: dict, now_ns: int) -> None:
    """After an upload: when the next one is due (a retry, the end of the earliest waiting period)."""
    meta = doc["meta"]
    if doc["outbox"]:
        when = max(int(meta.get("retry_ns", 0)), now_ns + SPAWN_GAP_NS)
    else:
        ends = [b["end_ns"] for b in doc["buckets"]]
        when = min(ends) if ends else period_of("daily", now_ns)[2]
    try:
        paths.atomic_write(schedule_path(package), str(when))
    except OSError:
        log.debug("cannot write the upload schedule of %s", package, exc_info=True)


def _journals(package: str) -> list[str]:
    """The journal files set aside for folding (oldest first), then the live journal if any."""
    path = journal_path(package)
    folder, name = os.path.split(path)
    try:
        aside = sorted(e for e in os.listdir(folder) if e.startswith(name + ".") and e.endswith(".folding"))
    except OSError:
        return []
    out = [os.path.join(folder, e) for e in aside]
    if os.path.exists(path):
        out.append(path)
    return out


def _fold_file(doc: dict, path: str) -> None:
    """Merge one journal file's runs into ``doc`` (a torn or unreadable line is skipped and counted)."""
    with open(path, "rb") as fh:
        data = fh.read()
    json = _json_module()
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if "dropped" in rec:
                for reason, n in rec["dropped"].items():
                    _drop(doc, str(reason), int(n))
                continue
            tally = Tally()
            tally.period = tuple(rec["period"])
            tally.counts = {tuple(k): int(v) for k, v in rec["counts"]}
            tally.sums = {tuple(k): float(v) for k, v in rec["sums"]}
            from .spool import samples_from_json

            tally.exemplars = {str(k): samples_from_json(v) for k, v in rec["exemplars"].items()}
            tally.first_ns, tally.last_ns = int(rec["first_ns"]), int(rec["last_ns"])
            mode = rec["mode"] if rec["mode"] in ("daily", "weekly") else "daily"
            if not isinstance(rec["resource"], dict) or not isinstance(rec["settings"], dict):
                raise ValueError("shape")
        except Exception:
            _drop(doc, "journal_torn", 1)  # a line cut by a kill mid-append (or not ours): that run is lost
            continue
        b = _bucket(doc, tally.period, mode, rec["resource"], rec["settings"])
        if b is None:
            _drop(doc, "store_full", 1)
        else:
            _merge(doc, b, tally, int(rec.get("run", 0)))


def compact(store: Store) -> list[str]:
    """Fold the journal into ``store.doc`` (the caller holds the store and saves it, then calls :func:`finished`).

    Returns the journal files merged. Their names are recorded in the
    document, so a fold interrupted after the save never merges them twice.
    """
    package = store.package
    path = journal_path(package)
    try:
        with paths.locked(path + ".lock", timeout=LOCK_TIMEOUT):
            if os.path.exists(path):
                os.replace(path, f"{path}.{_clock.time_ns()}-{os.getpid()}.folding")
    except paths.LockTimeout:
        pass  # runs are appending: fold what was set aside before, the rest next time
    meta = store.doc["meta"]
    done = [n for n in meta.get("folded", []) if os.path.exists(os.path.join(os.path.dirname(path), n))]
    merged = []
    for file in _journals(package):
        name = os.path.basename(file)
        if file == path:
            continue
        if name in done:
            merged.append(file)  # merged and saved before a kill: only the deletion is left
            continue
        try:
            _fold_file(store.doc, file)
        except OSError:
            continue
        done.append(name)
        merged.append(file)
    meta["folded"] = done
    return merged


def fold(package: str) -> None:
    """Fold ``package``'s journal into its store now (``preview --pending``, tests). Raises OSError."""
    with Store(package) as store:
        files = compact(store)
        if files or store.set_aside:
            store.save()
    finished(files)


def finished(files: list[str]) -> None:
    """Delete journal files whose runs are saved in the store."""
    for file in files:
        try:
            os.unlink(file)
        except OSError:
            pass


def load(package: str) -> tuple[dict | None, str | None]:
    """Read the store, with the journal's runs merged in, without changing anything: ``(document or None,
    problem or None)``."""
    path = store_path(package)
    doc = None
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_FILE_BYTES + 1)
        if len(text) > MAX_FILE_BYTES:
            raise Broken("too large")
        doc = _parse(text, package)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path}: {exc}"
    except Broken as exc:
        return None, f"{path} cannot be read ({exc}); the next run sets it aside"
    journals = _journals(package)
    if not journals:
        return doc, None
    doc = doc if doc is not None else _new_doc(package)
    done = set(doc["meta"].get("folded", []))
    for file in journals:
        if os.path.basename(file) not in done:
            try:
                _fold_file(doc, file)
            except OSError:
                continue
    return doc, None


def summary(doc: dict | None) -> dict:
    """What waits: runs, periods, reports in the outbox, and the upload schedule (for status and flush)."""
    if doc is None:
        return {"runs": 0, "periods": [], "period_ends_ns": [], "outbox": 0, "drops": {}, "retry_ns": 0,
                "last_upload": None, "set_aside": 0, "rejected": 0, "expired": 0}
    meta = doc["meta"]
    return {
        "runs": sum(b["runs"] for b in doc["buckets"] + doc["outbox"]),
        "periods": sorted({b["period"] for b in doc["buckets"] + doc["outbox"]}),
        "period_ends_ns": sorted({b["end_ns"] for b in doc["buckets"]}),
        "outbox": len(doc["outbox"]),
        "drops": dict(meta.get("drops", {})),
        "retry_ns": int(meta.get("retry_ns", 0)),
        "last_upload": meta.get("last_upload"),
        "set_aside": int(meta.get("set_aside", 0)),
        "rejected": int(meta.get("rejected", 0)),
        "expired": int(meta.get("expired", 0)),
    }


def packages() -> list[str]:
    """Packages with a store here."""
    try:
        names = os.listdir(directory())
    except OSError:
        return []
    return sorted({n[: -len(".json")] for n in names if n.endswith(".json")}
                  | {n[: -len(".journal")] for n in names if n.endswith(".journal")}
                  | {n.split(".journal.", 1)[0] for n in names if ".journal." in n and n.endswith(".folding")})


def discard(package: str) -> int:
    """Delete ``package``'s store, journal and schedule (waiting and outbox) unsent; return how many runs they
    held. Raises OSError."""
    path = store_path(package)
    journals = _journals(package)
    if not os.path.exists(path) and not journals:
        return 0
    # store lock, then journal lock: the order compact() takes them in
    with paths.locked(path + ".lock", timeout=10.0), paths.locked(journal_path(package) + ".lock", timeout=10.0):
        doc, _ = load(package)
        runs = summary(doc)["runs"]
        for file in [path, schedule_path(package), *_journals(package)]:
            try:
                os.unlink(file)
            except FileNotFoundError:
                pass
    return runs
