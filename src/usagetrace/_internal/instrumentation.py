"""``instrument()`` and the :class:`Instrumentation` handle it returns.

When consent is off at ``instrument()`` time this module wraps nothing and
imports neither wrapt nor the OpenTelemetry SDK: the package runs exactly as
if usagetrace were absent. Those imports happen in :meth:`Instrumentation._start`.
"""

from __future__ import annotations

import sys
import _thread

from . import consent as _consent
from . import log

_REGISTRY: dict[str, Instrumentation] = {}
_REGISTRY_LOCK = _thread.allocate_lock()

CI_MODES = ("off", "policy")


class Instrumentation:
    """The handle for one instrumented package.

    Read :attr:`consent` to see whether telemetry is on and which source
    decided. :meth:`flush` sends what is pending, :meth:`uninstrument`
    restores every original object.
    """

    def __init__(
        self,
        package: str,
        *,
        version: str | None,
        endpoint: str | None,
        policy: str,
        include,
        exclude,
        ci: str,
        options: dict,
        consent_version: str | None = None,
    ) -> None:
        self.package = package
        self.policy = policy
        self.consent_version = consent_version
        self.endpoint = endpoint
        self.ci = ci
        self.include = tuple(include or ())
        self.exclude = tuple(exclude or ())
        self.options = options
        self._version = version
        self.consent: _consent.ConsentState = _consent.ConsentState(False, _consent.UNSET, "not evaluated")
        self.recorder = None  # created by _start()
        self._patches: list[tuple[object, str, object, object]] = []
        self._wrappers: dict[int, object] = {}
        self._seen_classes: set[int] = set()
        self._scanned: set[str] = set()
        self._hooked: set[str] = set()
        self._lock = _thread.RLock()
        self.instrumented = False
        self._fingerprint = None

    # ------------------------------------------------------------ properties
    @property
    def version(self) -> str:
        """The package version reported as ``service.version``."""
        if self._version is None:
            self._version = _distribution_version(self.package)
        return self._version

    @property
    def enabled(self) -> bool:
        """True while data for this package may be recorded and sent."""
        return self.consent.enabled

    @property
    def wrapped_names(self) -> list[str]:
        """Qualified names of every callable currently wrapped."""
        return sorted(self.recorder.functions) if self.recorder is not None else []

    def __repr__(self) -> str:
        return f"<Instrumentation {self.package!r} consent={self.consent}>"

    # ------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        """Wrap the public API and hook future submodule imports (consent is on)."""
        from . import delivery, discovery
        from .recorder import Recorder

        self.recorder = Recorder(
            self.package,
            span_budget=int(self.options.get("span_budget", 5)),
            error_budget=int(self.options.get("error_budget", 50)),
            max_queue=int(self.options.get("max_queue", 2048)),
        )
        self.recorder.enabled = True
        self.recorder.on_first_sample = lambda: delivery.get().register(self)
        self.instrumented = True
        root = sys.modules.get(self.package)
        if root is not None:
            self._instrument_module(root)
        for module in discovery.imported_submodules(self.package):
            self._instrument_module(module)
        if root is not None:
            self._hook_children(root)
        delivery.get().register(self, start=False)

    def _hook_children(self, module) -> None:
        import wrapt

        from . import discovery

        for name in discovery.child_module_names(module):
            if name in self._hooked or not discovery.is_public_module(name, self.package):
                continue
            self._hooked.add(name)
            try:
                wrapt.register_post_import_hook(self._on_import, name)
            except Exception:
                log.internal_error("instrumentation.hook")

    def _on_import(self, module) -> None:
        try:
            if self.instrumented:
                self._instrument_module(module)
                self._hook_children(module)
        except Exception:
            log.internal_error("instrumentation.on_import")

    # --------------------------------------------------------------- wrapping
    def _wanted(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        if self.include and not any(fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatchcase(name, p) for p in self.exclude)

    def _instrument_module(self, module) -> None:
        import inspect

        from . import discovery

        with self._lock:
            name = getattr(module, "__name__", None)
            if not isinstance(name, str) or name in self._scanned:
                return
            self._scanned.add(name)
            namespace = vars(module)
            for attr in discovery.exported_names(module):
                obj = namespace.get(attr)
                try:
                    if inspect.isfunction(obj) or _is_our_wrapper(obj):
                        self._wrap_function(module, attr, obj)
                    elif isinstance(obj, type):
                        self._wrap_class(obj, f"{name}.{attr}")
                except Exception:
                    log.debug("not instrumenting %s.%s", name, attr, exc_info=True)

    def _wrap_function(self, module, attr: str, obj) -> None:
        from . import discovery, wrappers

        if _is_our_wrapper(obj):
            return  # already wrapped, by this package (another path) or another one
        if not discovery.defined_in(obj, self.package):
            return
        wrapper = self._wrappers.get(id(obj))
        if wrapper is None:
            qualname = f"{module.__name__}.{attr}"
            if not self._wanted(qualname) or discovery.inspects_caller(obj):
                return
            kind = discovery.call_kind(obj)
            stats = self.recorder.function(qualname, module.__name__, kind if kind != "sync" else "function")
            wrapper = wrappers.make(self.recorder, stats, obj, kind)
            self._wrappers[id(obj)] = wrapper
            # Pickle and internal references resolve through the defining
            # module: put the wrapper there too, when it holds the same object.
            home = sys.modules.get(obj.__module__)
            home_name = getattr(obj, "__name__", None)
            if home is not None and home is not module and isinstance(home_name, str):
                if vars(home).get(home_name) is obj:
                    self._patch(home, home_name, obj, wrapper)
        self._patch(module, attr, obj, wrapper)

    def _wrap_class(self, cls: type, public_name: str) -> None:
        import enum
        import inspect

        from . import discovery, wrappers

        if id(cls) in self._seen_classes or not discovery.defined_in(cls, self.package):
            return
        if issubclass(cls, BaseException):
            return
        self._seen_classes.add(id(cls))
        module_name = public_name.rsplit(".", 1)[0]
        is_enum = isinstance(cls, enum.EnumMeta)
        for attr, raw in list(vars(cls).items()):
            if attr == "__init__":
                if is_enum:
                    continue
                struct_kind, qualname = "constructor", public_name
            elif attr.startswith("_"):
                continue
            else:
                struct_kind, qualname = "method", f"{public_name}.{attr}"
            if isinstance(raw, staticmethod):
                func, struct_kind = raw.__func__, "staticmethod"
            elif isinstance(raw, classmethod):
                func, struct_kind = raw.__func__, "classmethod"
            else:
                func = raw
            if not inspect.isfunction(func) or _is_our_wrapper(raw):
                continue
            if not self._wanted(qualname) or discovery.inspects_caller(func):
                continue
            kind = discovery.call_kind(func)
            stats = self.recorder.function(qualname, module_name, kind if kind != "sync" else struct_kind)
            self._patch(cls, attr, raw, wrappers.make(self.recorder, stats, raw, kind))

    def _patch(self, owner, attr: str, original, wrapper) -> None:
        setattr(owner, attr, wrapper)
        self._patches.append((owner, attr, original, wrapper))

    # ------------------------------------------------------------ public API
    def uninstrument(self) -> None:
        """Restore every original object and stop recording. Idempotent; never raises."""
        try:
            with self._lock:
                self.instrumented = False
                if self.recorder is not None:
                    self.recorder.enabled = False
                for owner, attr, original, wrapper in reversed(self._patches):
                    try:
                        current = owner.__dict__.get(attr) if isinstance(owner, type) else vars(owner).get(attr)
                        if current is wrapper:  # never clobber someone else's later patch
                            setattr(owner, attr, original)
                    except Exception:
                        log.internal_error("instrumentation.restore")
                self._patches.clear()
                self._wrappers.clear()
                self._seen_classes.clear()
                self._scanned.clear()
            with _REGISTRY_LOCK:
                if _REGISTRY.get(self.package) is self:
                    del _REGISTRY[self.package]
        except Exception:
            log.internal_error("instrumentation.uninstrument")

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything recorded so far; return True when it was delivered within ``timeout`` seconds."""
        if self.recorder is None:
            return True
        try:
            from . import delivery

            return delivery.get().flush(timeout, only=self)
        except Exception:
            log.internal_error("instrumentation.flush")
            return False

    def shutdown(self, timeout: float = 1.0) -> bool:
        """Flush within ``timeout`` seconds, then stop recording and restore the originals."""
        ok = self.flush(timeout)
        self.uninstrument()
        try:
            from . import delivery

            delivery.get().unregister(self)
        except Exception:
            log.internal_error("instrumentation.shutdown")
        return ok

    def refresh_consent(self) -> bool:
        """Re-evaluate consent if any source changed; return the current decision."""
        try:
            fingerprint = _consent.fingerprint(self.package)
            if fingerprint != self._fingerprint:
                self._fingerprint = fingerprint
                self.consent = _consent.resolve(
                    self.package, self.policy, ci=self.ci, notice_shown=True, consent_version=self.consent_version
                )
                if self.recorder is not None:
                    self.recorder.enabled = self.consent.enabled and self.instrumented
        except Exception:
            log.internal_error("instrumentation.refresh_consent")
        return self.consent.enabled


def _is_our_wrapper(obj) -> bool:
    module = sys.modules.get("usagetrace._internal.wrappers")
    return module is not None and isinstance(obj, module.UsageWrapper)


def _distribution_version(package: str) -> str:
    """Return the installed version of the distribution providing ``package``."""
    module = sys.modules.get(package)
    try:
        version = getattr(module, "__version__", None)
    except Exception:  # a module __getattr__ that raises something other than AttributeError
        version = None
    if isinstance(version, str) and version:
        return version[:64]
    try:
        from importlib import metadata

        for dist in metadata.packages_distributions().get(package, ()):
            return metadata.version(dist)[:64]
        return metadata.version(package)[:64]
    except Exception:
        return "unknown"


def _caller_package(depth: int) -> str | None:
    try:
        frame = sys._getframe(depth + 1)
        name = frame.f_globals.get("__package__") or frame.f_globals.get("__name__")
        return name.split(".", 1)[0] if isinstance(name, str) and name != "__main__" else None
    except Exception:
        return None


def instrument(
    package=None,
    *,
    endpoint: str | None = None,
    consent: str = "opt-in",
    version: str | None = None,
    include=None,
    exclude=None,
    ci: str = "off",
    consent_version=None,
    **options,
) -> Instrumentation:
    """Record usage of a package's public API, if the person running it agrees.

    Args:
        package: The package's import name or module; ``None`` means the caller's package.
        endpoint: The maintainer's OTLP/HTTP collector base URL. The standard
            ``OTEL_EXPORTER_OTLP_*`` variables take precedence. With no endpoint
            at all, data goes to a local OTLP JSON-lines file (development mode).
        consent: ``"opt-in"`` (nothing is sent until the person agrees) or
            ``"opt-out"`` (sent unless they decline, after a one-time notice).
        version: Reported as ``service.version``; defaults to the installed version.
        include: Glob patterns of qualified names to wrap (default: all public API).
        exclude: Glob patterns of qualified names never to wrap.
        ci: ``"off"`` (default: no data from CI unless explicitly granted) or
            ``"policy"`` (CI follows the same policy as everywhere else).
        consent_version: Declare it (an int or a short string, e.g. ``2``) and
            change it whenever what the package collects changes: opt-out
            packages then show their notice again and send nothing until it
            was shown; a stored grant for another version counts as not given
            (``ask_consent`` asks again). Denials always stay.
        **options: Advanced settings: ``span_budget`` (spans per function per
            minute, default 5), ``error_budget`` (default 50), ``max_queue``
            (default 2048), ``dev_file`` (development-mode output path).

    Returns:
        The :class:`Instrumentation` handle. Calling ``instrument`` again for the
        same package warns and returns the same handle. Never raises for a
        problem of usagetrace's own; a bad argument warns and falls back to the
        safe choice (nothing sent).
    """
    import warnings

    if package is None:
        name = _caller_package(1)
    elif isinstance(package, str):
        name = package
    else:
        name = getattr(package, "__name__", None)
    if not isinstance(name, str) or not name or name.startswith(".") or name == "__main__":
        warnings.warn(
            f"usagetrace.instrument(): cannot tell which package to instrument from {package!r}; "
            "pass the package name, e.g. usagetrace.instrument(__name__). Telemetry stays off.",
            RuntimeWarning,
            stacklevel=2,
        )
        name = str(package) if package is not None else "unknown"
        return Instrumentation(
            name, version=version, endpoint=endpoint, policy=_consent.OPT_IN, include=include,
            exclude=exclude, ci="off", options=options,
        )
    if consent not in _consent.POLICIES:
        warnings.warn(
            f"usagetrace.instrument({name!r}): consent={consent!r} is not one of "
            f"{', '.join(map(repr, _consent.POLICIES))}; using 'opt-in' (nothing is sent without consent).",
            RuntimeWarning,
            stacklevel=2,
        )
        consent = _consent.OPT_IN
    if ci not in CI_MODES:
        warnings.warn(
            f"usagetrace.instrument({name!r}): ci={ci!r} is not one of {CI_MODES!r}; using 'off'.",
            RuntimeWarning,
            stacklevel=2,
        )
        ci = "off"
    try:
        consent_version = _consent.normalize_version(consent_version)
    except ValueError as exc:
        warnings.warn(
            f"usagetrace.instrument({name!r}): {exc}; using 'opt-in' (nothing is sent without consent).",
            RuntimeWarning,
            stacklevel=2,
        )
        consent, consent_version = _consent.OPT_IN, "invalid"
    with _REGISTRY_LOCK:
        existing = _REGISTRY.get(name)
        if existing is not None:
            warnings.warn(
                f"usagetrace.instrument({name!r}) was already called; returning the existing handle.",
                RuntimeWarning,
                stacklevel=2,
            )
            return existing
        handle = Instrumentation(
            name, version=version, endpoint=endpoint, policy=consent, include=include,
            exclude=exclude, ci=ci, options=options, consent_version=consent_version,
        )
        _REGISTRY[name] = handle
    try:
        # No fingerprint here: only the background refresher uses it, and it treats
        # "none yet" as changed, so the project-directory walk is not done twice at import.
        handle.consent = _consent.resolve(name, consent, ci=ci, consent_version=consent_version)
        if consent_version is not None and not handle.consent.source.startswith(("env:", "pytest")):
            _consent.remember_version(name.split(".", 1)[0], consent_version)
        if handle.consent.enabled or options.get("_force"):
            handle._start()
    except Exception:
        log.internal_error("instrument")
        try:
            handle.uninstrument()
        except Exception:
            pass
    return handle


def registered() -> dict[str, Instrumentation]:
    """Return a copy of the registry of instrumented packages in this process."""
    with _REGISTRY_LOCK:
        return dict(_REGISTRY)


def get(package: str) -> Instrumentation | None:
    """Return the handle for a package instrumented in this process, if any."""
    return _REGISTRY.get(package)

