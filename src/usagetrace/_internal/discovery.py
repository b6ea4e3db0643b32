"""Finding a package's public API without importing anything new.

Public API = names not starting with ``_`` (or listed in ``__all__``) that the
package itself defines, in the package and its public submodules. Submodules
are found by listing the package directories, never by importing them; those
imported later are instrumented by wrapt post-import hooks.
"""

from __future__ import annotations

import inspect
import os
import sys

from .sanitize import in_package

#: ``usagetrace.callable.kind`` for callables that are not plain sync calls.
CALL_KINDS = ("coroutine", "generator", "asyncgen")


def is_public_module(name: str, package: str) -> bool:
    """Return True for ``package`` and submodules with no ``_``-prefixed component."""
    if name == package:
        return True
    if not name.startswith(package + "."):
        return False
    return not any(part.startswith("_") for part in name[len(package) + 1 :].split("."))


def call_kind(func) -> str:
    """Return coroutine, generator, asyncgen or sync for a function object."""
    if inspect.iscoroutinefunction(func):
        return "coroutine"
    if inspect.isasyncgenfunction(func):
        return "asyncgen"
    if inspect.isgeneratorfunction(func):
        return "generator"
    return "sync"


#: Names whose presence in a function's code means it looks at its caller's
#: frame (``sys._getframe(1)``, ``inspect.currentframe().f_back``, ...): a
#: wrapper's frame would sit in between and change what the function sees, so
#: such functions are left unwrapped (behaviour first, counts second).
_FRAME_NAMES = frozenset({"_getframe", "currentframe", "getouterframes", "extract_stack", "walk_stack",
                          "_getframemodulename", "f_back"})


def inspects_caller(func) -> bool:
    """Return True when ``func`` reads its caller's frame or warns with a ``stacklevel``."""
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    if not _FRAME_NAMES.isdisjoint(code.co_names):
        return True
    for const in code.co_consts:
        if const == "stacklevel" or (isinstance(const, tuple) and "stacklevel" in const):
            return True
    return False


def exported_names(module) -> list[str]:
    """Return the module's public names: ``__all__`` when it is a list of strings, else non-underscore names."""
    namespace = vars(module)
    declared = namespace.get("__all__")
    if isinstance(declared, (list, tuple)) and all(isinstance(n, str) for n in declared):
        return list(declared)
    return [n for n in list(namespace) if isinstance(n, str) and not n.startswith("_")]


def defined_in(obj, package: str) -> bool:
    """Return True when ``obj.__module__`` belongs to ``package``; False if it cannot be read."""
    try:
        return in_package(obj.__module__, package)
    except Exception:
        return False


def child_module_names(module) -> list[str]:
    """Return the public child module names of a package by listing its directories."""
    names = []
    search = getattr(module, "__path__", None)
    if search is None:
        return names
    try:
        directories = list(search)
    except Exception:
        return names
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except (OSError, TypeError):
            continue
        for entry in entries:
            stem = entry.name
            if stem.startswith((".", "_")):
                continue
            if entry.is_dir():
                if os.path.isfile(os.path.join(entry.path, "__init__.py")) and stem.isidentifier():
                    names.append(f"{module.__name__}.{stem}")
            elif stem.endswith(".py") and stem[:-3].isidentifier():
                names.append(f"{module.__name__}.{stem[:-3]}")
    return sorted(set(names))


def imported_submodules(package: str) -> list:
    """Return already-imported public submodules of ``package``."""
    prefix = package + "."
    return [
        mod
        for name, mod in list(sys.modules.items())
        if mod is not None and name.startswith(prefix) and is_public_module(name, package)
    ]
