"""What a wrapper would change that the host can observe, found before anything is wrapped.

A trampoline (see :mod:`.wrappers`) is a real function with the original's
signature and attributes, but three things still tell it apart. A public
callable exposed to any of them is left unwrapped and listed in
``Instrumentation.skipped`` with the reason: behaviour first, counts second.

* **Identity.** Something besides the module and class namespaces usagetrace
  rewrites holds the function: a default argument (``def memoize(f,
  key=default_key)``), a registry, a closure, an attribute of another object,
  another package. After wrapping, ``held is module.f`` would be False. This
  is found exactly, and cheaply, by counting references: every reference to
  the function must be one of the namespace slots that will hold the wrapper.
* **Frames.** The call would reach code that looks further up the stack than
  the package's own frames: ``warn(..., stacklevel=k)``, ``sys._getframe(n)``,
  ``inspect.currentframe().f_back``, ``traceback.extract_stack()``. The
  wrapper's frames (at the entry into the package only: calls inside a usage
  bypass the wrapper) would be what it finds. Every code object of the
  package is indexed with the names it uses; a code object that looks ``r``
  frames up makes every callable that can reach it in fewer than ``r`` calls
  hazardous. Calls are followed by name (over-approximating: any callable with
  that name); code run implicitly (``__getitem__``, ``__enter__``...) counts as
  reachable from anywhere, one call down. A nested function the code only
  returns or stores (a decorator's wrapper) runs later, when no wrapper frame
  is on the stack: its reach is not the code's (:func:`deferred_functions`,
  read from the source, and only for such rare code).
* **Recursion.** A function that calls itself, directly or through other
  functions of the package: each level would pass through the wrapper and use
  more of the recursion limit.

Limits (also in the README): calls through containers or ``getattr`` by a
computed name are not followed; references taken by other code before
``instrument()`` ran are found (reference counts) but a frame inspection in a
module imported after a function was wrapped is only found then, and that
function keeps its (pass-through) trampoline (on 3.12+ it is counted through
sys.monitoring from then on); on a free-threaded build
reference counts are not exact, so identity cannot be proven and nothing is
wrapped.
"""

from __future__ import annotations

import sys
import types

from . import log

INF = 1 << 30

REASON_CAPTURED = (
    "held by {n} reference(s) besides its module and class attributes (a default argument, a "
    "container, a closure, another object or package): wrapping it would change `is` checks"
)
REASON_FRAMES_SELF = "looks {reach} frame(s) up the stack ({how}): a wrapper frame would be what it sees"
REASON_FRAMES = "reaches {target}, which looks {reach} frame(s) up the stack ({how}): a wrapper frame would be what it sees"
REASON_IMPLICIT = (
    "the package's {target} runs implicitly and looks {reach} frame(s) up the stack ({how}): "
    "any wrapper frame could be what it sees"
)
REASON_RECURSIVE = (
    "calls itself (directly or through the package): each level would pass through the wrapper, "
    "halving the recursion depth available"
)
REASON_NO_REFCOUNT = "reference counts are not exact on this interpreter (free-threaded): identity cannot be proven"

#: Names that walk the stack to an unknown depth.
_WALKERS = frozenset({"extract_stack", "walk_stack", "getouterframes", "format_stack", "print_stack",
                      "_getframemodulename", "stack_trace"})
_BOUNDED_WALKERS = frozenset({"extract_stack", "format_stack", "print_stack"})  # these take limit=
_FRAME_GETTERS = frozenset({"_getframe", "currentframe"})
_WARN_NAMES = frozenset({"warn"})
#: Methods reached by a call of the class or by name (``super().__init__``), not implicitly.
_CONSTRUCTORS = frozenset({"__init__", "__new__", "__post_init__", "__attrs_post_init__", "__attrs_pre_init__",
                           "__init_subclass__", "__class_getitem__"})
_CALL_OPS = frozenset({"CALL", "CALL_FUNCTION", "CALL_METHOD", "PRECALL", "CALL_KW", "CALL_FUNCTION_KW"})


# --------------------------------------------------------------------- identity


