"""Runs the bundled collector configuration's processors on data inside rotel.

The real otelcol-contrib 0.136.0 binary cannot run here (no Docker engine, no
release binary in the registries this project may use), so the hostile-input
test runs *the same configuration files* through this emulator, loaded as a
Python processor of rotel (a real OTLP collector from PyPI): rotel receives
and exports real OTLP, and this module applies ``collector.yaml`` +
``allowlist.yaml`` to each ``ResourceSpans`` / ``ResourceMetrics`` in between.

What it models, from the upstream sources read for 0.136 (named in
docs/deployment.md): the config resolver (files merged, ``${env:X:-d}``,
``$$``), the OTTL grammar subset the config uses (editors, converters, paths,
``where`` with and/or/not/parentheses, short-circuit, Go string literals), the
filter processor (drop items matching any condition; ``error_mode: ignore``
treats a failing condition as false), groupbyattrs with no keys (resources and
scopes rebuilt from attributes: schema URLs dropped), the redaction processor
(allowed/ignored keys, its own ``redaction.*`` keys always let through,
``blocked_values`` applied once each to string values, matches replaced by
``****``) and the transform processor (``error_mode: ignore``: a failing
statement is skipped). Regular expressions run on google-re2 (RE2, the syntax
Go's regexp implements). Strings are Python ``str`` here: rotel rejects invalid
UTF-8 on receipt, so the invalid-byte repair is exercised only on valid text.

Anything the configuration uses that is not modelled raises, so a new
construct cannot pass unnoticed.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

# --- configuration files ----------------------------------------------------------------


def merge(into: dict, other: dict) -> dict:
    """Merge like the collector's confmap: maps recursively, everything else replaced."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(value: Any, env: dict) -> Any:
    """Expand ``${env:NAME:-default}`` and the ``$$`` escape in every string of a loaded config."""
    if isinstance(value, dict):
        return {k: expand(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env) for v in value]
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            if m.group(0) == "$$":
                return "$"
            got = env.get(m.group(1))
            return got if got not in (None, "") else (m.group(2) or "")

        return _ENV_REF.sub(sub, value)
    return value


def load(paths: list[Path], env: dict | None = None) -> dict:
    """Load, merge and resolve collector config files (``env`` defaults to ``os.environ``)."""
    import yaml

    merged: dict = {}
    for path in paths:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        merge(merged, data)
    return expand(merged, dict(os.environ) if env is None else env)


# --- OTTL: lexer and parser ---------------------------------------------------------------

_TOKEN = re.compile(
    r'\s+|(?P<str>"(?:\\.|[^"\\])*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|>=|<=|[<>()\[\],.])'
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
)
_GO_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


class OTTLError(Exception):
    """A statement the emulator cannot parse, or an evaluation error (skipped under error_mode: ignore)."""


