"""Exception facts that are safe to send: the type's name and in-package frames.

Never the message (it routinely carries paths, SQL, user data), never file
paths, never local variables.
"""

from __future__ import annotations

import sys

MAX_FRAMES = 32
_MAX_NAME = 128


def _identifier(text: str) -> str:
    # Names come from code, but a dynamically created type or module can carry
    # anything; keep identifier characters only.
    cleaned = "".join(ch if (ch.isalnum() or ch in "._") and ch.isascii() else "_" for ch in text)
    return cleaned[:_MAX_NAME] or "_"


def type_name(exc_type: type) -> str:
    """Return ``module.Qualname`` of an exception type (builtins without module)."""
    try:
        qualname = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "Exception")
        module = getattr(exc_type, "__module__", None)
        if not isinstance(qualname, str):
            qualname = "Exception"
        if isinstance(module, str) and module not in ("builtins", "__main__", ""):
            return _identifier(f"{module}.{qualname}")
        return _identifier(qualname)
    except Exception:
        return "Exception"


def in_package(module: object, package: str) -> bool:
    """Return True when a module name belongs to ``package``."""
    return isinstance(module, str) and (module == package or module.startswith(package + "."))


def _is_wrapper(code) -> bool:
    """usagetrace's wrapper frames carry the package's globals and file (wrappers.py): they are not its frames."""
    wrappers = sys.modules.get("usagetrace._internal.wrappers")
    return wrappers is not None and wrappers.is_own_code(code)


def frames(tb, package: str) -> list[tuple[str, str, int]]:
    """Return (module, function, line) for each traceback frame inside ``package``, outermost first."""
    out = []
    seen = 0
    while tb is not None and seen < 1000:
        seen += 1
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__")
        if in_package(module, package) and not _is_wrapper(frame.f_code):
            code = frame.f_code
            function = getattr(code, "co_qualname", code.co_name)
            out.append((_identifier(module), _identifier(function), int(tb.tb_lineno or 0)))
        tb = tb.tb_next
    if len(out) > MAX_FRAMES:
        # Keep both ends: where the call entered and where it failed.
        half = MAX_FRAMES // 2
        out = out[:half] + out[-half:]
    return out


def stacktrace(frame_list: list[tuple[str, str, int]]) -> str:
    """Render frames as ``module:function:line`` lines."""
    return "\n".join(f"{m}:{f}:{line}" for m, f, line in frame_list)


def signature(exc_type_name: str, frame_list: list[tuple[str, str, int]]) -> str:
    """Return a short stable hash of the type and frames without line numbers, for grouping."""
    import hashlib

    text = exc_type_name + "|" + "|".join(f"{m}:{f}" for m, f, _ in frame_list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
