"""Finding a package's public API without importing anything new.

Public API = names not starting with ``_`` (or listed in ``__all__``) that the
package itself defines, in the package and its public submodules. Submodules
are found by listing the package directories, never by importing them; those
imported later are instrumented by wrapt post-import hooks.
"""

from __future__ import annotations

import os
import sys
from types import FunctionType

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


_CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x80, 0x200


def call_kind(func) -> str:
    """Return coroutine, generator, asyncgen or sync, from the code flags of a plain function.

    A sync function merely *marked* as a coroutine function
    (``inspect.markcoroutinefunction``) is sync here: what it returns is passed
    through untouched.
    """
    flags = getattr(getattr(func, "__code__", None), "co_flags", 0)
    if flags & _CO_COROUTINE:
        return "coroutine"
    if flags & _CO_ASYNC_GENERATOR:
        return "asyncgen"
    if flags & _CO_GENERATOR:
        return "generator"
    return "sync"


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


def child_module_names(module, private: bool = False) -> list[str]:
    """Return the child module names of a package (only public ones unless ``private``) by listing its directories."""
    names = []
    try:
        search = vars(module).get("__path__")  # not getattr: a module __getattr__ may raise anything
    except Exception:
        return names
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
            if stem.startswith(".") or stem.startswith("__") or (stem.startswith("_") and not private):
                continue
            if entry.is_dir():
                if os.path.isfile(os.path.join(entry.path, "__init__.py")) and stem.isidentifier():
                    names.append(f"{module.__name__}.{stem}")
            elif stem.endswith(".py") and stem[:-3].isidentifier():
                names.append(f"{module.__name__}.{stem[:-3]}")
    return sorted(set(names))


def imported_submodules(package: str) -> list:
    """Return the already-imported submodules of ``package``, private ones included."""
    prefix = package + "."
    return [mod for name, mod in list(sys.modules.items()) if mod is not None and name.startswith(prefix)]


# ------------------------------------------------------------ entry points


def _normalize(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).lower().strip("_")


_MAX_DIST_INFOS = 400


def _dist_infos(directory: str):
    try:
        with os.scandir(directory) as entries:
            return [e.path for e in entries if e.name.endswith(".dist-info") and e.is_dir()][:_MAX_DIST_INFOS]
    except (OSError, TypeError):
        return []


def _read(path: str, limit: int = 256 * 1024) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return ""


def dist_info(package: str) -> str | None:
    """Return the ``.dist-info`` directory of the distribution that provides ``package``, or None.

    Found without ``importlib.metadata`` (this can run while the package is
    imported): the one named like the package, else the one whose
    ``top_level.txt`` lists it, in the package's own directory or on ``sys.path``.
    """
    top = package.split(".", 1)[0]
    module = sys.modules.get(top)
    directories = []
    origin = getattr(module, "__file__", None)
    if isinstance(origin, str):
        directories.append(os.path.dirname(os.path.dirname(os.path.abspath(origin))))
    directories += [p for p in sys.path if isinstance(p, str) and p and p not in directories]
    wanted = _normalize(top)
    infos_by_dir = []
    for directory in directories:
        infos = _dist_infos(directory)
        infos_by_dir.append(infos)
        for info in infos:
            dist = os.path.basename(info)[: -len(".dist-info")].rsplit("-", 1)[0]
            if _normalize(dist) == wanted:
                return info
    for infos in infos_by_dir[:1]:  # the package's own site directory only: bounded work
        for info in infos:
            if top in _read(os.path.join(info, "top_level.txt"), 4096).split():
                return info
    return None


def dist_version(package: str) -> str | None:
    """The installed version of the distribution providing ``package``, from its ``.dist-info`` name."""
    info = dist_info(package)
    if info is None:
        return None
    name = os.path.basename(info)[: -len(".dist-info")]
    return name.rsplit("-", 1)[1] if "-" in name else None


def entry_points(package: str) -> frozenset:
    """Return the package distribution's console/GUI script targets as ``"module:attr"`` strings."""
    top = package.split(".", 1)[0]
    found = dist_info(package)
    if found is None:
        return frozenset()
    targets = set()
    section = None
    for raw in _read(os.path.join(found, "entry_points.txt")).splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[] ")
            continue
        if section not in ("console_scripts", "gui_scripts") or "=" not in line:
            continue
        target = line.split("=", 1)[1].split("[", 1)[0].strip()
        if ":" in target:
            targets.add(target.replace(" ", ""))
    return frozenset(t for t in targets if t.split(":", 1)[0].split(".", 1)[0] == top)


# ------------------------------------------------------------ what it is


def is_function(obj) -> bool:
    """A plain Python function (what usagetrace wraps): ``type(obj) is FunctionType``."""
    return type(obj) is FunctionType
