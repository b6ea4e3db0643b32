"""CLI integrations: click, typer and argparse runs recorded with masked command lines."""

from __future__ import annotations

import argparse

import click
import pytest
import typer
from click.testing import CliRunner

import usagetrace
from usagetrace.integrations import argparse as ut_argparse
from usagetrace.integrations import click as ut_click
from usagetrace.testing import capture


def make_click_cli():
    @click.group()
    @click.option("-v", "--verbose", count=True)
    def cli(verbose):
        """Demo."""

    @cli.command()
    @click.option("--pipeline", "-p")
    @click.option("--env")
    @click.option("--dry-run/--no-dry-run", default=False)
    @click.argument("target", required=False)
    def run(pipeline, env, dry_run, target):
        click.echo(f"ran {pipeline}")

    @cli.command()
    def fail():
        raise click.ClickException("boom /home/ana/secret")

    @cli.command()
    def crash():
        raise ValueError("customer-9")

    return cli


def test_click_run_is_recorded_with_masked_values(fresh_package):
    """A click subcommand run exports its path, option names with masked values, exit status 0 and a duration."""
    pkg = fresh_package("click")
    cli = make_click_cli()
    ut_click.track(cli, package=pkg, name="mycli")
    with capture(pkg) as cap:
        result = CliRunner().invoke(
            cli, ["-vv", "run", "--pipeline=ds", "--env", "qa-secret-env", "secret.csv", "--dry-run"]
        )
    assert result.exit_code == 0 and "ran ds" in result.output
    (span,) = cap.spans("usagetrace.command")
    attrs = span["attributes"]
    assert attrs["usagetrace.command.name"] == "mycli run"
    assert attrs["usagetrace.command.line"] == "mycli -vv run --pipeline ***** --env ***** ***** --dry-run"
    assert attrs["process.exit.code"] == 0
    assert span["end"] >= span["start"]
    raw = cap.raw_bytes()
    assert b"secret.csv" not in raw and b"qa-secret-env" not in raw and b"=ds" not in raw


def test_click_exit_codes_and_errors(fresh_package):
    """Usage errors, ClickExceptions and crashes record their exit codes; messages never leave."""
    pkg = fresh_package("click")
    cli = make_click_cli()
    ut_click.track(cli, package=pkg, name="mycli")
    runner = CliRunner()
    with capture(pkg) as cap:
        assert runner.invoke(cli, ["run", "--nope=/home/ana"]).exit_code == 2
        assert runner.invoke(cli, ["fail"]).exit_code == 1
        assert runner.invoke(cli, ["crash"]).exit_code == 1
        assert runner.invoke(cli, ["--help"]).exit_code == 0
    spans = cap.spans("usagetrace.command")
    got = [(s["attributes"]["usagetrace.command.line"], s["attributes"]["process.exit.code"]) for s in spans]
    assert got == [("mycli run *****", 2), ("mycli fail", 1), ("mycli crash", 1), ("mycli --help", 0)]
    assert spans[2]["attributes"]["error.type"] == "ValueError"
    raw = cap.raw_bytes()
    assert b"/home/ana" not in raw and b"customer-9" not in raw and b"boom" not in raw


def test_typer_app_works_through_click(fresh_package):
    """A typer app tracked with the click integration records its subcommand and masks option values."""
    pkg = fresh_package("typer")
    app = typer.Typer()

    @app.command()
    def generate(env: str = typer.Option("dev"), count: int = 1):
        typer.echo(f"gen {env} {count}")

    @app.command()
    def other():
        pass

    cli = ut_click.track(app, package=pkg, name="lhp")
    with capture(pkg) as cap:
        result = CliRunner().invoke(cli, ["generate", "--env", "prod", "--count", "3"])
    assert result.exit_code == 0, result.output
    (span,) = cap.spans("usagetrace.command")
    assert span["attributes"]["usagetrace.command.name"] == "lhp generate"
    assert span["attributes"]["usagetrace.command.line"] == "lhp generate --env ***** --count *****"
    assert b"prod" not in cap.raw_bytes()


