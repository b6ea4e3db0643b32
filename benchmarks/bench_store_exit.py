"""The daily at-exit fold at any store size (issue 18): what a run's exit costs in daily mode, vs the store's size.

    .venv/bin/python benchmarks/bench_store_exit.py [--quick]

For stores of growing size (0, 1, 4 and 7.5 MB of buckets, the last near the
8 MB cap) and a journal already holding many runs, times ``aggregate.record``
(what a daily run does at exit: append its tallies to the journal under the
journal lock, read the upload schedule) in this process, median and p95 of
N calls, each with a fresh tally like one CLI run's. Also times one fold of
the journal into the store (``aggregate.fold``, the detached uploader's work).
Prints a Markdown section for BENCHMARKS.md (pasted between its start/end markers there, which
`run.py` keeps when it rewrites the file). Nothing is sent; nothing asserts a time.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

QUICK = "--quick" in sys.argv
N = 50 if QUICK else 300


def _tally(aggregate, now):
    t = aggregate.Tally()
    t.period = aggregate.period_of("daily", now)
    t.add_counts({("calls", "benchcli.f", "ok"): 5, ("calls", "benchcli.g", "error"): 1,
                  ("errors", "benchcli.g", "ValueError"): 1}, now - 10**8, now)
    t.add_samples([("usagetrace.command", now - 10**8, now, {"usagetrace.command.name": "build",
                                                             "usagetrace.measure.n": 3, "process.exit.code": 0}, None)])
    return t


def _fill(aggregate, package: str, megabytes: float) -> int:
    """Write a store of about ``megabytes`` (distinct buckets: many installs' worth of keys); return its size."""
    doc = aggregate._new_doc(package)
    now = time.time_ns()
    period = aggregate.period_of("daily", now)
    i = 0
    while len(json.dumps(doc)) < megabytes * 1024 * 1024 and len(doc["buckets"]) < aggregate.MAX_BUCKETS - 1:
        b = {"id": os.urandom(16).hex(), "period": period[0], "mode": "daily", "start_ns": period[1],
             "end_ns": period[2], "first_ns": now, "last_ns": now, "runs": 1,
             "resource": {"service.name": package, "service.version": f"1.{i}"}, "settings": {"policy": "opt-in"},
             "counts": [], "sums": [], "exemplars": {}}
        doc["buckets"].append(b)
        keys = int(megabytes * 1024 * 1024 / 60 / (aggregate.MAX_BUCKETS - 1)) + 1
        b["counts"] = [[["calls", f"benchcli.fn_{i}_{k}", "ok"], k] for k in range(min(keys, aggregate.MAX_KEYS))]
        i += 1
    aggregate._save_locked(aggregate.store_path(package), doc)
    return os.path.getsize(aggregate.store_path(package))


def main() -> int:
    home = tempfile.mkdtemp(prefix="bench-store-")
    os.environ["USAGETRACE_HOME"] = home
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
    from usagetrace._internal import aggregate

    res = {"service.name": "benchcli", "usagetrace.install.id": "0b5ee5e6-5eed-4000-8000-000000000000"}
    settings = {"policy": "opt-in", "ci": "off", "endpoint": None, "consent_version": None, "dev_file": None,
                "extra_keys": ["n"], "grant": "user", "project_dir": "/", "destination": {}}
    rows = []
    for label, mb in (("empty", 0.0), ("1 MB", 1.0), ("4 MB", 4.0), ("7.5 MB", 7.5)):
        package = f"bench{label.replace(' ', '').replace('.', '')}"
        size = _fill(aggregate, package, mb) if mb else 0
        aggregate.record(package, "daily", res, settings, _tally(aggregate, time.time_ns()), lambda: True, True)
        times = []
        for _ in range(N):
            t = _tally(aggregate, time.time_ns())
            start = time.perf_counter()
            aggregate.record(package, "daily", res, settings, t, lambda: True, True)
            times.append((time.perf_counter() - start) * 1000)
        journal = os.path.getsize(aggregate.journal_path(package))
        start = time.perf_counter()
        aggregate.fold(package)
        fold_ms = (time.perf_counter() - start) * 1000
        doc, _ = aggregate.load(package)
        runs = sum(b["runs"] for b in doc["buckets"])
        times.sort()
        rows.append((label, size, journal, statistics.median(times), times[int(len(times) * 0.95) - 1], fold_ms, runs))
    print("## Daily at-exit fold vs store size (issue 18)\n")
    print(f"`benchmarks/bench_store_exit.py`: `aggregate.record` (a daily run's exit work: one journal line under "
          f"the journal lock, the upload schedule read) timed in-process, {N} calls per store size after one "
          "warm-up, each with a fresh one-run tally; then one fold of that journal into the store (the detached "
          "uploader's work, off every person's process).\n")
    print("| store size | journal before fold | exit fold median ms | p95 ms | target | fold into store (uploader) ms |")
    print("|---|---|---|---|---|---|")
    for label, size, journal, med, p95, fold_ms, runs in rows:
        print(f"| {label} ({size / 1e6:.2f} MB on disk) | {journal / 1e3:.0f} kB, {N + 1} runs | {med:.3f} | "
              f"{p95:.3f} | ≤ 5 ms | {fold_ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
