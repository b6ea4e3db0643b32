"""Forgetting a package on withdrawal: the one place that deletes what is kept locally about it.

``usagetrace disable PKG`` calls :func:`forget` after storing the denial, so
nothing recorded before the withdrawal can be sent later, and data sent after a
later re-enable cannot be joined with data sent before it (a new install id).

Every local store of per-package telemetry data is emptied here (the spool,
the local aggregate of daily and weekly uploads, waiting and in its outbox):
when a new one is added, add its deletion to :func:`forget` and a count to
its report. Receipts are kept on purpose: they
are the person's own record of what left the machine, and hold the install id
they need to ask a maintainer to delete the data sent under it.
"""

from __future__ import annotations

from . import log


def forget(package: str, *, install_id: bool = True) -> dict:
    """Delete ``package``'s pending spool, local aggregate and (``install_id``) install id; return what was deleted.

    ``{"spooled_batches": int, "aggregated_runs": int, "install_id": str |
    None}`` (the id that was deleted, so the person can still quote it in a
    deletion request). The uploader and a running process that see consent
    gone call it too, keeping the id unless the answer was a no. Each step is
    attempted even when another fails; failures are logged at debug level and
    reported as ``errors``.
    """
    from . import aggregate, resource, spool

    report: dict = {"spooled_batches": 0, "aggregated_runs": 0, "install_id": None, "errors": []}
    # The id goes first: it is what joins anything left behind to this install,
    # and whoever watches for the data to go can rely on the id being gone too.
    steps = [("install_id", "install id", resource.delete_install_id)] if install_id else []
    steps += [("spooled_batches", "spool", spool.discard), ("aggregated_runs", "aggregate", aggregate.discard)]
    for key, what, step in steps:
        try:
            report[key] = step(package)
        except Exception as exc:
            log.debug("cannot delete the %s of %s", what, package, exc_info=True)
            report["errors"].append(f"{what}: {exc}")
    return report
