"""Record which click (or typer) command ran: masked command line, exit status, duration.

::

    import click
    from usagetrace.integrations.click import track

    @click.group()
    def cli(): ...

    track(cli, package="mycli")        # or: cli = track(typer_app, package="mycli")

Each run queues one ``usagetrace.command`` span with

* ``usagetrace.command.name``: the program and subcommand path, ``mycli run``;
* ``usagetrace.command.line``: option *names* the CLI declares are kept, every
  value and every positional argument is masked, ``mycli run --pipeline ***** --env *****``;
  an option the CLI does not declare is masked too (its name could be anything);
* ``process.exit.code`` and the duration.

Shell completion is not recorded. With consent off the command runs untouched
(no parsing, no clock). Needs click (``pip install 'usagetrace[click]'``) or typer.
"""

import sys

from . import available, require

# click is not imported here: a click CLI has imported it already, and typer (>= 0.22)
# ships its own copy, so importing click for a typer app (or while off) is pure cost.
if not (available("click") or available("typer")):
    require("click", "click", "click")  # raises ImportError naming the extra

# _cli (masking, the run's record) is imported once a run is recorded: a CLI with telemetry off
# never needs it.
from .._internal import instrumentation, log  # noqa: E402

__all__ = ["describe", "track"]

_MARK = "_usagetrace_tracked"


def _help_names(cmd) -> list:
    try:
        names = (cmd.context_settings or {}).get("help_option_names")
        return list(names) if names else ["--help"]
    except Exception:
        return ["--help"]


def _find_option(cmd, name: str):
    """Return (option or True for help, canonical name) when ``name`` is declared by ``cmd``."""
    for param in getattr(cmd, "params", ()) or ():
        # Duck-typed: typer ships its own copy of click, whose classes are not click's.
        if getattr(param, "param_type_name", None) == "option" and (
            name in (getattr(param, "opts", None) or ())
            or name in (getattr(param, "secondary_opts", None) or ())
        ):
            return param
    if name in _help_names(cmd):
        return True
    return None


def _takes_value(opt) -> int:
    """How many following tokens are this option's value (0 for flags)."""
    if opt is True or getattr(opt, "is_flag", False) or getattr(opt, "count", False):
        return 0
    nargs = getattr(opt, "nargs", 1)
    return nargs if isinstance(nargs, int) and nargs > 0 else 1


def _subcommand(cmd, token: str):
    commands = getattr(cmd, "commands", None)
    if not isinstance(commands, dict):
        return None
    sub = commands.get(token)
    get_command, context_class = getattr(cmd, "get_command", None), getattr(cmd, "context_class", None)
    if sub is None and callable(get_command) and context_class is not None:
        try:  # a lazily loaded subcommand; the command's own click flavour (click's or typer's copy)
            sub = get_command(context_class(cmd, resilient_parsing=True), token)
        except Exception:
            sub = None
    return sub


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def describe(cmd, args, prog: str) -> tuple[list, list]:
    """Return (command path, masked command line) for ``args`` run against ``cmd``."""
    from . import _cli

    path, line = [prog], [prog]
    current = cmd
    tokens = list(args)[: _cli.MAX_TOKENS]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not isinstance(token, str):
            line.append(_cli.MASK)
            continue
        if token == "--":
            line.append("--")
            line.extend(_cli.MASK for _ in tokens[i:])
            break
        if token.startswith("-") and len(token) > 1 and not _looks_numeric(token):
            name, eq, _ = token.partition("=")
            opt = _find_option(current, name)
            if opt is None and not token.startswith("--") and len(token) > 2:
                short = _find_option(current, token[:2])
                if short is not None and _takes_value(short):
                    line.extend([_cli.safe_option(token[:2]), _cli.MASK])  # -pVALUE
                    continue
                flags = [_find_option(current, "-" + ch) for ch in token[1:]]
                if all(f is not None and not _takes_value(f) for f in flags):
                    line.append(_cli.safe_option(token))  # -vvv, -qv
                    continue
            if opt is None:
                line.append(_cli.MASK)
                continue
            line.append(_cli.safe_option(name))
            if eq:
                line.append(_cli.MASK)
                continue
            n = _takes_value(opt)
            for _ in range(n):
                if i < len(tokens):
                    line.append(_cli.MASK)
                    i += 1
            continue
        sub = _subcommand(current, token)
        name = _cli.safe_name(getattr(sub, "name", None) or token) if sub is not None else None
        if sub is not None and name is not None:
            path.append(name)
            line.append(name)
            current = sub
        else:
            line.append(_cli.MASK)
    if len(args) > _cli.MAX_TOKENS:
        line.append("…")
    return path, line


