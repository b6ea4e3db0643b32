"""Forgetting a package on withdrawal: the one place that deletes what is kept locally about it.

``usagetrace disable PKG`` calls :func:`forget` after storing the denial, so
nothing recorded before the withdrawal can be sent later, and data sent after a
later re-enable cannot be joined with data sent before it (a new install id).

Every local copy of per-package telemetry data is deleted here: the spool, the
local aggregate of daily and weekly uploads (waiting, in its outbox, and the
broken stores set aside as ``aggregate/PKG.json.broken-*``), the development-mode
file (``dev/PKG.jsonl`` and its rotated ``.1`` in the cache directory) and the
report cache built from it. When a new store is added, add its deletion to
:func:`forget` and a count to its report. A development file the person chose
(``USAGETRACE_DEV_FILE``) may hold other packages' data and is theirs: kept.
Receipts are kept on purpose: they are the person's own record of what left
the machine, and hold the install id they need to ask a maintainer to delete
the data sent under it.
"""

from __future__ import annotations

import os

from . import log, paths


def forget(package: str, *, install_id: bool = True) -> dict:
    """Delete ``package``'s pending spool, local aggregate, other local copies and (``install_id``) install id.

    Returns ``{"spooled_batches": int, "aggregated_runs": int, "install_id":
    str | None, "local_copies": int, "errors": [...]}``: the id that was
    deleted (so the person can still quote it in a deletion request) and how
    many other files (set-aside stores, development files, report caches) were
    deleted. The uploader and a running process that see consent gone call it
    too, keeping the id unless the answer was a no. Each step is attempted even
    when another fails; failures are logged at debug level and reported as ``errors``.
    """
    from . import aggregate, resource, spool

    report: dict = {"spooled_batches": 0, "aggregated_runs": 0, "install_id": None, "local_copies": 0, "errors": []}
    # The id goes first: it is what joins anything left behind to this install,
    # and whoever watches for the data to go can rely on the id being gone too.
    steps = [("install_id", "install id", resource.delete_install_id)] if install_id else []
    steps += [("spooled_batches", "spool", spool.discard), ("aggregated_runs", "aggregate", aggregate.discard),
              ("local_copies", "local copies", _local_copies)]
    for key, what, step in steps:
        try:
            report[key] = step(package)
        except Exception as exc:
            log.debug("cannot delete the %s of %s", what, package, exc_info=True)
            report["errors"].append(f"{what}: {exc}")
    return report


def dev_files(package: str) -> list[str]:
    """The default development-mode file of ``package`` and its rotated copy."""
    base = os.path.join(paths.user_dir("cache"), "dev", f"{package}.jsonl")
    return [base, base + ".1"]


def _report_caches(sources: list[str]) -> list[str]:
    """The report-cache databases ``usagetrace report SOURCE`` keeps for these sources (and their WALs)."""
    if not os.path.isdir(os.path.join(paths.user_dir("cache"), "report")):
        return []  # no report was ever made here (and no analytics import in a host's process)
    from .analytics.duckdb_engine import default_cache_path

    out = []
    for source in sources:
        db = default_cache_path(source)
        out += [db, db + ".wal"]
    return out


def _local_copies(package: str) -> int:
    """Delete set-aside aggregate stores, the development files and their report caches; return how many."""
    from . import aggregate

    store = aggregate.store_path(package)
    folder, name = os.path.split(store)
    candidates = []
    try:
        candidates += [os.path.join(folder, e) for e in os.listdir(folder) if e.startswith(name + ".broken-")]
    except FileNotFoundError:
        pass
    dev = dev_files(package)
    # The cache of a report on the whole dev directory holds this package too: a cache, rebuilt when needed.
    candidates += dev + _report_caches([*dev, os.path.dirname(dev[0])])
    deleted = 0
    for path in candidates:
        try:
            os.unlink(path)
            deleted += 1
        except FileNotFoundError:
            pass
    return deleted