def _refs(namespace, key) -> int:
    return sys.getrefcount(namespace[key])


def _attr_refs(namespace, key, attr: str) -> int:
    return sys.getrefcount(getattr(namespace[key], attr))


def _calibrate() -> tuple[int, int] | None:
    """What the counters report for an object with exactly one reference; None where counts are not exact."""
    try:
        if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
            return None
        probe = {"f": eval("lambda: None")}  # a fresh function nothing else refers to
        base = _refs(probe, "f")
        extra = probe["f"]
        if _refs(probe, "f") != base + 1:
            return None
        del extra
        probe["d"] = staticmethod(probe.pop("f"))  # the function's one reference: the descriptor
        return base, _attr_refs(probe, "d", "__func__")
    except Exception:
        return None


_BASE = _calibrate()


def external_references(namespace, key, known: int, attr: str | None = None) -> int | None:
    """How many references ``namespace[key]`` (or its ``attr``) has besides the ``known`` slots that hold it.

    None where reference counts cannot be trusted. The caller must hold no
    reference of its own to the object (keep ids, not objects).
    """
    if _BASE is None:
        return None
    if attr is None:
        return _refs(namespace, key) - _BASE[0] - (known - 1)
    return _attr_refs(namespace, key, attr) - _BASE[1] - (known - 1)


# ----------------------------------------------------------------------- frames


class _Node:
    """One top-level code object (a function or method, nested code merged in)."""

    __slots__ = ("label", "names", "reach", "how", "implicit", "calls", "owner", "edges", "method")

    def __init__(self, label: str, names: frozenset, reach: int, how: str, implicit: bool, calls: set, owner):
        self.label = label
        self.names = names  # names it references (globals and attributes)
        self.reach = reach  # how many frames above its own it may look at (0: none)
        self.how = how
        self.implicit = implicit  # run by the interpreter (dunder), not called by name
        self.calls = calls  # names it can be reached by (its name, aliases, its class for a constructor)
        self.owner = owner  # the class, for a constructor (its subclasses' names reach it too)
        self.edges: set = set()  # ids of code it calls by a global name that resolves to it (exact)
        self.method = ""  # for a method: its name in the class


def _all_codes(code, skip: frozenset = frozenset()):
    stack, seen = [code], 0
    while stack and seen < 2000:
        c = stack.pop()
        seen += 1
        yield c
        for const in c.co_consts:
            if isinstance(const, types.CodeType) and id(const) not in skip:
                stack.append(const)


class _Ins:
    """One bytecode instruction: the part of ``dis.Instruction`` used here (``dis`` costs ~10 ms to import
    and ~15 µs per instruction; this runs while the package is imported)."""

    __slots__ = ("opname", "arg", "argval", "offset")

    def __init__(self, opname: str, arg: int, argval, offset: int) -> None:
        self.opname, self.arg, self.argval, self.offset = opname, arg, argval, offset


_PY = sys.version_info[:2]
_NAME_OPS = frozenset({"LOAD_METHOD", "LOAD_NAME", "STORE_ATTR", "STORE_NAME", "STORE_GLOBAL", "DELETE_ATTR",
                       "DELETE_NAME", "DELETE_GLOBAL", "IMPORT_NAME", "IMPORT_FROM"})
_ABSOLUTE_JUMPS = frozenset({"JUMP_ABSOLUTE", "POP_JUMP_IF_TRUE", "POP_JUMP_IF_FALSE", "JUMP_IF_TRUE_OR_POP",
                             "JUMP_IF_FALSE_OR_POP", "JUMP_IF_NOT_EXC_MATCH"})


def _argval(name: str, arg: int, code):
    if name in ("LOAD_CONST", "KW_NAMES", "RETURN_CONST"):
        return code.co_consts[arg]
    if name == "LOAD_GLOBAL":
        return code.co_names[arg >> 1 if _PY >= (3, 11) else arg]
    if name == "LOAD_ATTR":
        return code.co_names[arg >> 1 if _PY >= (3, 12) else arg]
    if name == "LOAD_SUPER_ATTR":
        return code.co_names[arg >> 2]
    if name in _NAME_OPS:
        return code.co_names[arg]
    if name in _ABSOLUTE_JUMPS and _PY < (3, 11):
        return arg * 2 if _PY >= (3, 10) else arg  # a jump target, as a byte offset
    return arg


