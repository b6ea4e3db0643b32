"""Import guard: a missing optional framework names the extra to install."""

from __future__ import annotations

import importlib


def require(module: str, extra: str, integration: str):
    """Import ``module`` or raise ImportError telling which usagetrace extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"usagetrace.integrations.{integration} needs {module!r}, which is not installed; "
            f"install it with: pip install 'usagetrace[{extra}]'"
        ) from exc
