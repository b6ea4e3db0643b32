"""Record which argparse command ran: masked command line, exit status, duration.

::

    import argparse
    from usagetrace.integrations.argparse import track

    parser = argparse.ArgumentParser(prog="mycli")
    ...

    @track(parser, package="mycli")
    def main(argv=None):
        args = parser.parse_args(argv)
        ...
        return 0

Each call of ``main`` queues one ``usagetrace.command`` span: the program and
subparser path (``mycli run``), the command line with declared option names
kept and every value and positional masked (``mycli run --pipeline ***** --env *****``),
``process.exit.code`` (from the return value, ``SystemExit`` or 1 for an
exception) and the duration. The command line is the one given to
``parser.parse_args``/``parse_known_args`` during the call (``sys.argv[1:]``
if it was never called). Standard library only.
"""

import argparse as _argparse
import functools
import sys

# _cli (masking, the run's record) is imported once a run is recorded: a CLI with telemetry off
# never needs it.
from .._internal import instrumentation, log

__all__ = ["describe", "track"]


def _option_map(parser) -> dict:
    out = {}
    for action in getattr(parser, "_actions", ()):
        for name in action.option_strings:
            out[name] = action
    return out


def _subparsers(parser) -> dict:
    out = {}
    for action in getattr(parser, "_actions", ()):
        if isinstance(action, _argparse._SubParsersAction):
            out.update(action.choices)
    return out


def _handlers(parser, limit: int = 1000) -> list:
    """Functions set as defaults (``set_defaults(func=handler)``) on the parser and its subparsers."""
    out, pending, seen = [], [parser], set()
    while pending and len(seen) < limit:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.extend(v for v in getattr(current, "_defaults", {}).values() if callable(v))
        pending.extend(_subparsers(current).values())
    return out


def _resolve(options: dict, name: str, parser):
    action = options.get(name)
    if action is not None:
        return name, action
    if name.startswith("--") and getattr(parser, "allow_abbrev", True):
        matches = [k for k in options if k.startswith(name)]
        if len(matches) == 1:
            return matches[0], options[matches[0]]
    return None, None


def _values(action, tokens: list, i: int) -> int:
    """Return how many tokens starting at ``i`` belong to ``action``."""
    nargs = action.nargs
    if nargs == 0:
        return 0
    if nargs is None:
        return 1 if i < len(tokens) else 0
    if isinstance(nargs, int):
        return min(nargs, len(tokens) - i)
    n = 0
    while i + n < len(tokens) and not (tokens[i + n].startswith("-") and len(tokens[i + n]) > 1):
        n += 1
        if nargs == "?":
            break
    return n


def describe(parser, args, prog: str) -> tuple[list, list]:
    """Return (command path, masked command line) for ``args`` parsed by ``parser``."""
    from . import _cli

    path, line = [prog], [prog]
    current = parser
    options, subs = _option_map(current), _subparsers(current)
    tokens = [t if isinstance(t, str) else "" for t in list(args)[: _cli.MAX_TOKENS]]
    prefix = tuple(getattr(current, "prefix_chars", "-") or "-")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            line.append("--")
            line.extend(_cli.MASK for _ in tokens[i:])
            break
        if token[:1] in prefix and len(token) > 1:
            name, eq, _ = token.partition("=")
            canonical, action = _resolve(options, name, current)
            if action is None and len(token) > 2 and token[1] not in prefix:
                canonical, action = _resolve(options, token[:2], current)
                if action is not None:
                    line.append(_cli.safe_option(canonical))
                    if action.nargs != 0:
                        line.append(_cli.MASK)  # -pVALUE
                    continue
            if action is None:
                line.append(_cli.MASK)
                continue
            line.append(_cli.safe_option(canonical))
            if eq:
                line.append(_cli.MASK)
                continue
            n = _values(action, tokens, i)
            line.extend(_cli.MASK for _ in range(n))
            i += n
            continue
        sub = subs.get(token)
        name = _cli.safe_name(token) if sub is not None else None
        if name is not None:
            path.append(name)
            line.append(name)
            current = sub
            options, subs = _option_map(current), _subparsers(current)
            prefix = tuple(getattr(current, "prefix_chars", "-") or "-")
        else:
            line.append(_cli.MASK)
    if len(args) > _cli.MAX_TOKENS:
        line.append("…")
    return path, line


def track(
    parser,
    *,
    package: str,
    name: "str | None" = None,
    endpoint: "str | None" = None,
    consent: "str | None" = None,
    **options,
):
    """Return a decorator recording each call of a CLI ``main`` function that parses with ``parser``.

    ``name`` is the program name shown first (default: ``package``). When the
    package has not called ``usagetrace.instrument()``, pass ``endpoint``/``consent``
    to create a handle that wraps no function.
    """
    if not isinstance(parser, _argparse.ArgumentParser):
        raise TypeError("usagetrace.integrations.argparse.track() needs an argparse.ArgumentParser")
    instrumentation.handle_for(package, instrumentation.integration_setup(endpoint, consent, **options))
    seen: list = []

    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        if seen is not None and not seen:
            seen.append(list(sys.argv[1:] if args is None else args))
            # Handlers may be set while main builds the parser: known by now, before they run.
            instrumentation.register_commands(package, _handlers(parser), "argparse")
        return original(args, namespace)

    def decorator(main):
        @functools.wraps(main)
        def wrapper(*a, **kw):
            if instrumentation.recorder(package) is None:  # off: main runs untouched
                return main(*a, **kw)
            from . import _cli

            if _cli.completing():
                return main(*a, **kw)
            start = None
            try:
                start = _cli.now_ns()
                seen.clear()
                parser.parse_known_args = parse_known_args
            except Exception:
                log.internal_error("integrations.argparse.start")
            code, error = 0, None
            scope = _cli.enter(package)
            try:
                result = main(*a, **kw)
                code = _cli.exit_code(result) if isinstance(result, (int, type(None))) else 0
                return result
            except SystemExit as exc:
                code = _cli.exit_code(exc.code)
                raise
            except KeyboardInterrupt:
                code = 130
                raise
            except BaseException as exc:
                code, error = 1, exc
                raise
            finally:
                _cli.leave(scope)
                try:
                    if vars(parser).get("parse_known_args") is parse_known_args:
                        del parser.parse_known_args
                    argv = seen[0] if seen else list(sys.argv[1:])
                    path, line = describe(parser, argv, _cli.safe_name(name or package) or "cli")
                    run = _cli.Run(package, path, line)
                    if start is not None:
                        run.start_ns = start
                    run.finish(code, error)
                except Exception:
                    log.internal_error("integrations.argparse.finish")

        setattr(wrapper, instrumentation.CLI_MARK, "usagetrace.integrations.argparse.track")
        instrumentation.register_commands(package, _handlers(parser), "argparse")
        return wrapper

    return decorator
