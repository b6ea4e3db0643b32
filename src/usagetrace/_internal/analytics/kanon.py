"""k-anonymity: the single place where small groups are removed.

Every question's rows pass through :func:`apply` before anything else sees them
(:meth:`usagetrace.analytics.Analytics._run` is the only caller, and the only
way query results leave the engine). A row describing fewer than ``k`` distinct
units (installs, or hashed users for page questions) is never returned: within
its partition (e.g. one day of an adoption curve) it is folded into a single
``"(other)"`` row whose additive counts are summed and whose unit count is the
size of the *union* of the folded groups' ids. If that union is itself smaller
than ``k``, the "other" row is dropped too. Non-additive values (percentiles,
version lists, first/last times) of folded rows are discarded.

The limit, stated rather than hidden: units are install ids, which clients
report about themselves. Someone who can send to the endpoint can add ``k - 1``
made-up ids to a group and so show one real install's rare row. No field of
the data can tell a forged id from a real one (the collector stores no source
address, by design), so this guards reports of honest data; an endpoint that
anyone can reach needs authentication in front of it before its reports are
published (README, "Reports"; docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_K", "OTHER", "KResult", "apply", "check_k"]

DEFAULT_K = 5
OTHER = "(other)"


def check_k(k: object) -> int:
    """Validate a k value: an int >= 1 (1 disables suppression, explicitly)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


@dataclass(frozen=True)
class KResult:
    """Rows that passed, and how many input rows were folded or dropped.

    ``empty`` counts the dropped rows that describe no unit at all (such as
    the totals row of a question with no data): they hide nobody, and ``k=1``
    would not show them either.
    """

    rows: list[dict[str, Any]]
    folded: int
    dropped: int
    empty: int = 0


def _ids(row: dict[str, Any]) -> set[str]:
    ids = row.get("_ids") or ()
    return {i for i in ids if i not in (None, "")}


def apply(
    rows: Iterable[dict[str, Any]],
    *,
    k: int,
    unit: str,
    labels: Sequence[str] = (),
    partition: Sequence[str] = (),
    additive: Sequence[str] = (),
) -> KResult:
    """Suppress or fold every row whose ``unit`` count is below ``k``.

    Rows must carry ``unit`` (an int) and ``_ids`` (the unit ids when the group
    is smaller than k); ``_ids`` is removed from the output.
    """
    check_k(k)
    kept: list[dict[str, Any]] = []
    small: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    order: list[tuple[Any, ...]] = []
    for row in rows:
        n = row.get(unit) or 0
        if n >= k:
            out = {c: v for c, v in row.items() if c != "_ids"}
            kept.append(out)
            continue
        key = tuple(row.get(p) for p in partition)
        if key not in small:
            small[key] = []
            order.append(key)
        small[key].append(row)

    folded = dropped = empty = 0
    for key in order:
        group = small[key]
        union: set[str] = set()
        for row in group:
            union |= _ids(row)
        if not labels or len(union) < k:
            # nothing to fold into (no label to replace) or the fold is still too small
            dropped += len(group)
            empty += sum(1 for row in group if not row.get(unit))
            continue
        other: dict[str, Any] = {}
        for col in group[0]:
            if col == "_ids":
                continue
            if col in partition:
                other[col] = group[0][col]
            elif col in labels:
                other[col] = OTHER
            elif col == unit:
                other[col] = len(union)
            elif col in additive:
                other[col] = sum((r.get(col) or 0) for r in group)
            else:
                other[col] = None
        kept.append(other)
        folded += len(group)
    return KResult(kept, folded, dropped, empty)
