"""``instrument()`` and the :class:`Instrumentation` handle it returns.

When consent is off at ``instrument()`` time this module wraps nothing and
imports neither wrapt nor the OpenTelemetry SDK: the package runs exactly as
if usagetrace were absent. Those imports happen in :meth:`Instrumentation._start`.
"""

import sys
import _thread
from types import FunctionType, MappingProxyType, MethodType, ModuleType

TYPE_CHECKING = False  # typing costs ~10 ms to import: not on the import path
if TYPE_CHECKING:
    from collections.abc import Mapping

from . import consent as _consent
from . import log

#: An ``include`` pattern no qualified name can match: a handle that wraps nothing
#: (integrations create one for an app or a CLI that is not an instrumented library).
NOTHING = "\x00usagetrace:nothing"
#: Set by CLI integrations on the ``main`` functions they decorate: never wrapped.
CLI_MARK = "__usagetrace_cli__"

_REGISTRY: "dict[str, Instrumentation]" = {}
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
        version: "str | None",
        endpoint: "str | None",
        policy: str,
        include,
        exclude,
        ci: str,
        options: dict,
        consent_version: "str | None" = None,
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
        self._wrappers: dict[int, object] = {}  # id(original function) -> its wrapper
        self._stats: dict[int, object] = {}  # id(original function) -> its FunctionStats
        self._skipped: dict[str, str] = {}
        #: id(code) -> (code, stats, None) of every callable counted through sys.monitoring (monitor.py);
        #: (id(code), monitor.closure_ident()) -> (code, stats, closure key): one of several on shared code
        self._monitored: dict = {}
        self._monitor_why: dict[str, str] = {}  # qualified name -> why it is monitored, not wrapped
        self._ambiguous: set = set()  # keys of _monitored that two functions share: counted for neither
        self._seen_classes: set[int] = set()
        self._scanned: dict[str, object] = {}
        self._hooked: set[str] = set()
        self._analysis = None
        self._entry_points: frozenset = frozenset()
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
        """Qualified names of every callable currently wrapped (and counted)."""
        if self.recorder is None:
            return []
        return sorted(n for n, stats in self.recorder.functions.items()
                      if not stats.exempt and n not in self._monitor_why)

    @property
    def monitored_names(self) -> list[str]:
        """Qualified names of every callable counted without a wrapper (sys.monitoring, Python 3.12+).

        These are the callables a wrapper would change (see :attr:`monitored`
        for why each one): they stay exactly as they are, and their code
        objects report calls to usagetrace (``usagetrace._internal.monitor``).
        """
        if self.recorder is None:
            return []
        functions = self.recorder.functions
        return sorted(n for n in self._monitor_why if n in functions and not functions[n].exempt)

    @property
    def monitored(self) -> "Mapping[str, str]":
        """Callables counted without a wrapper, each with the reason a wrapper was not used."""
        names = set(self.monitored_names)
        return MappingProxyType({n: why for n, why in self._monitor_why.items() if n in names})

    @property
    def callable_counts(self) -> dict[str, int]:
        """How many public callables are wrapped, monitored and skipped: coverage is
        ``(wrapped + monitored) / (wrapped + monitored + skipped)``."""
        return {"wrapped": len(self.wrapped_names), "monitored": len(self.monitored_names),
                "skipped": len(self._skipped)}

    @property
    def skipped(self) -> "Mapping[str, str]":
        """Public callables left unwrapped (or not counted), each with the reason.

        Behaviour first, counts second: a callable is not wrapped when a wrapper
        could change what the host observes (see ``usagetrace._internal.hazards``),
        when it is the package's own console-script entry point or a command
        function of a CLI integration (the integration records the command; the
        API calls it makes are counted), when it is not a plain Python function,
        or when ``include``/``exclude`` leave it out.
        """
        return MappingProxyType(self._skipped)

    def __repr__(self) -> str:
        return f"<Instrumentation {self.package!r} consent={self.consent}>"

    # ------------------------------------------------------------- lifecycle
    def _start(self) -> None:
        """Wrap the public API and hook future submodule imports (consent is on)."""
        from . import delivery, discovery, hazards
        from .recorder import Recorder

        # What consent reads files with, bound here on the host's thread: a grant by the environment
        # never needed it, and the delivery thread's first consent refresh (before its first export
        # binds everything, delivery._Deps) would otherwise import it in the background.
        _consent._load()
        self.recorder = Recorder(
            self.package,
            span_budget=int(self.options.get("span_budget", 5)),
            error_budget=int(self.options.get("error_budget", 50)),
            max_queue=int(self.options.get("max_queue", 2048)),
        )
        self.recorder.enabled = True
        self.recorder.on_first_sample = lambda: delivery.get().register(self)
        self.recorder.on_enabled = self._monitoring_follows
        self.instrumented = True
        self._analysis = hazards.Analysis(self.package)
        self._entry_points = discovery.entry_points(self.package)
        root = sys.modules.get(self.package)
        if root is None:
            # instrument("pkg") before pkg is imported: wrap it when it is (a wrapt post-import hook).
            import wrapt

            wrapt.register_post_import_hook(self._on_import_root, self.package)
        elif not _after_import(root, self._on_import_root):
            self._instrument_modules([root] + discovery.imported_submodules(self.package))
        delivery.get().register(self, start=False)

    def _on_import_root(self, module) -> None:
        from . import discovery

        try:
            if self.instrumented:
                self._instrument_modules([module] + discovery.imported_submodules(self.package))
        except Exception:
            log.internal_error("instrumentation.on_import_root")

    def _hook_children(self, module) -> None:
        import wrapt

        from . import discovery

        # Private modules too: their code decides which public functions are safe to wrap.
        for name in discovery.child_module_names(module, private=True):
            if name in self._hooked or name in sys.modules:
                continue
            self._hooked.add(name)
            try:
                wrapt.register_post_import_hook(self._on_import, name)
            except Exception:
                log.internal_error("instrumentation.hook")

    def _on_import(self, module) -> None:
        try:
            if self.instrumented:
                self._instrument_modules([module])
        except Exception:
            log.internal_error("instrumentation.on_import")

    # --------------------------------------------------------------- wrapping
    def _wanted(self, name: str) -> bool:
        if not self.include and not self.exclude:
            return True
        from fnmatch import fnmatchcase

        if self.include and not any(fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatchcase(name, p) for p in self.exclude)

    def _skip(self, qualname: str, reason: str) -> None:
        self._skipped.setdefault(qualname, reason)

    def _instrument_modules(self, modules) -> None:
        """Index new package modules (public and private), then wrap what is safe in the public ones."""
        from . import discovery

        with self._lock:
            new = []
            for module in modules:
                name = getattr(module, "__name__", None)
                if isinstance(name, str) and name not in self._scanned and discovery.in_package(name, self.package):
                    self._scanned[name] = module
                    new.append(module)
            if not new:
                return
            for module in new:
                try:
                    self._analysis.add_module(module)
                except Exception:
                    log.internal_error("instrumentation.analyse")
            self._recheck_wrapped(new)
            slots = self._slot_index()
            for module in new:
                try:
                    if discovery.is_public_module(module.__name__, self.package):
                        self._instrument_module(module, slots)
                    self._hook_children(module)
                except Exception:
                    log.internal_error("instrumentation.module")

    def _slot_index(self) -> dict:
        """Map id(function or class-level descriptor) -> the namespace slots of the package that hold it.

        Module and class namespaces of the package are the only places usagetrace
        rewrites. Only ids are kept, never the objects: reference counts are
        measured afterwards, and a reference held here would be counted.
        """
        from . import discovery

        slots: dict[int, list] = {}
        classes: dict[int, type] = {}
        for module in list(self._scanned.values()):
            namespace = vars(module)
            for key in list(namespace):
                value = namespace.get(key)
                kind = type(value)
                if kind is FunctionType:
                    slots.setdefault(id(value), []).append((namespace, key))
                elif issubclass(kind, type) and discovery.defined_in(value, self.package):
                    classes[id(value)] = value
                value = None
        seen: set = set()
        pending = list(classes.values())
        classes.clear()
        while pending:
            cls = pending.pop()
            if id(cls) in seen:
                continue
            seen.add(id(cls))
            namespace = cls.__dict__
            for key in list(namespace):
                value = namespace.get(key)
                kind = type(value)
                if kind is FunctionType:
                    slots.setdefault(id(value), []).append((cls, key))
                elif kind is staticmethod or kind is classmethod:
                    slots.setdefault(id(value), []).append((cls, key))
                    slots.setdefault(id(value.__func__), []).append((None, key))  # held by the descriptor
                elif issubclass(kind, type) and value is not cls and discovery.defined_in(value, self.package):
                    pending.append(value)
                value = None
        return slots

    def _instrument_module(self, module, slots: dict) -> None:
        from . import discovery

        name = module.__name__
        namespace = vars(module)
        instances = []
        for attr in discovery.exported_names(module):
            try:
                obj = namespace.get(attr)
                if obj is None:
                    continue
                qualname = f"{name}.{attr}"
                if _is_our_wrapper(obj):
                    continue  # ours already (this package under another name, or another package)
                if discovery.is_function(obj):
                    obj = None  # measured by reference count next: hold no reference
                    self._consider(namespace, attr, qualname, name, "function", slots)
                elif isinstance(obj, type):
                    self._wrap_class(obj, qualname, slots)
                elif not isinstance(obj, ModuleType):
                    instances.append(attr)  # after the classes: a public class's methods keep its name
            except Exception:
                log.debug("not instrumenting %s.%s", name, attr, exc_info=True)
        for attr in instances:
            try:
                obj = namespace.get(attr)
                if obj is not None:
                    self._instance(obj, f"{name}.{attr}", name, slots)
            except Exception:
                log.debug("not instrumenting %s.%s", name, attr, exc_info=True)
            obj = None

    def _consider(self, owner, key: str, qualname: str, module_name: str, struct_kind: str, slots: dict,
                  hazard: "str | None" = None, self_class: "type | None" = None) -> None:
        """Wrap the function at ``owner[key]`` (a module dict or a class) unless a hazard says not to.

        For a static or class method the function inside the descriptor is
        wrapped and a new descriptor of the same type replaces the old one.
        ``self_class``: the public class (or the class of the public instance) the method is reached
        through, for telling shared code apart by its first argument's class when it is monitored.
        """
        from . import discovery, hazards, wrappers

        namespace = owner if isinstance(owner, dict) else owner.__dict__
        descriptor = struct_kind in ("staticmethod", "classmethod")
        target = namespace[key].__func__ if descriptor else namespace[key]
        if wrappers.is_trampoline(target):
            return  # ours already
        target_id = id(target)
        if target_id in self._wrappers:
            target = None
            self._patch_slots(target_id, slots)  # wrapped already: make every reference consistent
            return
        if not discovery.defined_in(target, self.package):
            return  # re-exported from elsewhere: not ours to count
        integration = getattr(target, CLI_MARK, None)
        if isinstance(integration, str):
            self._skip(qualname, f"CLI main function decorated by {integration}: the integration records the "
                                 "command, and the API calls it makes are counted as usages")
            return
        entry = f"{target.__module__}:{target.__qualname__}"
        if f"{module_name}:{key}" in self._entry_points or entry in self._entry_points:
            self._skip(qualname, "console-script entry point of the package: the CLI integration records the "
                                 "command, and the API calls it makes are counted as usages")
            return
        if not self._wanted(qualname):
            if self.include != (NOTHING,):
                self._skip(qualname, "left out by instrument(include=..., exclude=...)")
            return
        reason = hazard or self._analysis.frame_hazard(target) or self._analysis.recursion_hazard(target)
        kind = discovery.call_kind(target)
        stats_kind = kind if kind != "sync" else struct_kind
        bound = struct_kind in ("method", "constructor", "classmethod")
        target = None  # from here on, hold no reference until the count is taken
        if reason is None:
            if descriptor:
                outer = hazards.external_references(namespace, key, len(slots.get(id(namespace[key]), ())))
                inner = hazards.external_references(namespace, key, len(slots.get(target_id, ())), attr="__func__")
                extra = None if outer is None or inner is None else outer + inner
            else:
                extra = hazards.external_references(namespace, key, len(slots.get(target_id, ())))
            if extra is None:
                reason = hazards.REASON_NO_REFCOUNT
            elif extra > 0:
                reason = hazards.REASON_CAPTURED.format(n=extra)
        if reason is not None:
            # A wrapper would change what the host observes: count it without one, where possible.
            by_class = None
            if self_class is not None and struct_kind in ("method", "classmethod"):
                by_class = (self_class, struct_kind == "classmethod")
            self._monitor(namespace[key].__func__ if descriptor else namespace[key], qualname, module_name,
                          stats_kind, bound, reason, by_class=by_class)
            return
        old = namespace[key]
        target = old.__func__ if descriptor else old
        known = qualname in self.recorder.functions
        stats = self.recorder.function(qualname, module_name, stats_kind)
        stats.signature_from(target, bound=bound)
        try:
            wrapper = wrappers.make(self.recorder, stats, target, kind)
        except Exception:
            if not known:  # never list as wrapped what is not
                self.recorder.functions.pop(qualname, None)
            raise
        self._wrappers[target_id] = wrapper
        self._stats[target_id] = stats
        if descriptor:
            replacement = wrappers.rewrap_descriptor(old, wrapper)
            for slot_owner, slot_key in slots.get(id(old), ()):
                if slot_owner.__dict__.get(slot_key) is old:
                    self._set(slot_owner, slot_key, old, replacement)
        self._patch_slots(target_id, slots)

    # ------------------------------------------------------------- monitoring
    def _monitor(self, func, qualname: str, module_name: str, stats_kind: str, bound: bool, reason: str,
                 codes=None, by_class=None) -> bool:
        """Count ``func`` (or the package functions in ``codes``) through sys.monitoring, or list why not.

        ``reason`` says why a wrapper is not used. ``by_class``: ``(class, is a class method)`` for a
        method reached through a public class or instance: shared code without a telling closure is told
        apart by that class (:func:`.monitor.class_key`). Never holds ``func`` beyond the call.
        """
        from . import monitor

        if not monitor.AVAILABLE:
            self._skip(qualname, reason + monitor.REASON_OLD_PYTHON)
            return False
        closure = None
        if codes is None:
            if not monitor.is_own(func, self.package):
                targets = _dispatch_targets(func, self.package)
                if targets:
                    codes = [t.__code__ for t in targets]
                else:
                    # Code shared with other functions: told apart by a closure cell, where it can be.
                    closure = monitor.closure_key(func, self.package)
                    if closure is None and by_class is not None:
                        # No cell tells it apart (aiostream's operators): the class its first argument
                        # must be an instance of (or be) does, one class per generated operator.
                        closure = monitor.class_key(func, self.package, *by_class)
                    if closure is None:
                        old = not monitor.CLOSURES
                        self._skip(qualname, reason + (
                            monitor.REASON_CLOSURE_OLD if old and monitor.closure_would_do(func, self.package)
                            else monitor.REASON_CLASS_OLD if old and by_class is not None
                            and monitor.class_would_do(func, self.package, *by_class)
                            else monitor.REASON_SHARED))
                        return False
                    codes = [func.__code__]
            else:
                codes = [func.__code__]
        if closure is not None:
            key = (id(codes[0]), monitor.closure_ident(closure))
            other = self._monitored.get(key)
            if other is not None and other[2][4] == closure[4]:
                return True  # the same function under another name: counted under the first
            if other is not None or key in self._ambiguous:
                # Another function on the same code with the same closure values: no call can be told apart
                # from the other's, so neither is counted.
                why = (f"; its code and closure values are the same as another public function's "
                       f"({other[1].name if other else 'listed as skipped'}): no call can be told apart")
                self._ambiguous.add(key)
                if other is not None:
                    monitor.forget(other[0], other[2])
                    del self._monitored[key]
                    self._skipped[other[1].name] = self._monitor_why.pop(other[1].name, reason.split("; ")[0]) + why
                self._skip(qualname, reason + why)
                return False
        else:
            codes = [c for c in codes if id(c) not in self._monitored]
            if not codes:
                return True  # counted already, under the name it was found by first
        known = qualname in self.recorder.functions
        stats = self.recorder.function(qualname, module_name, stats_kind)
        if func is not None and len(codes) == 1 and getattr(func, "__code__", None) is codes[0]:
            stats.signature_from(func, bound=bound)
        started = []
        why = None
        for code in codes:
            why = monitor.start(self.recorder, stats, code, closure) if self.recorder.enabled else None
            if why is not None:
                break
            started.append(code)
            if closure is None:
                self._monitored[id(code)] = (code, stats, None)
            else:
                self._monitored[(id(code), monitor.closure_ident(closure))] = (code, stats, closure)
        if why is not None:
            monitor.stop(started)  # plain codes only: with a closure there is one code, and it failed
            for code in started:
                self._monitored.pop(id(code), None)
            if not known:
                self.recorder.functions.pop(qualname, None)
            self._skip(qualname, reason + why)
            return False
        self._skipped.pop(qualname, None)
        self._monitor_why.setdefault(qualname, reason.split("; ")[0])
        return True

    def _monitoring_follows(self, enabled: bool) -> None:
        """Consent on: events on for every monitored code object; off (withdrawn, uninstrumented): all off."""
        if not self._monitored:
            return
        from . import monitor

        codes = [entry[0] for entry in self._monitored.values()]
        if enabled and self.instrumented:
            for code, stats, closure in list(self._monitored.values()):
                why = monitor.start(self.recorder, stats, code, closure)
                if why is not None:
                    self._skipped[stats.name] = self._monitor_why.pop(stats.name, "") + why
        else:
            monitor.stop(codes)

    def _instance(self, obj, qualname: str, module_name: str, slots: dict) -> None:
        """A public module-level object that is not a class or a function: its package methods are the API.

        Methods called through an instance of a package class (one defined in a
        private module too) count as ``module.instance.method``; calling a
        callable instance counts as ``module.instance`` (its ``__call__``). A
        dispatch object of another library counts the package's implementations
        registered with it. Wrapped where a wrapper changes nothing (the class's
        attribute), monitored otherwise.
        """
        import enum

        from . import discovery

        cls = type(obj)  # never isinstance() or getattr() on obj: a proxy would run code (or import) for them
        if issubclass(cls, (enum.Enum, BaseException)):
            return
        if cls is MethodType:  # `info = _logger.info`: the method object holds the function: monitoring only
            func = obj.__func__
            if type(func) is FunctionType and discovery.defined_in(func, self.package):
                self._monitor(func, qualname, module_name, "method", True,
                              "a bound method exported as a module attribute: the method object holds its "
                              "function, so a wrapper would never be called")
            return
        if not discovery.defined_in(cls, self.package):
            targets = _dispatch_targets(obj, self.package)
            if targets:
                self._monitor(None, qualname, module_name, "function", False,
                              f"dispatch object of {cls.__module__}.{cls.__qualname__}: the package's "
                              "implementations registered with it are counted",
                              codes=[t.__code__ for t in targets])
            elif callable(obj) and discovery.defined_in(obj, self.package):
                self._skip(qualname, f"not a plain Python function ({cls.__name__}) and no package code "
                                     "found behind it: calls to it are not counted")
            return
        own = _instance_dict(obj)
        seen: set = set()
        for klass in cls.__mro__:
            if klass is object or not discovery.defined_in(klass, self.package):
                continue
            public_class = id(klass) in self._seen_classes  # its methods are counted under the class's name
            for attr in list(klass.__dict__):
                if attr in seen or attr in own or (public_class and attr != "__call__"):
                    continue
                seen.add(attr)
                if attr == "__call__":
                    name = qualname
                elif attr.startswith("_"):
                    continue
                else:
                    name = f"{qualname}.{attr}"
                raw = klass.__dict__.get(attr)
                if isinstance(raw, (staticmethod, classmethod)):
                    struct_kind, plain = type(raw).__name__, discovery.is_function(raw.__func__)
                else:
                    struct_kind, plain = "method", discovery.is_function(raw)
                hazard = None
                if plain and attr == "__call__":
                    hazard = self._own_reach(raw)
                raw = None
                if plain:
                    try:
                        self._consider(klass, attr, name, module_name, struct_kind, slots, hazard, cls)
                    except Exception:
                        log.debug("not instrumenting %s", name, exc_info=True)

    def _own_reach(self, func) -> "str | None":
        """Frame reach of a dunder's own code. The analysis treats dunders as run implicitly, one call below
        whoever triggers them; wrapping ``__call__`` itself puts the wrapper frame right above it."""
        from . import hazards

        self._analysis.frame_hazard(func)  # indexes it
        node = self._analysis.nodes.get(id(getattr(func, "__code__", None)))
        if node is None or node.reach <= 0:
            return None
        return hazards.REASON_FRAMES_SELF.format(reach="many" if node.reach >= hazards.INF else node.reach,
                                                 how=node.how)

    def _patch_slots(self, target_id: int, slots: dict) -> None:
        """Put the wrapper in every namespace slot of the package that holds the original."""
        from . import wrappers

        wrapper = self._wrappers[target_id]
        original = wrappers.original_of(wrapper)
        for owner, key in slots.get(target_id, ()):
            if owner is None:
                continue  # inside a descriptor: the descriptor was replaced
            current = owner.get(key) if isinstance(owner, dict) else owner.__dict__.get(key)
            if current is original:
                self._set(owner, key, original, wrapper)

    def _set(self, owner, key: str, original, replacement) -> None:
        if isinstance(owner, dict):
            owner[key] = replacement
        else:
            setattr(owner, key, replacement)
        self._patches.append((owner, key, original, replacement))

    def _wrap_class(self, cls: type, public_name: str, slots: dict) -> None:
        import enum

        from . import discovery

        if id(cls) in self._seen_classes or not discovery.defined_in(cls, self.package):
            return
        if issubclass(cls, BaseException):
            return
        self._seen_classes.add(id(cls))
        module_name = public_name.rsplit(".", 1)[0]
        is_enum = isinstance(cls, enum.EnumMeta)
        namespace = cls.__dict__
        for attr in list(namespace):
            if attr == "__init__":
                if is_enum:
                    continue
                struct_kind, qualname = "constructor", public_name
            elif attr.startswith("_"):
                continue
            else:
                struct_kind, qualname = "method", f"{public_name}.{attr}"
            raw = namespace.get(attr)
            if isinstance(raw, staticmethod):
                struct_kind, plain = "staticmethod", discovery.is_function(raw.__func__)
            elif isinstance(raw, classmethod):
                struct_kind, plain = "classmethod", discovery.is_function(raw.__func__)
            else:
                plain = discovery.is_function(raw)
            targets = None
            if not plain and raw is not None and not issubclass(type(raw), (property, type)):
                # A dispatch method (functools.singledispatchmethod): the implementations registered with it
                # are the package's, counted without a wrapper.
                targets = _dispatch_targets(_instance_dict(raw).get("dispatcher", raw), self.package)
            if targets:
                self._monitor(None, qualname, module_name, "method", True,
                              f"dispatch method ({type(raw).__name__}): its registered implementations are counted",
                              codes=[t.__code__ for t in targets])
            raw = targets = None
            if plain:
                try:
                    self._consider(cls, attr, qualname, module_name, struct_kind, slots, self_class=cls)
                except Exception:
                    log.debug("not instrumenting %s", qualname, exc_info=True)

    def _recheck_wrapped(self, new_modules) -> None:
        """Code in newly imported modules can make an already-wrapped function hazardous: stop counting it
        through its wrapper.

        Its wrapper stays in place (references to it may have been handed out,
        and replacing it would change identity) but calls pass straight through.
        On 3.12+ the function is counted through sys.monitoring from then on
        (the wrapper's frames are the only ones between the caller and it, and
        they pass through: the function's code sees one usage per call, the
        same one the wrapper would have counted); else it stays uncounted.
        """
        from . import wrappers

        names = ", ".join(m.__name__ for m in new_modules)
        for target_id, wrapper in list(self._wrappers.items()):
            stats = self._stats.get(target_id)
            if stats is None or stats.exempt or stats.name in self._monitor_why:
                continue
            original = wrappers.original_of(wrapper)
            reason = self._analysis.frame_hazard(original)
            if reason is None:
                continue
            reason = f"{reason} (found when {names} was imported, after it was wrapped: calls pass straight through its wrapper"
            if self._monitor_late(wrapper, original, stats, reason):
                continue
            self.exempt(wrapper, reason + ")")

    def _monitor_late(self, wrapper, original, stats, reason: str) -> bool:
        """Count a wrapped function found hazardous through monitoring, its wrapper passing calls through."""
        from . import monitor, wrappers

        code = getattr(original, "__code__", None)
        if not monitor.AVAILABLE or code is None or id(code) in self._monitored \
                or not monitor.is_own(original, self.package):
            return False  # the reason exempt() records says the wrapper passes through uncounted
        if not wrappers.pass_through(wrapper, stats):
            return False
        # From here the wrapper never counts (its idle copy is exempt); stats is counted by events alone.
        if self._monitor(None, stats.name, stats.module, stats.kind, False, reason + ")", codes=[code]):
            self._monitor_why[stats.name] = reason + ", and they are counted through sys.monitoring)"
            return True
        stats.exempt = True  # not monitored either: uncounted, as the skip reason _monitor() recorded says
        return True

    def command_function(self, func, integration: str) -> None:
        """A CLI command function registered with an integration: not a usage itself (its calls are).

        Follows ``__wrapped__`` (typer wraps command functions). Never raises.
        """
        try:
            reason = (f"command function of the package's CLI ({integration} integration): the integration "
                      "records the command, and the API calls it makes are counted as usages")
            for _ in range(8):
                if func is None:
                    return
                if self.exempt(func, reason):
                    return
                if type(func) is FunctionType and isinstance(getattr(func, "__module__", None), str) \
                        and (func.__module__ + ".").startswith(self.package + "."):
                    self._skipped[f"{func.__module__}.{func.__qualname__}"] = reason
                func = getattr(func, "__wrapped__", None)
        except Exception:
            log.internal_error("instrumentation.command_function")

    def launcher(self, stats) -> None:
        """``stats``' function was seen running a CLI command: it is a launcher, not a usage."""
        if not stats.launcher:
            stats.launcher = True
            self._skipped[stats.name] = (
                "launches the package's CLI (seen at run time): the CLI integration records the command, and "
                "the API calls it makes are counted as usages")

    def exempt(self, func, reason: str) -> bool:
        """Stop counting a wrapped callable (calls pass straight through); record why. Never raises."""
        try:
            # Nothing is wrapped until the wrappers module is imported: never import it (and wrapt) to find out.
            wrappers = sys.modules.get(__package__ + ".wrappers")
            if wrappers is None or not self._stats:
                return False
            target = getattr(func, "__func__", func)  # a bound method of a wrapped method
            original = wrappers.original_of(target)
            if original is None:
                code = getattr(target, "__code__", None)
                monitored = self._monitored.get(id(code))
                if monitored is None and code is not None:
                    from . import monitor

                    closure = monitor.closure_key(target, self.package)
                    if closure is not None:
                        monitored = self._monitored.get((id(code), monitor.closure_ident(closure)))
                if monitored is None:
                    return False
                stats = monitored[1]  # counted without a wrapper: its events now pass it by
                stats.exempt = True
                self._skipped[stats.name] = reason
                return True
            stats = self._stats.get(id(original))
            if stats is None:
                return False
            stats.exempt = True
            self._skipped[stats.name] = reason
            return True
        except Exception:
            log.internal_error("instrumentation.exempt")
            return False

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
                        current = owner.get(attr) if isinstance(owner, dict) else owner.__dict__.get(attr)
                        if current is wrapper:  # never clobber someone else's later patch
                            if isinstance(owner, dict):
                                owner[attr] = original
                            else:
                                setattr(owner, attr, original)
                    except Exception:
                        log.internal_error("instrumentation.restore")
                self._patches.clear()
                if self._monitored:
                    from . import monitor

                    monitor.stop([entry[0] for entry in self._monitored.values()])
                    self._monitored.clear()
                self._wrappers.clear()
                self._stats.clear()
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