def _instructions(code) -> list:
    """Decode ``code.co_code`` (inline caches and EXTENDED_ARG folded away)."""
    import opcode

    names = opcode.opname
    extended_arg = opcode.opmap["EXTENDED_ARG"]
    raw = code.co_code
    out, extended = [], 0
    for offset in range(0, len(raw) - 1, 2):
        op, arg = raw[offset], raw[offset + 1] | extended
        if op == extended_arg:
            extended = arg << 8
            continue
        extended = 0
        name = names[op]
        if name == "CACHE":
            continue
        try:
            value = _argval(name, arg, code)
        except IndexError:
            value = arg
        out.append(_Ins(name, arg, value, offset))
    return out


def _simple(ins) -> bool:
    return ins.opname in ("LOAD_CONST", "LOAD_FAST", "LOAD_NAME", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_FAST_CHECK",
                          "LOAD_SMALL_INT", "LOAD_FAST_BORROW")


def _stacklevel_reach(code, keyword: str = "stacklevel", missing: int = 0) -> int:
    """Frames above its own a ``stacklevel=k`` (or ``limit=k``) keyword in ``code`` reaches: ``k - 1``.

    INF when the value is not a constant; ``missing`` when the keyword is never given.
    """
    reach, found = 0, False
    instructions = _instructions(code)
    for i, ins in enumerate(instructions):
        value = ins.argval
        if ins.opname == "KW_NAMES":  # 3.11, 3.12: the argument is an index into co_consts
            value = code.co_consts[ins.arg]
        if not (isinstance(value, tuple) and keyword in value and all(isinstance(v, str) for v in value)):
            continue
        if ins.opname != "KW_NAMES":
            nxt = instructions[i + 1].opname if i + 1 < len(instructions) else ""
            if ins.opname != "LOAD_CONST" or nxt not in ("CALL_FUNCTION_KW", "CALL_KW"):
                continue
        found = True
        back = len(value) - value.index(keyword)
        values = instructions[i - back : i]
        if len(values) != back or not all(_simple(v) for v in values):
            return INF
        level = values[0].argval
        if values[0].opname not in ("LOAD_CONST", "LOAD_SMALL_INT") or type(level) is not int:
            return INF
        reach = max(reach, level - 1)
    return reach if found else missing


def _positional_stacklevel_reach(code) -> int:
    """``warn(message, category, 3)``: the stacklevel as the third positional argument."""
    reach = 0
    instructions = _instructions(code)
    for i, ins in enumerate(instructions):
        if ins.argval not in _WARN_NAMES or not ins.opname.startswith("LOAD"):
            continue
        for j in range(i + 1, min(i + 40, len(instructions))):
            op = instructions[j]
            if op.opname in _CALL_OPS:
                if not isinstance(op.arg, int) or op.arg < 3:
                    continue  # a call building an argument (message.format(...)), or warn(msg, cat)
                level = instructions[j - 1 - (op.arg - 3)]
                if op.arg > 4:
                    break
                if level.opname in ("LOAD_CONST", "LOAD_SMALL_INT") and type(level.argval) is int:
                    reach = max(reach, level.argval - 1)
                else:
                    return INF
                break
    return reach


