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


#: Appended to the name of the nearest sendable base class (see :func:`type_name`);
#: ``allowlist.SUBCLASS_SUFFIX`` (documented there) is this very constant.
SUBCLASS_SUFFIX = "+subclass"

_NAMES: dict = {}  # (id(type), package) -> (type, name); bounded (dynamically made classes must not pile up)
_MAX_NAMES = 1024


def type_name(exc_type: type, package: str) -> str:
    """Return the sendable name of an exception class raised through ``package``.

    A class's qualified name (``module.Qualname``; builtins without module) is
    sent only when the class is defined in ``package``, in builtins or in the
    standard library, *and* that name resolves back to the very class (so a
    class that sets its own ``__module__``/``__qualname__``, or one made with
    ``type(name, ...)`` and never bound under that name, is not taken at its
    word). Any other class (the host's own, a third-party library's) is sent
    as its nearest such base class in the MRO plus a suffix:
    ``acme.billing.SecretError(ValueError)`` becomes ``ValueError+subclass``
    (:data:`SUBCLASS_SUFFIX`).
    """
    key = (id(exc_type), package)  # by id: a metaclass's __hash__ is the host's code
    entry = _NAMES.get(key)
    if entry is not None and entry[0] is exc_type:  # the entry holds the class: its id is not reused
        return entry[1]
    name = _type_name(exc_type, package)
    if len(_NAMES) >= _MAX_NAMES:
        _NAMES.clear()
    _NAMES[key] = (exc_type, name)
    return name


def _type_name(exc_type: type, package: str) -> str:
    try:
        mro = type.__dict__["__mro__"].__get__(exc_type)
    except Exception:
        return "BaseException" + SUBCLASS_SUFFIX
    for i, cls in enumerate(mro):
        name = _own_name(cls, package)
        if name is not None:
            return name if i == 0 else name + SUBCLASS_SUFFIX
    return "BaseException" + SUBCLASS_SUFFIX  # not a class at all


def _own_name(cls: type, package: str) -> str | None:
    """``cls``'s qualified name when it may be sent (see :func:`type_name`), else None."""
    try:
        # type's own descriptors: a metaclass cannot answer with a property of its own
        module = type.__dict__["__module__"].__get__(cls)
        qualname = type.__dict__["__qualname__"].__get__(cls)
        if not isinstance(module, str) or not isinstance(qualname, str):
            return None
        if not (module == "builtins" or in_package(module, package) or is_stdlib(module)):
            return None
        parts = qualname.split(".")
        if not all(part.isidentifier() for part in parts) or not all(p.isidentifier() for p in module.split(".")):
            return None
        obj = sys.modules.get(module)
        for part in parts:
            # the namespace itself: no module __getattr__, property or warning runs
            obj = vars(obj).get(part) if obj is not None else None
        if obj is not cls:
            return None
        name = qualname if module == "builtins" else f"{module}.{qualname}"
        return name if len(name) <= _MAX_NAME else None
    except Exception:
        return None


def is_stdlib(module: str) -> bool:
    """True for a module of the standard library (``sys.stdlib_module_names``; before 3.10, by location)."""
    top = module.partition(".")[0]
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names
    if top in sys.builtin_module_names:
        return True
    return top in _stdlib_39()


_STDLIB_39: set = set()


def _stdlib_39() -> set:
    """Python 3.9: the top-level modules in the interpreter's own library directory (where ``os`` lives).

    Nothing is imported for it (the host's ``sys.modules`` stays as it was): ``os``
    is always loaded, and its directory is the standard library's.
    """
    if not _STDLIB_39:
        os = sys.modules["os"]
        root = os.path.dirname(os.__file__)
        found = {"__future__"}
        for folder in (root, os.path.join(root, "lib-dynload")):
            try:
                entries = os.listdir(folder)
            except OSError:
                continue
            for entry in entries:
                if entry in ("site-packages", "dist-packages"):
                    continue
                name = entry.partition(".")[0]
                if name.isidentifier():
                    found.add(name)
        _STDLIB_39.update(found)
    return _STDLIB_39


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