def _dispatch_targets(obj, package: str) -> list:
    """The package's own functions registered with a dispatch object (functools.singledispatch's ``registry``,
    multipledispatch's ``funcs``), read without running any of the object's code."""
    from . import monitor

    found = []
    own = _instance_dict(obj)
    for attr in ("registry", "funcs"):
        table = own.get(attr)
        if table is None:  # __slots__: a plain slot only, never a property
            for klass in type(obj).__mro__:
                slot = vars(klass).get(attr)
                if slot is not None:
                    try:
                        table = slot.__get__(obj) if type(slot).__name__ == "member_descriptor" else None
                    except Exception:
                        table = None
                    break
        if not isinstance(table, (dict, MappingProxyType)):
            continue
        try:
            values = list(table.values())[:256]
        except Exception:
            continue
        for value in values:
            if type(value) is FunctionType and monitor.is_own(value, package) and value not in found:
                found.append(value)
    return found


def _instance_dict(obj) -> dict:
    """``obj.__dict__`` without running any of its code (no ``__getattr__``/``__getattribute__``), or {}."""
    try:
        found = object.__getattribute__(obj, "__dict__")
    except Exception:
        return {}
    return found if isinstance(found, (dict, MappingProxyType)) else {}


def _is_our_wrapper(obj) -> bool:
    module = sys.modules.get("usagetrace._internal.wrappers")
    return module is not None and module.is_trampoline(obj)


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
        from . import discovery

        found = discovery.dist_version(package)
        if found:
            return found[:64]
        from importlib import metadata  # off the import path: the version is read when data is sent

        # Not packages_distributions(): it reads every installed RECORD (~0.5 s with a large
        # environment, at exit); a maintainer whose dist is named apart can pass version=.
        return metadata.version(package)[:64]
    except Exception:
        return "unknown"


