"""The ``usagetrace`` command line (``usagetrace --help``); the implementation is private."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``usagetrace`` command and return its exit code."""
    from ._internal.cli import main as _main

    return _main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