def _callbacks(cmd, limit: int = 1000) -> list:
    """Every command callback in a click command tree (lazily loaded commands are not loaded)."""
    out, pending, seen = [], [cmd], set()
    while pending and len(seen) < limit:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        callback = getattr(current, "callback", None)
        if callback is not None:
            out.append(callback)
        commands = getattr(current, "commands", None)
        if isinstance(commands, dict):
            pending.extend(commands.values())
    return out


def _click_command(cli):
    click = sys.modules.get("click")  # a click command means click is imported: never import it here
    if (click is not None and isinstance(cli, click.Command)) or (
        callable(getattr(cli, "main", None)) and hasattr(cli, "params")
    ):
        return cli
    typer = sys.modules.get("typer")  # likewise: typer apps are click commands underneath
    if typer is not None and isinstance(cli, typer.Typer):
        import typer.main

        return typer.main.get_command(cli)
    raise TypeError(
        f"usagetrace.integrations.click.track() needs a click command or a typer app, not {type(cli).__name__}"
    )


def track(
    cli,
    *,
    package: str,
    name: "str | None" = None,
    endpoint: "str | None" = None,
    consent: "str | None" = None,
    **options,
):
    """Record every run of ``cli`` (a click command/group, or a typer app) for ``package``; return the click command.

    ``name`` is the program name shown first (default: ``package``). When the
    package has not called ``usagetrace.instrument()``, pass ``endpoint``/``consent``
    (and any other ``instrument()`` option) to create a handle that wraps no function.
    A typer app is converted once with ``typer.main.get_command``: use the
    returned command as the entry point. Calling ``track`` twice is harmless.
    """
    cmd = _click_command(cli)
    if getattr(cmd, _MARK, False):
        return cmd
    instrumentation.handle_for(package, instrumentation.integration_setup(endpoint, consent, **options))
    original = cmd.main

    def main(args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        run = None
        try:
            if instrumentation.recorder(package) is not None:  # else off: the command runs untouched
                from . import _cli

                if not _cli.completing():
                    if args is None:
                        import sys

                        args = sys.argv[1:]
                    elif not isinstance(args, (list, tuple)):
                        args = list(args)
                    path, line = describe(cmd, args, _cli.safe_name(name or package) or "cli")
                    run = _cli.Run(package, path, line)
        except Exception:
            log.internal_error("integrations.click.start")
        if run is None:
            return original(args, prog_name, complete_var, standalone_mode, **extra)
        scope = _cli.enter(package)
        try:
            result = original(args, prog_name, complete_var, standalone_mode, **extra)
        except SystemExit as exc:
            run.finish(_cli.exit_code(exc.code))
            raise
        except KeyboardInterrupt:
            run.finish(130)
            raise
        except BaseException as exc:
            # click's (or typer's vendored click's) Exit and ClickException carry exit_code;
            # Abort exits with 1; anything else is a crash of the command (status 1).
            code = getattr(exc, "exit_code", None)
            if isinstance(code, int):
                run.finish(_cli.exit_code(code))
            elif type(exc).__name__ == "Abort":
                run.finish(1)
            else:
                run.finish(1, exc)
            raise
        finally:
            _cli.leave(scope)
        run.finish(0)
        return result

    main.__doc__ = original.__doc__
    cmd.main = main
    setattr(cmd, _MARK, True)
    instrumentation.register_commands(package, _callbacks(cmd), "click")
    return cmd