def go_unquote(token: str) -> str:
    """Unquote a Go-syntax string literal; an escape Go would refuse raises, as the collector would."""
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _GO_ESCAPES:
            out.append(_GO_ESCAPES[nxt])
            i += 2
        elif nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise OTTLError(f"invalid escape \\{nxt} in OTTL string {token}")
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise OTTLError(f"cannot tokenize {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind:
            out.append((kind, m.group(kind)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.text = text

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise OTTLError(f"expected {value!r} at {tok} in {self.text!r}")
        self.i += 1
        return tok

    def statement(self) -> tuple:
        call = self.call()
        cond = None
        if self.peek() and self.peek()[1] == "where":
            self.take("where")
            cond = self.boolexpr()
        if self.peek() is not None:
            raise OTTLError(f"trailing input at {self.peek()} in {self.text!r}")
        return call, cond

    def condition(self) -> tuple:
        cond = self.boolexpr()
        if self.peek() is not None:
            raise OTTLError(f"trailing input in condition {self.text!r}")
        return cond

    def call(self) -> tuple:
        name = self.take()[1]
        self.take("(")
        args = []
        while self.peek()[1] != ")":
            args.append(self.value())
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")
        return ("call", name, args)

    def value(self) -> tuple:
        kind, text = self.peek()
        if kind == "str":
            self.take()
            return ("lit", go_unquote(text))
        if kind == "num":
            self.take()
            return ("lit", float(text) if "." in text else int(text))
        if text == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return ("list", items)
        if kind == "id":
            if text in ("true", "false"):
                self.take()
                return ("lit", text == "true")
            if text == "nil":
                self.take()
                return ("lit", None)
            nxt = self.peek(1)
            if nxt and nxt[1] == "(":
                return self.call()
            if text.isupper():
                self.take()
                return ("enum", text)
            return self.path()
        raise OTTLError(f"unexpected {text!r} in {self.text!r}")

    def path(self) -> tuple:
        names = [self.take()[1]]
        keys: list = []
        while self.peek() and self.peek()[1] in (".", "["):
            if self.peek()[1] == ".":
                if keys:
                    raise OTTLError(f"field after index in {self.text!r}")
                self.take(".")
                names.append(self.take()[1])
            else:
                self.take("[")
                keys.append(self.value()[1])
                self.take("]")
        return ("path", tuple(names), tuple(keys))

    def boolexpr(self) -> tuple:
        terms = [self.term()]
        while self.peek() and self.peek()[1] == "or":
            self.take("or")
            terms.append(self.term())
        return ("or", terms)

    def term(self) -> tuple:
        vals = [self.boolvalue()]
        while self.peek() and self.peek()[1] == "and":
            self.take("and")
            vals.append(self.boolvalue())
        return ("and", vals)

    def boolvalue(self) -> tuple:
        neg = False
        if self.peek()[1] == "not":
            self.take("not")
            neg = True
        if self.peek()[1] == "(":
            self.take("(")
            inner = self.boolexpr()
            self.take(")")
        else:
            left = self.value()
            if self.peek() and self.peek()[1] in ("==", "!=", ">", "<", ">=", "<="):
                op = self.take()[1]
                inner = ("cmp", op, left, self.value())
            else:
                inner = ("const", left)
        return ("not", inner) if neg else inner


# --- values and the rotel object model ------------------------------------------------------


class ArrayView(list):
    """An attribute array value, as plain Python values."""


class MapView(dict):
    """An attribute map value, as plain Python values."""


def native(any_value: Any) -> Any:
    """A rotel AnyValue (or None) as a plain Python value."""
    if any_value is None:
        return None
    v = any_value.value
    name = type(v).__name__
    if name == "ArrayValue":
        return ArrayView(native(x) for x in v)
    if name == "KeyValueList":
        return MapView((kv.key, native(kv.value)) for kv in v)
    if isinstance(v, list):  # bytes arrive as a list of ints
        return bytes(v)
    return v


class AttrMap:
    """The attribute list of a rotel object (``owner.field``), with map operations."""

    def __init__(self, owner: Any, field: str) -> None:
        self.owner, self.field = owner, field

    def kvs(self) -> list:
        return list(getattr(self.owner, self.field) or [])

    def write(self, kvs: list) -> None:
        try:
            setattr(self.owner, self.field, kvs)
        except (AttributeError, TypeError):  # some rotel attribute lists only change in place
            current = getattr(self.owner, self.field)
            while len(current):
                del current[0]
            for kv in kvs:
                current.append(kv)

    def get(self, key: str) -> Any:
        for kv in self.kvs():
            if kv.key == key:
                return native(kv.value)
        return None

    def keys(self) -> list[str]:
        return [kv.key for kv in self.kvs()]

    def remove_if(self, predicate: Callable[[str], bool]) -> None:
        self.write([kv for kv in self.kvs() if not predicate(kv.key)])

    def put_str(self, key: str, value: str) -> None:
        from rotel_sdk.open_telemetry.common.v1 import AnyValue, KeyValue

        self.write([KeyValue(key, AnyValue(value)) if kv.key == key else kv for kv in self.kvs()])

    def __len__(self) -> int:
        return len(self.kvs())


_METRIC_TYPES = {
    "MetricData_Gauge": 1,
    "MetricData_Sum": 2,
    "MetricData_Histogram": 3,
    "MetricData_ExponentialHistogram": 4,
    "MetricData_Summary": 5,
}
ENUMS = {
    "METRIC_DATA_TYPE_NONE": 0,
    "METRIC_DATA_TYPE_GAUGE": 1,
    "METRIC_DATA_TYPE_SUM": 2,
    "METRIC_DATA_TYPE_HISTOGRAM": 3,
    "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM": 4,
    "METRIC_DATA_TYPE_SUMMARY": 5,
}


def metric_type(metric: Any) -> int:
    return 0 if metric.data is None else _METRIC_TYPES[type(metric.data).__name__]


def data_points(metric: Any) -> list:
    return [] if metric.data is None else list(metric.data[0].data_points)


class Ctx:
    """One OTTL transform context: the item and the objects above it."""

    def __init__(self, kind: str, *, resource_item=None, scope_item=None, span=None, event=None, metric=None, point=None):
        self.kind = kind
        self.resource_item, self.scope_item = resource_item, scope_item  # ResourceSpans/Metrics, ScopeSpans/Metrics
        self.span, self.event, self.metric, self.point = span, event, metric, point

    @property
    def resource(self):
        return self.resource_item.resource

    @property
    def scope(self):
        return self.scope_item.scope


def _simple(get: Callable[[Ctx], Any], set_: Callable[[Ctx, Any], None] | None = None):
    return get, set_


def _attr_path(owner: Callable[[Ctx], Any], field: str = "attributes"):
    return lambda c: AttrMap(owner(c), field)


def _status_message_set(c: Ctx, v: str) -> None:
    if c.span.status is not None:
        c.span.status.message = v


# context -> path (tuple of names, context prefix removed) -> (getter, setter)
PATHS: dict[str, dict[tuple, tuple]] = {
    "resource": {
        ("attributes",): _simple(_attr_path(lambda c: c.resource)),
        ("schema_url",): _simple(lambda c: c.resource_item.schema_url, lambda c, v: setattr(c.resource_item, "schema_url", v)),
    },
    "scope": {
        ("attributes",): _simple(_attr_path(lambda c: c.scope)),
        ("name",): _simple(lambda c: c.scope.name),
        ("version",): _simple(lambda c: c.scope.version, lambda c, v: setattr(c.scope, "version", v)),
        ("schema_url",): _simple(lambda c: c.scope_item.schema_url, lambda c, v: setattr(c.scope_item, "schema_url", v)),
    },
    "span": {
        ("attributes",): _simple(_attr_path(lambda c: c.span)),
        ("name",): _simple(lambda c: c.span.name, lambda c, v: setattr(c.span, "name", v)),
        ("trace_state",): _simple(lambda c: c.span.trace_state, lambda c, v: setattr(c.span, "trace_state", v)),
        ("status", "message"): _simple(lambda c: c.span.status.message if c.span.status else "", _status_message_set),
        ("links",): _simple(lambda c: list(c.span.links)),
        ("events",): _simple(lambda c: list(c.span.events)),
    },
    "spanevent": {
        ("attributes",): _simple(_attr_path(lambda c: c.event)),
        ("name",): _simple(lambda c: c.event.name),
    },
    "metric": {
        ("name",): _simple(lambda c: c.metric.name),
        ("description",): _simple(lambda c: c.metric.description, lambda c, v: setattr(c.metric, "description", v)),
        ("unit",): _simple(lambda c: c.metric.unit, lambda c, v: setattr(c.metric, "unit", v)),
        ("type",): _simple(lambda c: metric_type(c.metric)),
        ("metadata",): _simple(_attr_path(lambda c: c.metric, "metadata")),
    },
    "datapoint": {
        ("attributes",): _simple(_attr_path(lambda c: c.point)),
        ("exemplars",): _simple(lambda c: list(c.point.exemplars)),
    },
}
# Paths into the contexts above an item.
_HIGHER = {
    ("resource", "attributes"): _simple(_attr_path(lambda c: c.resource)),
    ("instrumentation_scope", "name"): _simple(lambda c: c.scope.name if c.scope else ""),
    ("metric", "name"): _simple(lambda c: c.metric.name),
}
_HIGHER_FOR = {"span": {"resource", "instrumentation_scope"}, "spanevent": {"resource", "instrumentation_scope"},
               "metric": {"resource", "instrumentation_scope"}, "datapoint": {"resource", "instrumentation_scope", "metric"},
               "scope": {"resource"}, "resource": set()}


def resolve(context: str, names: tuple) -> tuple:
    own = PATHS[context]
    if names[0] == context and len(names) > 1:  # "metric.metadata" in the metric context
        names = names[1:]
    if names in own:
        return own[names]
    if names[0] in _HIGHER_FOR[context] and names in _HIGHER:
        return _HIGHER[names]
    raise OTTLError(f"path {'.'.join(names)} is not modelled for context {context}")


# --- evaluation ----------------------------------------------------------------------------


def _re2():
    import re2

    return re2


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, AttrMap):
        return value.get(key)
    if isinstance(value, MapView):
        return value.get(key)
    if isinstance(value, ArrayView):
        if not isinstance(key, int) or key >= len(value):
            raise OTTLError(f"index {key} out of range")
        return value[key]
    raise OTTLError(f"cannot index {type(value).__name__}")


def string_like(v: Any) -> str | None:
    """OTTL's StringLikeGetter: what IsMatch sees for a non-string value."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (ArrayView, MapView)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)
    raise OTTLError(f"no string form for {type(v).__name__}")


def _length(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8"))  # Go's len(): bytes
    if isinstance(v, (ArrayView, MapView, AttrMap, list)):
        return len(v)
    raise OTTLError(f"Len of {type(v).__name__}")


def go_template(replacement: str) -> Callable[[Any], str]:
    """Go's Regexp.Expand for ``$1``/``${1}`` (the only forms the config uses)."""
    parts = re.split(r"(\$\{\d+\}|\$\d+)", replacement)

    def fn(m: Any) -> str:
        out = []
        for part in parts:
            g = re.fullmatch(r"\$\{?(\d+)\}?", part)
            out.append((m.group(int(g.group(1))) or "") if g else part)
        return "".join(out)

    return fn


class Statement:
    """One parsed OTTL statement (or a bare condition) bound to a context."""

    def __init__(self, context: str, text: str, *, condition_only: bool = False) -> None:
        self.context, self.text = context, text
        p = _Parser(text)
        if condition_only:
            self.call, self.cond = None, p.condition()
        else:
            self.call, self.cond = p.statement()
        self._check(self.call)
        self._check(self.cond)

    def _check(self, node: Any) -> None:
        """Resolve every path and function now, as the collector does when it loads the config."""
        if not isinstance(node, tuple) or not node or node[0] in ("lit", "enum"):
            return
        if node[0] == "path":
            resolve(self.context, node[1])
            return
        if node[0] == "call" and node[1] not in EDITORS and node[1] not in CONVERTERS:
            raise OTTLError(f"function {node[1]} is not modelled")
        for child in node[1:]:
            if isinstance(child, list):
                for c in child:
                    self._check(c)
            else:
                self._check(child)

    # values
    def value(self, node: tuple, c: Ctx) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "list":
            return [self.value(x, c) for x in node[1]]
        if kind == "enum":
            return ENUMS[node[1]]
        if kind == "path":
            v = resolve(self.context, node[1])[0](c)
            for key in node[2]:
                v = _index(v, key)
            return v
        if kind == "call":
            return CONVERTERS[node[1]](self, c, node[2])
        raise OTTLError(f"bad value {node}")

    def test(self, node: tuple, c: Ctx) -> bool:
        kind = node[0]
        if kind == "or":
            return any(self.test(t, c) for t in node[1])  # short-circuit, as OTTL
        if kind == "and":
            return all(self.test(v, c) for v in node[1])
        if kind == "not":
            return not self.test(node[1], c)
        if kind == "const":
            v = self.value(node[1], c)
            if not isinstance(v, bool):
                raise OTTLError(f"{node} is not boolean")
            return v
        if kind == "cmp":
            op, a, b = node[1], self.value(node[2], c), self.value(node[3], c)
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            if a is None or b is None:
                return False
            return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
        raise OTTLError(f"bad condition {node}")

    def matches(self, c: Ctx) -> bool:
        return self.test(self.cond, c)

    def run(self, c: Ctx) -> None:
        if self.cond is not None and not self.test(self.cond, c):
            return
        EDITORS[self.call[1]](self, c, self.call[2])

    # helpers for editors
    def target(self, node: tuple, c: Ctx) -> Any:
        if node[0] != "path":
            raise OTTLError("editor target must be a path")
        return self.value(node, c)

    def setter(self, node: tuple) -> Callable:
        if node[0] == "path" and len(node[2]) == 1 and isinstance(node[2][0], str):
            # set(attributes["key"], "text"): OTTL sets (or adds) that key of the map
            getter, key = resolve(self.context, node[1])[0], node[2][0]

            def set_key(c: Ctx, value: Any) -> None:
                m = getter(c)
                if not isinstance(m, AttrMap) or not isinstance(value, str):
                    raise OTTLError(f"cannot set {node} to {value!r}")
                if key in m.keys():
                    m.put_str(key, value)
                else:
                    from rotel_sdk.open_telemetry.common.v1 import AnyValue, KeyValue

                    m.write(m.kvs() + [KeyValue(key, AnyValue(value))])

            return set_key
        if node[0] != "path" or node[2]:
            raise OTTLError(f"cannot set {node}")
        setter = resolve(self.context, node[1])[1]
        if setter is None:
            raise OTTLError(f"path {'.'.join(node[1])} is read-only here")
        return setter


def _map_arg(st: Statement, c: Ctx, node: tuple) -> AttrMap:
    m = st.target(node, c)
    if not isinstance(m, AttrMap):
        raise OTTLError("target is not a map")
    return m


def _ed_set(st, c, args):
    st.setter(args[0])(c, st.value(args[1], c))


def _ed_delete_key(st, c, args):
    key = st.value(args[1], c)
    _map_arg(st, c, args[0]).remove_if(lambda k: k == key)


def _ed_keep_keys(st, c, args):
    keep = set(st.value(args[1], c))
    _map_arg(st, c, args[0]).remove_if(lambda k: k not in keep)


def _ed_delete_matching_keys(st, c, args):
    rx = _re2().compile(st.value(args[1], c))
    _map_arg(st, c, args[0]).remove_if(lambda k: bool(rx.search(k)))


def _ed_limit(st, c, args):
    m, n = _map_arg(st, c, args[0]), st.value(args[1], c)
    kvs = m.kvs()
    if len(kvs) > n:
        m.write(kvs[:n])


def _ed_replace_all_patterns(st, c, args):
    m, mode, pattern, repl = (_map_arg(st, c, args[0]), st.value(args[1], c), st.value(args[2], c), st.value(args[3], c))
    if mode != "value" or len(args) != 4:
        raise OTTLError("only replace_all_patterns(map, \"value\", pattern, replacement) is modelled")
    rx, fn = _re2().compile(pattern), go_template(repl)
    for key in m.keys():
        v = m.get(key)
        if isinstance(v, str):
            new = rx.sub(fn, v)
            if new != v:
                m.put_str(key, new)


EDITORS = {
    "set": _ed_set,
    "delete_key": _ed_delete_key,
    "keep_keys": _ed_keep_keys,
    "delete_matching_keys": _ed_delete_matching_keys,
    "limit": _ed_limit,
    "replace_all_patterns": _ed_replace_all_patterns,
}


def _cv_is_match(st, c, args):
    s = string_like(st.value(args[0], c))
    if args[1][0] != "lit":
        raise OTTLError("IsMatch pattern must be a literal")
    return s is not None and _re2().search(args[1][1], s) is not None


def _is(pred):
    return lambda st, c, args: pred(st.value(args[0], c))


CONVERTERS = {
    "IsMatch": _cv_is_match,
    "IsString": _is(lambda v: isinstance(v, str)),
    "IsBool": _is(lambda v: isinstance(v, bool)),
    "IsInt": _is(lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "IsDouble": _is(lambda v: isinstance(v, float)),
    "IsList": _is(lambda v: isinstance(v, ArrayView)),
    "IsMap": _is(lambda v: isinstance(v, MapView)),
    "Len": lambda st, c, args: _length(st.value(args[0], c)),
}


# --- processors ------------------------------------------------------------------------------

# Written by the redaction processor and always let through by it, whatever the config says.
REDACTION_OWN_KEYS = frozenset(
    f"redaction.{part}"
    for part in (
        "redacted.keys", "redacted.count", "masked.keys", "masked.count", "allowed.keys", "allowed.count",
        "ignored.count", "body.redacted.keys", "body.redacted.count", "body.masked.keys", "body.masked.count",
        "body.allowed.keys", "body.allowed.count", "body.ignored.count",
    )
)


def _spans(rs) -> list[Ctx]:
    return [Ctx("span", resource_item=rs, scope_item=ss, span=sp) for ss in rs.scope_spans for sp in ss.spans]


def _points(rm) -> list[Ctx]:
    return [
        Ctx("datapoint", resource_item=rm, scope_item=sm, metric=m, point=p)
        for sm in rm.scope_metrics for m in sm.metrics for p in data_points(m)
    ]


class Pipeline:
    """The processors of one signal's pipeline, from a loaded configuration."""

    def __init__(self, config: dict, signal: str) -> None:
        self.signal = signal  # "traces" or "metrics"
        self.steps = []
        for name in config["service"]["pipelines"][signal]["processors"]:
            kind = name.split("/", 1)[0]
            cfg = config["processors"][name] or {}
            builder = getattr(self, f"_build_{kind}", None)
            if builder is None:
                raise OTTLError(f"processor {kind} is not modelled")
            step = builder(cfg)
            if step is not None:
                self.steps.append(step)

    # no-ops for data content
    def _build_memory_limiter(self, cfg):
        return None

    def _build_batch(self, cfg):
        return None

    def _build_groupbyattrs(self, cfg):
        if cfg.get("keys"):
            raise OTTLError("only groupbyattrs without keys is modelled")

        def rebuild(item):  # new resource from attributes; new scope containers
            item.schema_url = ""
            if item.resource is not None:
                item.resource.dropped_attributes_count = 0
            for scoped in (item.scope_spans if self.signal == "traces" else item.scope_metrics):
                scoped.schema_url = ""

        return rebuild

    def _build_filter(self, cfg):
        sections = cfg.get(self.signal) or {}
        conds = {ctx: [Statement(ctx, t, condition_only=True) for t in texts] for ctx, texts in sections.items()}

        def hit(ctx_name: str, c: Ctx) -> bool:
            for st in conds.get(ctx_name, []):
                try:
                    if st.matches(c):
                        return True
                except OTTLError:  # error_mode: ignore -> the condition counts as false
                    continue
            return False

        def apply(item):
            if self.signal == "traces":
                for ss in item.scope_spans:
                    kept = []
                    for sp in ss.spans:
                        c = Ctx("span", resource_item=item, scope_item=ss, span=sp)
                        if hit("span", c):
                            continue
                        sp.events = [
                            ev for ev in sp.events
                            if not hit("spanevent", Ctx("spanevent", resource_item=item, scope_item=ss, span=sp, event=ev))
                        ]
                        kept.append(sp)
                    ss.spans = kept
                item.scope_spans = [ss for ss in item.scope_spans if len(ss.spans)]
            else:
                for sm in item.scope_metrics:
                    kept = []
                    for m in sm.metrics:
                        if hit("metric", Ctx("metric", resource_item=item, scope_item=sm, metric=m)):
                            continue
                        if m.data is not None:
                            holder = m.data[0]
                            holder.data_points = [
                                p for p in holder.data_points
                                if not hit("datapoint", Ctx("datapoint", resource_item=item, scope_item=sm, metric=m, point=p))
                            ]
                            if not len(holder.data_points):
                                continue
                        kept.append(m)
                    sm.metrics = kept
                item.scope_metrics = [sm for sm in item.scope_metrics if len(sm.metrics)]

        return apply

    def _build_redaction(self, cfg):
        if cfg.get("allow_all_keys") or cfg.get("redact_all_types") or cfg.get("summary", "info") != "silent":
            raise OTTLError("only allow_all_keys: false, redact_all_types: false, summary: silent are modelled")
        for unmodelled in ("blocked_key_patterns", "allowed_values", "ignored_key_patterns", "hash_function"):
            if cfg.get(unmodelled):
                raise OTTLError(f"redaction {unmodelled} is not modelled")
        allowed = set(cfg.get("allowed_keys") or []) | REDACTION_OWN_KEYS
        ignored = set(cfg.get("ignored_keys") or [])
        blocked = [_re2().compile(p) for p in cfg.get("blocked_values") or []]

        def attrs(owner) -> None:
            if owner is None:
                return
            m = AttrMap(owner, "attributes")
            m.remove_if(lambda k: k not in ignored and k not in allowed)
            for key in m.keys():
                v = m.get(key)
                if key in ignored or not isinstance(v, str):
                    continue
                new = v
                for rx in blocked:  # each pattern once, in order, on the current value
                    if rx.search(new):
                        new = rx.sub("****", new)
                if new != v:
                    m.put_str(key, new)

        def apply(item):
            attrs(item.resource)
            if self.signal == "traces":
                for ss in item.scope_spans:
                    attrs(ss.scope)
                    for sp in ss.spans:
                        attrs(sp)
                        for ev in sp.events:
                            attrs(ev)
            else:
                for sm in item.scope_metrics:
                    attrs(sm.scope)
                    for m in sm.metrics:
                        for p in data_points(m):
                            attrs(p)

        return apply

    def _build_transform(self, cfg):
        key = "trace_statements" if self.signal == "traces" else "metric_statements"
        groups = [(g["context"], [Statement(g["context"], t) for t in g["statements"]]) for g in cfg.get(key) or []]

        def contexts(item, context: str) -> list[Ctx]:
            if context == "resource":
                return [Ctx("resource", resource_item=item)] if item.resource is not None else []
            scoped = item.scope_spans if self.signal == "traces" else item.scope_metrics
            if context == "scope":
                return [Ctx("scope", resource_item=item, scope_item=s) for s in scoped if s.scope is not None]
            if context == "span":
                return _spans(item)
            if context == "spanevent":
                return [Ctx("spanevent", resource_item=item, scope_item=c.scope_item, span=c.span, event=ev)
                        for c in _spans(item) for ev in c.span.events]
            if context == "metric":
                return [Ctx("metric", resource_item=item, scope_item=s, metric=m) for s in scoped for m in s.metrics]
            if context == "datapoint":
                return _points(item)
            raise OTTLError(f"context {context} is not modelled")

        def apply(item):
            for context, statements in groups:
                for c in contexts(item, context):
                    for st in statements:
                        try:
                            st.run(c)
                        except OTTLError:  # error_mode: ignore -> skip this statement
                            continue

        return apply

    def __call__(self, item) -> None:
        for step in self.steps:
            step(item)
        # The filter processor removes a resource left with nothing in it; rotel
        # hands the processor one resource and exports it regardless, so empty it.
        scoped = item.scope_spans if self.signal == "traces" else item.scope_metrics
        if not len(scoped) and item.resource is not None:
            item.resource.attributes = []