def test_click_records_nothing_when_consent_is_off(fresh_package):
    """With consent off the tracked CLI still runs normally and nothing is queued."""
    pkg = fresh_package("click")
    handle = usagetrace.instrument(pkg, consent="opt-in")
    cli = make_click_cli()
    ut_click.track(cli, package=pkg)
    result = CliRunner().invoke(cli, ["run", "--pipeline", "x"])
    assert result.exit_code == 0 and "ran x" in result.output
    assert handle.recorder is None


def test_click_track_without_instrument_creates_a_handle_that_wraps_nothing(fresh_package):
    """track(..., consent=...) on a package that never called instrument() creates a handle wrapping no function."""
    pkg = fresh_package("click")
    cli = make_click_cli()
    ut_click.track(cli, package=pkg, consent="opt-in", endpoint="http://127.0.0.1:9")
    handle = usagetrace._internal.instrumentation.get(pkg)
    assert handle is not None and handle.include == (usagetrace._internal.instrumentation.NOTHING,)
    assert ut_click.track(cli, package=pkg) is cli  # idempotent


def make_parser():
    parser = argparse.ArgumentParser(prog="mycli")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    subs = parser.add_subparsers(dest="cmd")
    run = subs.add_parser("run")
    run.add_argument("--pipeline", "-p")
    run.add_argument("--env")
    run.add_argument("--tags", nargs="*")
    run.add_argument("target", nargs="?")
    return parser


def test_argparse_run_is_recorded_with_masked_values(fresh_package):
    """An argparse main records its subcommand, masked line and the returned exit status."""
    pkg = fresh_package("argp")
    parser = make_parser()

    @ut_argparse.track(parser, package=pkg, name="mycli")
    def main(argv=None):
        args = parser.parse_args(argv)
        return 3 if args.env == "test" else 0

    with capture(pkg) as cap:
        assert main(["-v", "run", "--pipeline=ds", "--env", "test", "--tags", "a", "b", "data.csv"]) == 3
        with pytest.raises(SystemExit):
            main(["run", "--unknown", "/home/ana"])
    spans = cap.spans("usagetrace.command")
    got = [
        (
            s["attributes"]["usagetrace.command.name"],
            s["attributes"]["usagetrace.command.line"],
            s["attributes"]["process.exit.code"],
        )
        for s in spans
    ]
    assert got == [
        ("mycli run", "mycli -v run --pipeline ***** --env ***** --tags ***** ***** *****", 3),
        ("mycli run", "mycli run ***** *****", 2),
    ]
    raw = cap.raw_bytes()
    assert b"data.csv" not in raw and b"/home/ana" not in raw


def test_argparse_exception_is_exit_code_1_and_consent_off_records_nothing(fresh_package):
    """An exception in main records exit status 1 with its type; with consent off nothing is queued."""
    pkg = fresh_package("argp")
    parser = make_parser()

    @ut_argparse.track(parser, package=pkg)
    def main(argv=None):
        parser.parse_args(argv)
        raise OSError("disk /home/ana full")

    with capture(pkg) as cap:
        with pytest.raises(OSError):
            main(["run"])
    (span,) = cap.spans("usagetrace.command")
    assert span["attributes"]["process.exit.code"] == 1
    assert span["attributes"]["error.type"] == "OSError"
    assert b"/home/ana" not in cap.raw_bytes()

    off = fresh_package("argp")
    handle = usagetrace.instrument(off, consent="opt-out")

    @ut_argparse.track(make_parser(), package=off)
    def main2(argv=None):
        return 0

    assert main2(["run"]) == 0
    assert handle.recorder is None


def test_missing_framework_names_the_extra(monkeypatch):
    """Importing an integration whose framework is missing raises ImportError naming the pip extra."""
    import sys

    from usagetrace import integrations

    monkeypatch.setitem(sys.modules, "nosuchframework_xyz", None)
    with pytest.raises(ImportError, match=r"pip install 'usagetrace\[click\]'"):
        integrations.require("nosuchframework_xyz", "click", "click")
    monkeypatch.setitem(sys.modules, "click", None)
    monkeypatch.setitem(sys.modules, "typer", None)  # typer ships its own click: either one will do
    monkeypatch.delitem(sys.modules, "usagetrace.integrations.click", raising=False)
    with pytest.raises(ImportError, match=r"usagetrace\[click\]"):
        import usagetrace.integrations.click  # noqa: F401
