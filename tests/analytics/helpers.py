"""Shared fixtures-on-disk helpers for the analytics tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import fixtures


def group_installs(records: Iterable[tuple[Any, ...]], key_idx: Iterable[int], install_idx: int = 1) -> dict[Any, set[str]]:
    """Distinct installs per key (a tuple of the given record positions)."""
    idx = list(key_idx)
    out: dict[Any, set[str]] = defaultdict(set)
    for r in records:
        out[tuple(r[i] for i in idx)].add(r[install_idx])
    return out


def pkg(records: Iterable[tuple[Any, ...]], package: str = fixtures.PKG) -> list[tuple[Any, ...]]:
    """Only the records of one package."""
    return [r for r in records if r[0] == package]