def _getframe_reach(code) -> int:
    names = code.co_names
    reach = 0
    instructions = None
    if "_getframe" in names:
        instructions = _instructions(code)
        for i, ins in enumerate(instructions):
            if ins.argval == "_getframe" and ins.opname.startswith("LOAD"):
                # sys._getframe(n): the argument is pushed right after the callee.
                arg = instructions[i + 1] if i + 1 < len(instructions) else None
                if arg is not None and arg.opname in _CALL_OPS:
                    continue  # _getframe(): this frame
                if arg is not None and arg.opname in ("PUSH_NULL", "LOAD_ATTR", "LOAD_METHOD"):
                    arg = instructions[i + 2] if i + 2 < len(instructions) else None
                    if arg is not None and arg.opname in _CALL_OPS:
                        continue  # 3.13+: the NULL is pushed after the callee
                if arg is None or arg.opname not in ("LOAD_CONST", "LOAD_SMALL_INT") or type(arg.argval) is not int:
                    return INF
                reach = max(reach, arg.argval)
    if "f_back" in names:
        instructions = instructions or _instructions(code)
        backs = sum(1 for ins in instructions if ins.argval == "f_back")
        # Absolute jump targets only before 3.11; since 3.12 POP_JUMP_IF_* are relative and forward (an
        # `if` read as a loop made every f_back unbounded on 3.12+), and backward jumps say so in their name.
        loops = any("BACKWARD" in ins.opname or
                    (_PY < (3, 11) and ins.opname in ("JUMP_ABSOLUTE", "POP_JUMP_IF_TRUE", "POP_JUMP_IF_FALSE") and
                     isinstance(ins.argval, int) and ins.argval < ins.offset)
                    for ins in instructions)
        if loops:
            return INF
        reach += backs
    return reach


def frame_reach(code, deferred: frozenset = frozenset()) -> tuple[int, str]:
    """Return (frames above its caller's that ``code`` may look at, how), over its nested code too.

    ``deferred``: ids of nested code objects (and so their own nested code) left out: functions the
    code only makes, returns or stores, which run later, outside any call into the package.
    """
    reach, how = 0, ""
    for c in _all_codes(code, deferred):
        names = c.co_names
        consts = c.co_consts
        try:
            if not _WALKERS.isdisjoint(names) or ("inspect" in names and "stack" in names):
                # extract_stack(limit=2) and the like see a bounded number of frames.
                bounded = _BOUNDED_WALKERS.issuperset(_WALKERS.intersection(names)) and "inspect" not in names
                r = _stacklevel_reach(c, "limit", INF) if bounded else INF
                if r >= INF:
                    return INF, "walks the stack"
                if r > reach:
                    reach, how = r, "walks the stack"
            has_kw = "stacklevel" in consts or any(isinstance(k, tuple) and "stacklevel" in k for k in consts)
            if has_kw:
                r = _stacklevel_reach(c)
                if r > reach:
                    reach, how = r, "stacklevel"
            elif not _WARN_NAMES.isdisjoint(names) and any(type(k) is int and k >= 2 for k in consts):
                r = _positional_stacklevel_reach(c)
                if r > reach:
                    reach, how = r, "stacklevel"
            if not _FRAME_GETTERS.isdisjoint(names) or "f_back" in names:
                r = _getframe_reach(c) if ("_getframe" in names or "f_back" in names) else 0
                if r > reach:
                    reach, how = r, "reads caller frames"
        except Exception:
            log.debug("cannot analyse %r; treating it as reading the stack", c, exc_info=True)
            return INF, "unanalysable"
    return reach, how


# ----------------------------------------------------- nested functions run later

#: Callables that keep a function they are given (as a descriptor, attribute or container item) rather than
#: call it then.
_KEEPERS = frozenset({"staticmethod", "classmethod", "property", "cached_property", "setattr", "append", "add",
                      "insert", "setdefault", "wraps", "update_wrapper", "ref", "WeakMethod"})
#: Decorators whose result, when called with the function to decorate, wraps it without running it
#: (``@wrapt.decorator def wrapper(wrapped, instance, args, kwargs): ...; return wrapper(target)``).
_WRAPPING_DECORATORS = frozenset({"decorator", "function_wrapper", "property", "classmethod", "cached_property"})
#: Callables whose result holds the function and runs it when called (followed like an alias).
_FORWARDERS = frozenset({"partial", "partialmethod"})


def _nested_functions(code) -> frozenset:
    """Ids of the functions and lambdas defined directly in ``code`` (not comprehensions: they run inline)."""
    return frozenset(id(c) for c in code.co_consts if isinstance(c, types.CodeType)
                     and not (c.co_name.startswith("<") and c.co_name != "<lambda>"))


