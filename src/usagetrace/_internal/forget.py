"""Forgetting a package on withdrawal: the one place that deletes what is kept locally about it.

``usagetrace disable PKG`` calls :func:`forget` after storing the denial, so
nothing recorded before the withdrawal can be sent later, and data sent after a
later re-enable cannot be joined with data sent before it (a new install id).

Every local store of per-package telemetry data must be emptied here: when a
new one is added (e.g. a local aggregate store), add its deletion to
:func:`forget` and a count to its report. Receipts are kept on purpose: they
are the person's own record of what left the machine, and hold the install id
they need to ask a maintainer to delete the data sent under it.
"""

from __future__ import annotations

from . import log


def forget(package: str) -> dict:
    """Delete ``package``'s pending spool and install id; return what was deleted.

    ``{"spooled_batches": int, "install_id": str | None}`` (the id that was
    deleted, so the person can still quote it in a deletion request). Each
    step is attempted even when another fails; failures are logged at debug
    level and reported as ``errors``.
    """
    from . import resource, spool

    report: dict = {"spooled_batches": 0, "install_id": None, "errors": []}
    try:
        report["spooled_batches"] = spool.discard(package)
    except Exception as exc:
        log.debug("cannot delete the spool of %s", package, exc_info=True)
        report["errors"].append(f"spool: {exc}")
    try:
        report["install_id"] = resource.delete_install_id(package)
    except Exception as exc:
        log.debug("cannot delete the install id of %s", package, exc_info=True)
        report["errors"].append(f"install id: {exc}")
    return report
