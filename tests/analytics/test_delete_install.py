"""docs/deployment.md's deletion of one install id, run as written on chdb over the exporter's tables."""

from __future__ import annotations

import re
from pathlib import Path

import fixtures
import pytest

chdb_session = pytest.importorskip("chdb.session")

import ch_load

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
ID_COUNTS = """
SELECT id, sum(n) FROM (
    SELECT ResourceAttributes['usagetrace.install.id'] AS id, count() AS n FROM usagetrace.otel_traces GROUP BY id
    UNION ALL
    SELECT ResourceAttributes['usagetrace.install.id'] AS id, count() AS n FROM usagetrace.otel_metrics_sum GROUP BY id
) GROUP BY id ORDER BY id
"""


def _documented_statements() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Deleting one install's data"):]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    return [statement.strip() for statement in block.split(";") if statement.strip()]


def _counts(session) -> dict[str, int]:
    rows = session.query(ID_COUNTS, "CSV").bytes().decode().splitlines()
    return {row.split(",")[0].strip('"'): int(row.split(",")[1]) for row in rows}


def test_documented_deletion_removes_exactly_one_install(tmp_path):
    """The documented statements delete every row of one install id, in both tables, and nothing else."""
    truth = fixtures.generate()
    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        ch_load.load(session, truth.lines, tmp_path, db="usagetrace")
        before = _counts(session)
        victim = max(before, key=before.get)
        assert len(before) > 2 and before[victim] > 0
        statements = _documented_statements()
        assert len(statements) == 3
        for statement in statements[:-1]:
            session.query(statement.replace("INSTALL-ID", victim))
        rows_left = session.query(statements[-1].replace("INSTALL-ID", victim), "CSV").bytes().decode().strip()
        after = _counts(session)
    finally:
        session.close()
    assert rows_left == "0"
    assert victim not in after
    assert after == {k: v for k, v in before.items() if k != victim}
