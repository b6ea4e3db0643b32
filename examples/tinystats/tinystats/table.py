"""A tiny column table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Table:
    """Named numeric columns."""

    columns: dict = field(default_factory=dict)

    def add(self, name, values):
        """Add a column."""
        self.columns[name] = list(values)
        return self

    def describe(self, name):
        """Summarize one column."""
        from . import summarize

        return summarize(self.columns[name])

    @classmethod
    def from_rows(cls, rows):
        """Build a table from dict rows."""
        table = cls()
        for row in rows:
            for key, value in row.items():
                table.columns.setdefault(key, []).append(value)
        return table

    @staticmethod
    def width(values):
        """Return max - min."""
        return max(values) - min(values)

    def iter_rows(self):
        """Yield rows as dicts."""
        names = list(self.columns)
        for i in range(len(self.columns[names[0]]) if names else 0):
            yield {n: self.columns[n][i] for n in names}
