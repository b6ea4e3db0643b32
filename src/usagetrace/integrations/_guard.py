"""Import guard: a missing optional framework names the extra to install."""

from __future__ import annotations

import sys


def require(module: str, extra: str, integration: str):
    """Import ``module`` or raise ImportError telling which usagetrace extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"usagetrace.integrations.{integration} needs {module!r}, which is not installed; "
            f"install it with: pip install 'usagetrace[{extra}]'"
        ) from exc


def available(module: str) -> bool:
    """True when the top-level ``module`` is imported or importable, without importing it (nor importlib.util)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        try:
            if find_spec is not None and find_spec(module, None) is not None:
                return True
        except Exception:
            continue
    return False