def _last_name(node) -> str:
    """``wrapt.decorator`` -> ``decorator``; ``functools.wraps(f)`` -> ``wraps``; anything else -> ``""``."""
    import ast

    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


_TREES: dict = {}  # file name -> its parsed module (the last few files: functions of one file come together)


def _source_tree(code):
    """(the function's AST node, line offset from the parsed source to the file, child -> parent), or None.

    The file is read through ``linecache`` and parsed whole (not ``inspect.getsource``: its ``getmodule``
    scans every loaded module, ~0.1 s the first time)."""
    try:
        import ast
        import linecache

        tree = _TREES.get(code.co_filename)
        if tree is None:
            tree = ast.parse("".join(linecache.getlines(code.co_filename)))
            if len(_TREES) >= 8:
                _TREES.clear()
            _TREES[code.co_filename] = tree
    except Exception:
        return None
    top = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        elif isinstance(node, ast.Lambda) and code.co_name == "<lambda>":
            first = node.lineno
        else:
            continue
        if first == code.co_firstlineno:
            top = node
            break
    if top is None:
        return None
    parents, loads = {}, {}
    for node in ast.walk(top):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loads.setdefault(node.id, []).append(node)
    parents[None] = loads  # the uses of each name, under a key no node has
    return top, 0, parents


def deferred_functions(code) -> frozenset:
    """Ids of nested functions of ``code`` it never calls: it returns or stores them, and they run later.

    A factory or decorator that builds a function reading frames (``warn(stacklevel=...)`` in the wrapper it
    returns) runs that code after the call into the package has returned, when no wrapper frame is left on
    the stack. Read from the source (only for the rare function whose nested code reads frames); a nested
    function is run *now* when its name (or an alias) is called or passed to any callable but the few that
    just keep it (``staticmethod``, ``setattr``, ``list.append``...), or when it is decorated by anything but a
    decorator known to wrap without calling (``wrapt.decorator``) and then called. No source: nothing is
    deferred.
    """
    import ast

    found = _source_tree(code)
    if found is None:
        return frozenset()
    top, shift, parents = found
    direct = _nested_functions(code)
    nested = {(c.co_name, c.co_firstlineno): c for c in code.co_consts
              if isinstance(c, types.CodeType) and id(c) in direct}
    deferred = set()
    for node in ast.walk(top):
        if node is top:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            c = nested.get((node.name, line + shift))
            if c is None:
                continue
            if node.decorator_list:
                if not all(_last_name(d) in _WRAPPING_DECORATORS for d in node.decorator_list):
                    continue  # an unknown decorator may call it, or return something that does
                runs = _runs_now(top, parents, {node.name}, (), wrapping=True)
            else:
                runs = _runs_now(top, parents, {node.name}, ())
        elif isinstance(node, ast.Lambda):
            c = nested.get(("<lambda>", node.lineno + shift))
            if c is None:
                continue
            runs = _runs_now(top, parents, set(), (node,))
        else:
            continue
        if not runs:
            deferred.add(id(c))
    return frozenset(deferred)


def refers_to_itself_only_for_later(code) -> bool:
    """True when every use of the function's own name in its body hands the function on for later.

    ``return functools.partial(deprecated, **options)`` (a decorator with optional arguments) is not a call
    of itself: the partial runs after this call returned, one level deep. Read from the source; False
    without it.
    """
    found = _source_tree(code)
    if found is None:
        return False
    top, _, parents = found
    return not _runs_now(top, parents, {code.co_name}, ())


