"""Test setup for the analytics tests: make ``src/`` importable without an install."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import usagetrace  # noqa: F401
except ImportError:  # the package is not installed (editable install pending): use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
