"""A package's own CLI is a user of its API: successful runs are not errors, API calls are counted.

The package is installed for real (``pip install --target``) with a console
script, and run the way a person runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")

API = '''
    def load(n):
        return list(range(int(n)))

    def summarize(values):
        return {"n": len(load(len(values))), "total": sum(values)}

    def explode():
        raise ValueError("no")
'''

CLICK_CLI = '''
    import click
    from usagetrace.integrations.click import track
    from . import api

    @click.group()
    def cli():
        pass

    @cli.command()
    @click.argument("n")
    def stats(n):
        click.echo(api.summarize(api.load(n)))

    @cli.command()
    def fail():
        api.explode()

    track(cli, package="clidemo")

    def main():
        cli()
'''

ARGPARSE_CLI = '''
    import argparse
    from usagetrace.integrations.argparse import track
    from . import api

    parser = argparse.ArgumentParser(prog="clidemo")
    sub = parser.add_subparsers()

    def cmd_stats(args):
        print(api.summarize(api.load(args.n)))
        return 0

    def cmd_fail(args):
        api.explode()

    p = sub.add_parser("stats")
    p.add_argument("n")
    p.set_defaults(func=cmd_stats)
    sub.add_parser("fail").set_defaults(func=cmd_fail)

    @track(parser, package="clidemo")
    def main(argv=None):
        args = parser.parse_args(argv)
        return args.func(args)
'''

INIT = '''
    import os
    from . import api
    from .api import load, summarize

    import usagetrace
    usagetrace.instrument(__name__, dev_file=os.environ["DEV_FILE"])
'''


def _install(tmp_path, cli_source: str, with_metadata: bool) -> tuple[str, dict]:
    project = tmp_path / "project"
    pkg = project / "clidemo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(INIT))
    (pkg / "api.py").write_text(textwrap.dedent(API))
    (pkg / "cli.py").write_text(textwrap.dedent(cli_source))
    (pkg / "__main__.py").write_text("from .cli import main\nmain()\n")
    (project / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "clidemo"
        version = "1.2.3"

        [project.scripts]
        clidemo = "clidemo.cli:main"

        [tool.hatch.build.targets.wheel]
        packages = ["clidemo"]
    '''))
    site = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USAGETRACE_", "PYTEST_"))}
    env.pop("DO_NOT_TRACK", None)
    env.update(USAGETRACE_HOME=str(tmp_path / "home"), USAGETRACE_DETACHED_SEND="0", CLIDEMO_TELEMETRY="1",
               DEV_FILE=str(tmp_path / "dev.jsonl"), PYTHONDONTWRITEBYTECODE="1")
    if with_metadata:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(site), str(project)],
                       check=True, capture_output=True, timeout=300)
        env["PYTHONPATH"] = os.pathsep.join([str(site), SRC])
        return str(site / "bin" / "clidemo"), env
    env["PYTHONPATH"] = os.pathsep.join([str(project), SRC])
    return "", env


def _counts(tmp_path, env):
    """Deliver what the runs spooled into the development file, then tally it."""
    flush = subprocess.run([sys.executable, "-m", "usagetrace", "flush"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert flush.returncode == 0, flush.stderr
    from usagetrace.testing import flatten

    calls, errors, commands = {}, {}, []
    with open(tmp_path / "dev.jsonl") as fh:
        for line in fh:
            request = json.loads(line)
            if "resourceMetrics" in request:
                for p in flatten("metrics", request):
                    a = p["attributes"]
                    if p["metric"] == "usagetrace.calls":
                        key = (a["code.function.name"], a["usagetrace.outcome"])
                        calls[key] = calls.get(key, 0) + p["value"]
                    elif p["metric"] == "usagetrace.errors":
                        key = (a["code.function.name"], a["error.type"])
                        errors[key] = errors.get(key, 0) + p["value"]
            else:
                commands += [s for s in flatten("traces", request) if s["name"] == "usagetrace.command"]
    return calls, errors, commands


@pytest.mark.parametrize("cli_source", [CLICK_CLI, ARGPARSE_CLI], ids=["click", "argparse"])
@pytest.mark.parametrize("how", ["console-script", "python -m", "main() without metadata"])
def test_cli_runs_count_the_api_and_succeed(tmp_path, cli_source, how):
    """3 successful runs and 1 failing run: 0 errors for the successes, API calls counted, main not a usage."""
    script, env = _install(tmp_path, cli_source, with_metadata=how != "main() without metadata")
    if how == "console-script":
        runs = [[script, "stats", "3"]] * 3 + [[script, "fail"]]
    elif how == "python -m":
        runs = [[sys.executable, "-m", "clidemo", "stats", "3"]] * 3 + [[sys.executable, "-m", "clidemo", "fail"]]
    else:
        code = "import sys, clidemo.cli; sys.argv[1:] = {!r}; clidemo.cli.main()"
        runs = [[sys.executable, "-c", code.format(["stats", "3"])]] * 3 + \
               [[sys.executable, "-c", code.format(["fail"])]]
    for argv in runs:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        expected = 0 if "stats" in " ".join(argv) else 1
        assert proc.returncode == expected, proc.stderr
        if expected == 0:
            assert "'total': 3" in proc.stdout
    calls, errors, commands = _counts(tmp_path, env)
    assert calls[("clidemo.load", "ok")] == 3  # the command's own call; summarize's inner call is not a usage
    assert calls[("clidemo.summarize", "ok")] == 3
    assert calls[("clidemo.api.explode", "error")] == 1
    assert not [k for k in calls if k[0].startswith("clidemo.cli.")], calls  # main and the commands
    assert not [k for k in errors if "SystemExit" in k[1]], errors
    codes = sorted(s["attributes"]["process.exit.code"] for s in commands)
    assert codes == [0, 0, 0, 1]