def _after_import(module: "ModuleType", callback) -> bool:
    """If ``module`` is still being imported, call ``callback(module)`` once its import has finished.

    ``instrument(__name__)`` may be the first line of a package's ``__init__.py``
    (lint-clean, no E402): nothing is defined yet there, so wrapping waits for the
    import machinery to mark the module initialized (it sets
    ``__spec__._initializing = False`` when ``exec_module`` returns or raises).
    The spec's class is swapped for a subclass that notices that one assignment,
    then swapped back. Returns False (wrap now) when the module is not being
    imported or its spec cannot be watched.
    """
    spec = getattr(module, "__spec__", None)
    if spec is None or getattr(spec, "_initializing", False) is not True:
        return False
    base = type(spec)

    def notice(self, name, value) -> None:
        base.__setattr__(self, name, value)
        if name == "_initializing" and not value:
            try:
                object.__setattr__(self, "__class__", base)
                if sys.modules.get(module.__name__) is module:  # a failed import is not wrapped
                    callback(module)
            except Exception:
                log.internal_error("instrumentation.after_import")

    try:
        spec.__class__ = type(base.__name__, (base,), {"__slots__": (), "__setattr__": notice,
                                                       "__module__": base.__module__})
    except TypeError:
        return False
    return True


def _caller_package(depth: int) -> "str | None":
    try:
        frame = sys._getframe(depth + 1)
        name = frame.f_globals.get("__package__") or frame.f_globals.get("__name__")
        return name.split(".", 1)[0] if isinstance(name, str) and name != "__main__" else None
    except Exception:
        return None