def _runs_now(top, parents, names: set, exprs: tuple, wrapping: bool = False) -> bool:
    """Whether the function held by ``names`` (or made by the expressions ``exprs``) may run while ``top`` runs.

    Followed: plain aliases (``g = inner``) and ``functools.partial(inner, ...)``. Run now: called, awaited,
    used in ``with`` or ``for``, or passed to any callable but the :data:`_KEEPERS`. ``wrapping``: the names
    hold what a wrapping decorator made of the function, and calling that decorates, not runs it.
    """
    import ast

    names = set(names)
    exprs = list(exprs)
    origin = set(exprs)
    loads = parents[None]
    for _ in range(4):  # aliases of aliases, bounded
        grown = False
        for name in names:
            for n in loads.get(name, ()):
                if n not in exprs:
                    exprs.append(n)
        for e in list(exprs):
            parent = parents.get(e)
            while isinstance(parent, (ast.Starred, ast.keyword)):
                parent = parents.get(parent)
            if isinstance(parent, ast.Call) and parent.func is not e and _last_name(parent.func) in _FORWARDERS:
                if parent not in exprs:
                    exprs.append(parent)  # partial(inner): where that goes, inner goes
                    grown = True
            elif isinstance(parent, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and parent.value is e:
                for t in (parent.targets if isinstance(parent, ast.Assign) else [parent.target]):
                    if isinstance(t, ast.Name) and t.id not in names:
                        names.add(t.id)  # g = inner: calls of g run it
                        grown = True
        if not grown:
            break
    for e in exprs:
        parent = parents.get(e)
        while isinstance(parent, (ast.Starred, ast.keyword)):
            e, parent = parent, parents.get(parent)
        if isinstance(parent, ast.Call):
            if parent.func is e:
                if wrapping and isinstance(e, ast.Name) and e not in origin:
                    continue  # decorator(target): wraps target; the body runs when that is called
                return True  # called
            if _last_name(parent.func) not in _KEEPERS | _FORWARDERS:
                return True  # passed to something that may call it now
        elif isinstance(parent, (ast.Await, ast.withitem, ast.For, ast.AsyncFor, ast.comprehension)):
            return True
    return False


_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _calls_own_name(code, name: str, owner: str = "") -> bool:
    """True when a method may call itself: ``self.name``, ``child.name``, ``self.left.name``.

    Not when the attribute is reached from ``super()`` or another call's result,
    or from a module or class other than its own (``os.path.join`` in a method
    named ``join``).
    """
    try:
        for c in _all_codes(code):
            if name not in c.co_names:
                continue
            instructions = _instructions(c)
            for i, ins in enumerate(instructions):
                if ins.argval != name or ins.opname not in _ATTR_LOADS:
                    continue
                j = i - 1
                while j >= 0 and instructions[j].opname in _ATTR_LOADS:
                    j -= 1  # follow a.b.c back to its root
                root = instructions[j] if j >= 0 else None
                if root is None or root.opname in _CALL_OPS or root.opname == "LOAD_SUPER_ATTR":
                    continue  # super().name, factory().name
                if root.opname in _GLOBAL_LOADS and root.argval != owner:
                    continue  # module.name, OtherClass.name
                return True
        return False
    except Exception:
        return True


def _loads_global(code, name: str) -> bool:
    """True when ``code`` (or its nested code) loads ``name`` as a global (a call by name), not as an attribute."""
    try:
        for c in _all_codes(code):
            if name in c.co_names and any(i.argval == name and i.opname in _GLOBAL_LOADS for i in _instructions(c)):
                return True
        return False
    except Exception:
        return True


_SUSPECT_NAMES = _WALKERS | _FRAME_GETTERS | _WARN_NAMES | {"f_back", "stack"}


def _scan(code) -> tuple[frozenset, bool]:
    """One cheap pass: every name ``code`` (and its nested code) uses, and whether it may look at frames."""
    names: set = set()
    suspect = False
    for c in _all_codes(code):
        names.update(c.co_names)
        if not suspect:
            if not _SUSPECT_NAMES.isdisjoint(c.co_names):
                suspect = True
            else:
                for const in c.co_consts:
                    if const == "stacklevel" or (type(const) is tuple and "stacklevel" in const):
                        suspect = True
                        break
    return frozenset(names), suspect


class Analysis:
    """Everything known about one package's code, built from its imported modules.

    ``add_module`` indexes a module's functions, classes and the functions it
    imported from elsewhere; ``frame_hazards`` answers for any set of
    candidates which would expose a wrapper frame, and why.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self.nodes: dict[int, _Node] = {}  # id(code) -> node
        self.codes: dict[int, object] = {}  # id(code) -> code (kept alive so ids stay unique)
        self.referrers: dict[str, set[int]] = {}  # name -> nodes that use it
        self.subclasses: dict[int, set[str]] = {}  # id(class) -> names of its subclasses in the package
        self._classes: dict[int, type] = {}
        self._modules: set[str] = set()
        self._hazards: dict[int, str] | None = None
        self._recursive: set[int] | None = None

    # -- indexing -------------------------------------------------------------
    def add_module(self, module) -> None:
        name = getattr(module, "__name__", None)
        if not isinstance(name, str) or name in self._modules:
            return
        self._modules.add(name)
        self._hazards = None
        try:
            namespace = dict(vars(module))
        except Exception:
            return
        for key, value in namespace.items():
            try:
                if type(value) is types.FunctionType:
                    self.add_function(value, f"{name}.{key}", alias=key)
                elif isinstance(value, type) and _defined_in(value, self.package):
                    self.add_class(value, f"{name}.{key}", depth=0)
            except Exception:
                log.debug("cannot index %s.%s", name, key, exc_info=True)

    def add_class(self, cls: type, label: str, depth: int) -> None:
        if depth > 3 or id(cls) in self._classes:
            return
        self._classes[id(cls)] = cls
        try:
            for base in cls.__mro__[1:]:
                if _defined_in(base, self.package):
                    # Sub(...) runs Base.__init__ when Sub does not define one.
                    self.subclasses.setdefault(id(base), set()).add(cls.__name__)
        except Exception:
            pass
        for key, raw in list(vars(cls).items()):
            func = raw
            if isinstance(raw, (staticmethod, classmethod)):
                func = raw.__func__
            if type(func) is types.FunctionType:
                self.add_function(func, f"{label}.{key}", alias=key, owner=cls, method=True)
            elif isinstance(raw, property):
                for accessor in (raw.fget, raw.fset, raw.fdel):
                    if type(accessor) is types.FunctionType:
                        self.add_function(accessor, f"{label}.{key}", alias=key, method=True)
            elif isinstance(raw, type) and raw is not cls and _defined_in(raw, self.package):
                self.add_class(raw, f"{label}.{key}", depth + 1)

    def add_function(self, func, label: str, alias: str | None = None, owner: type | None = None,
                     method: bool = False) -> None:
        code = getattr(func, "__code__", None)
        if not isinstance(code, types.CodeType):
            return
        node = self.nodes.get(id(code))
        if node is not None:
            if alias:
                node.calls.add(alias)  # imported or assigned under another name
                self._hazards = None
            return
        name = alias or getattr(func, "__name__", "") or code.co_name
        implicit = name.startswith("__") and name.endswith("__") and name not in _CONSTRUCTORS
        calls = {name, code.co_name}
        if owner is not None and name in _CONSTRUCTORS:
            calls.add(owner.__name__)  # Cls(...) runs Cls.__init__
        else:
            owner = None
        names, suspect = _scan(code)
        reach, how = frame_reach(code) if suspect else (0, "")
        if reach > 0 and frame_reach(code, _nested_functions(code))[0] < reach:
            # The reach is in a nested function: one that only runs later does not count.
            deferred = deferred_functions(code)
            if deferred:
                reach, how = frame_reach(code, deferred)
        node = _Node(label, names, reach, how, implicit, calls, owner)
        if owner is not None or method:
            node.method = name
        try:
            namespace = func.__globals__
            for n in node.names:
                target = namespace.get(n)
                if type(target) is types.FunctionType:
                    wrapped = _original_of(target)
                    node.edges.add(id((wrapped or target).__code__))
        except Exception:
            pass
        self.nodes[id(code)] = node
        self.codes[id(code)] = code
        for n in node.names:
            self.referrers.setdefault(n, set()).add(id(code))
        self._hazards = None
        self._recursive = None

    # -- answers --------------------------------------------------------------
    def frame_hazards(self) -> dict[int, str]:
        """Return {id(code): reason} for every indexed code whose wrapping would expose a wrapper frame."""
        if self._hazards is not None:
            return self._hazards
        hazards: dict[int, str] = {}
        everything = None
        for cid, node in self.nodes.items():
            if node.reach <= 0:
                continue
            reach_text = "many" if node.reach >= INF else str(node.reach)
            if node.implicit:
                if node.reach > 1:  # implicit code runs one call below whoever triggers it
                    everything = REASON_IMPLICIT.format(target=node.label, reach=reach_text, how=node.how)
                continue
            # Breadth-first from the inspecting code back through its callers, up to reach-1 calls away.
            frontier, seen, distance = {cid}, {cid}, 0
            while frontier and distance < node.reach:
                for member in frontier:
                    if member not in hazards:
                        hazards[member] = (
                            REASON_FRAMES_SELF.format(reach=reach_text, how=node.how) if member == cid else
                            REASON_FRAMES.format(target=node.label, reach=reach_text, how=node.how)
                        )
                distance += 1
                if distance >= node.reach:
                    break
                nxt = set()
                for member in frontier:
                    for name in self._reached_by(self.nodes[member]):
                        nxt.update(self.referrers.get(name, ()))
                frontier = nxt - seen
                seen |= frontier
        if everything is not None:
            hazards = {cid: everything for cid in self.nodes}
        self._hazards = hazards
        return hazards

    def _reached_by(self, node: _Node) -> set:
        if node.owner is None:
            return node.calls
        return node.calls | self.subclasses.get(id(node.owner), set())

    def frame_hazard(self, func) -> str | None:
        code = getattr(func, "__code__", None)
        if code is None:
            return None
        if id(code) not in self.nodes:
            self.add_function(func, getattr(func, "__qualname__", "?"))
        return self.frame_hazards().get(id(code))

    def recursion_hazard(self, func) -> str | None:
        """A function that calls itself, directly or through other functions of the package.

        Calls inside a usage bypass the wrapper's Python code, but still pass
        through wrapt's C proxy, which costs one more unit of the recursion
        limit per level: recursion would fail at half the depth.
        """
        code = getattr(func, "__code__", None)
        node = self.nodes.get(id(code))
        if node is None:
            return None
        if self._recursive is None:
            self._recursive = self._find_recursive()
        if id(code) in self._recursive:
            return REASON_RECURSIVE
        return None

    def _find_recursive(self) -> set[int]:
        found = set()
        for cid, node in self.nodes.items():
            if node.method and node.method in node.names:
                owner = node.owner.__name__ if node.owner is not None else node.label.rsplit(".", 2)[-2]
                if _calls_own_name(self.codes[cid], node.method, owner):
                    found.add(cid)  # self.walk(...), child.walk(...): assumed to recurse
            elif cid in node.edges:
                name = self.codes[cid].co_name
                if _loads_global(self.codes[cid], name) and not refers_to_itself_only_for_later(self.codes[cid]):
                    found.add(cid)
                else:
                    node.edges.discard(cid)  # obj.name(...): an attribute of the same name, not a self-call
        # Mutual recursion through module-level functions (exact edges): strongly connected components.
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        on_stack: set[int] = set()
        stack: list[int] = []
        counter = 0
        for root in self.nodes:
            if root in index:
                continue
            work = [(root, iter(self.nodes[root].edges))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                v, children = work[-1]
                advanced = False
                for w in children:
                    if w not in self.nodes:
                        continue
                    if w not in index:
                        index[w] = low[w] = counter
                        counter += 1
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, iter(self.nodes[w].edges)))
                        advanced = True
                        break
                    if w in on_stack:
                        low[v] = min(low[v], index[w])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1 and self._verified_cycle(component):
                        found.update(component)
        return found

    def _verified_cycle(self, component: list) -> bool:
        """Edges come from names that resolve to functions; keep the cycle only if they are real global loads."""
        members = set(component)
        for cid in component:
            code = self.codes[cid]
            if not any(_loads_global(code, self.codes[t].co_name) for t in self.nodes[cid].edges & members):
                return False
        return True


def _original_of(func):
    module = sys.modules.get("usagetrace._internal.wrappers")
    return module.original_of(func) if module is not None else None


def _defined_in(obj, package: str) -> bool:
    try:
        module = obj.__module__
    except Exception:
        return False
    return isinstance(module, str) and (module == package or module.startswith(package + "."))