def instrument(
    package=None,
    *,
    endpoint: "str | None" = None,
    consent: str = "opt-in",
    version: "str | None" = None,
    include=None,
    exclude=None,
    ci: str = "off",
    consent_version=None,
    upload: "str | None" = None,
    **options,
) -> "Instrumentation":
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
        upload: ``"daily"`` (the default: counted on this machine, one report a
            day from a separate process, nothing leaves during runs),
            ``"weekly"``, or ``"realtime"`` (sent as it happens: services).
            ``USAGETRACE_UPLOAD`` overrides it; see the README's "Upload modes".
        **options: Advanced settings: ``span_budget`` (spans per function per
            minute, default 5), ``error_budget`` (default 50), ``max_queue``
            (default 2048), ``dev_file`` (development-mode output path).

    Returns:
        The :class:`Instrumentation` handle. Calling ``instrument`` again for the
        same package warns and returns the same handle. Never raises for a
        problem of usagetrace's own; a bad argument warns and falls back to the
        safe choice (nothing sent).
    """
    if package is None:
        name = _caller_package(1)
    elif isinstance(package, str):
        name = package
    else:
        name = getattr(package, "__name__", None)
    if not isinstance(name, str) or not name or name.startswith(".") or name == "__main__":
        import warnings  # only to warn: not on the import path

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
        import warnings  # only to warn: not on the import path

        warnings.warn(
            f"usagetrace.instrument({name!r}): consent={consent!r} is not one of "
            f"{', '.join(map(repr, _consent.POLICIES))}; using 'opt-in' (nothing is sent without consent).",
            RuntimeWarning,
            stacklevel=2,
        )
        consent = _consent.OPT_IN
    if ci not in CI_MODES:
        import warnings  # only to warn: not on the import path

        warnings.warn(
            f"usagetrace.instrument({name!r}): ci={ci!r} is not one of {CI_MODES!r}; using 'off'.",
            RuntimeWarning,
            stacklevel=2,
        )
        ci = "off"
    if upload is not None:
        if upload not in ("realtime", "daily", "weekly"):
            import warnings  # only to warn: not on the import path

            warnings.warn(
                f"usagetrace.instrument({name!r}): upload={upload!r} is not one of 'realtime', 'daily', "
                "'weekly'; using the default, 'daily'.",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            options["upload"] = upload
    try:
        consent_version = _consent.normalize_version(consent_version)
    except ValueError as exc:
        import warnings  # only to warn: not on the import path

        warnings.warn(
            f"usagetrace.instrument({name!r}): {exc}; using 'opt-in' (nothing is sent without consent).",
            RuntimeWarning,
            stacklevel=2,
        )
        consent, consent_version = _consent.OPT_IN, "invalid"
    with _REGISTRY_LOCK:
        existing = _REGISTRY.get(name)
        if existing is not None:
            import warnings  # only to warn: not on the import path

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


def registered() -> "dict[str, Instrumentation]":
    """Return a copy of the registry of instrumented packages in this process."""
    with _REGISTRY_LOCK:
        return dict(_REGISTRY)


def get(package: str) -> "Instrumentation | None":
    """Return the handle for a package instrumented in this process, if any."""
    return _REGISTRY.get(package)


def handle_for(package: str, setup: "dict | None" = None):
    """Return ``package``'s handle; create one that wraps nothing when absent and ``setup`` is given.

    ``setup`` holds ``instrument()`` keywords (endpoint, consent, ...). A handle
    created here instruments no function: it exists so an app or a CLI that
    is not itself an instrumented library can send integration data. Never raises.
    """
    try:
        handle = get(package)
        if handle is None and setup is not None:
            options = {k: v for k, v in setup.items() if v is not None}
            options.setdefault("include", [NOTHING])
            handle = instrument(package, **options)
        return handle
    except Exception:
        log.internal_error("instrumentation.handle_for")
        return None


def recorder(package: str):
    """Return the package's recorder while consent is on, else None (cheap; never raises)."""
    handle = _REGISTRY.get(package)
    if handle is None:
        return None
    rec = handle.recorder
    if rec is None or not rec.enabled:
        return None
    return rec


def integration_setup(endpoint, consent, **options) -> "dict | None":
    """Return ``instrument()`` keywords for :func:`handle_for`, or None to only use an existing handle."""
    if endpoint is None and consent is None and not options:
        return None
    out = {"endpoint": endpoint, "consent": consent or "opt-in"}
    out.update(options)
    return out


def register_commands(package: str, functions, integration: str) -> None:
    """Tell the package's handle which functions are CLI commands (not usages themselves). Never raises."""
    try:
        handle = get(package)
        if handle is None:
            return
        for func in functions:
            handle.command_function(func, integration)
    except Exception:
        log.internal_error("instrumentation.register_commands")
