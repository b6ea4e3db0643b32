"""The usagetrace command: status, choices, ids, preview, inventory, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from usagetrace._internal import cli, consent, paths

from .conftest import EXAMPLES


def run_cli(*args, env=None):
    full = dict(os.environ, PYTHONPATH=EXAMPLES)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "usagetrace", *args], capture_output=True, text=True, env=full, timeout=120)


def _subcommands(parser) -> dict:
    """The parser's subcommands, {name: subparser}, read from the parser itself."""
    import argparse

    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_everywhere():
    """--help works for the command and for every subcommand the parser has (new ones included)."""
    top = run_cli("--help")
    assert top.returncode == 0
    subcommands = _subcommands(cli.build_parser())
    assert {"status", "preview", "inventory", "report"} <= set(subcommands)
    for sub in subcommands:
        assert sub in top.stdout
        result = run_cli(sub, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: usagetrace {sub}"), (sub, result.stderr)
        assert result.stderr == "", sub


def test_enable_disable_status_json(capsys):
    """enable/disable store the choice and status reports it with the deciding source."""
    assert cli.main(["disable", "tinystats"]) == 0
    assert cli.main(["status", "tinystats", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{"):])
    [row] = data["packages"]
    assert row["enabled"] is False and row["state"] == "denied"
    assert row["decided_by"] == f"user:{paths.consent_file()}"
    assert cli.main(["enable", "--all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["granted"] is True
    assert consent.read_choices(paths.consent_file()) == {"*": True}


def test_status_explains_global_switch(monkeypatch, capsys):
    """status says when DO_NOT_TRACK turns everything off."""
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    cli.main(["enable", "tinystats"])
    capsys.readouterr()
    cli.main(["status", "tinystats"])
    out = capsys.readouterr().out
    assert "DO_NOT_TRACK is set" in out and "env:DO_NOT_TRACK" in out


def test_bad_usage_exits_2():
    """A missing or invalid package name is a usage error (exit 2) with a clear message."""
    result = run_cli("enable")
    assert result.returncode == 2 and "required" in result.stderr
    result = run_cli("reset-id", "not a package!")
    assert result.returncode == 2 and "not a Python package name" in result.stderr


def test_unwritable_consent_file_exits_1(tmp_path):
    """When the consent file cannot be written, the command says so and exits 1."""
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "consent.toml").mkdir()  # a directory where the file should be
    result = run_cli("disable", "tinystats", env={"USAGETRACE_HOME": str(home)})
    assert result.returncode == 1 and "cannot write" in result.stderr


def test_reset_id_changes_the_install_id(capsys):
    """reset-id stores a new random id that later runs use."""
    from usagetrace._internal import resource

    first, _ = resource.install_id("tinystats")
    assert cli.main(["reset-id", "tinystats", "--json"]) == 0
    new = json.loads(capsys.readouterr().out)["install_id"]
    assert new != first and resource.install_id("tinystats") == (new, "stored")


def test_preview_prints_the_payload_and_sends_nothing(tmp_path):
    """preview runs the command with telemetry captured locally and prints exactly what would be sent."""
    from usagetrace.testing import OTLPReceiver

    with OTLPReceiver() as rx:
        result = run_cli(
            "preview", "tinystats", "--json", "--", sys.executable, "-c",
            "import tinystats; tinystats.mean([1, 2]); print('host output')",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "DO_NOT_TRACK": "1"},
        )
        assert rx.connections == 0
    assert result.returncode == 0, result.stderr
    assert "host output" in result.stdout
    data = json.loads(result.stdout[result.stdout.index("{"):])
    names = [s["name"] for r in data["requests"] for rs in r.get("resourceSpans", [])
             for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert names == ["tinystats.mean"]
    assert not os.path.exists(os.path.join(paths.ids_dir(), "tinystats.id"))  # no id left behind


def test_preview_human_output():
    """preview's default output shows the resource, the spans and the counters."""
    result = run_cli("preview", "tinystats", "--", sys.executable, "-c", "import tinystats; tinystats.median([1])")
    assert result.returncode == 0, result.stderr
    assert "Resource (sent with everything):" in result.stdout
    assert "tinystats.median" in result.stdout and "usagetrace.calls" in result.stdout


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_preview_exits_with_the_commands_status(json_flag):
    """preview passes the command's exit status through, in text and JSON mode."""
    result = run_cli("preview", "tinystats", *json_flag, "--", sys.executable, "-c",
                     "import tinystats, sys; tinystats.mean([1]); sys.exit(3)")
    assert result.returncode == 3, result.stderr
    assert "tinystats.mean" in result.stdout
    assert run_cli("preview", "tinystats", "--", sys.executable, "-c", "pass").returncode == 0
    missing = run_cli("preview", "tinystats", "--", "no-such-command-usagetrace")
    assert missing.returncode == 127 and "command not found" in missing.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_preview_reports_a_signal_like_a_shell():
    """A command killed by signal N gives 128 + N, as shells report it."""
    import signal

    result = run_cli("preview", "tinystats", "--", sys.executable, "-c",
                     "import os, signal, tinystats; tinystats.mean([1]); os.kill(os.getpid(), signal.SIGTERM)")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr


def test_preview_output_order_with_stdout_and_stderr_in_one_file(tmp_path):
    """Piped to one file: the command's output, then the header, then what would have been sent."""
    path = tmp_path / "both.txt"
    code = ("import sys, tinystats; tinystats.mean([1]); print('host stdout', flush=True); "
            "print('host stderr', file=sys.stderr)")
    with open(path, "w") as fh:
        result = subprocess.run(
            [sys.executable, "-m", "usagetrace", "preview", "tinystats", "--", sys.executable, "-c", code],
            stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=EXAMPLES), timeout=120,
        )
    assert result.returncode == 0
    text = path.read_text()
    marks = [text.index(m) for m in ("host stdout", "host stderr", "--- what tinystats would have sent",
                                     "Resource (sent with everything):", "tinystats.mean", "OTLP request(s)")]
    assert marks == sorted(marks), text


def test_inventory_json_and_markdown(capsys):
    """inventory prints the allowlist as Markdown or JSON."""
    assert cli.main(["inventory", "tinystats"]) == 0
    assert "| `usagetrace.install.id` | resource |" in capsys.readouterr().out
    assert cli.main(["inventory", "tinystats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["key"] for row in data["attributes"]} >= {"service.name", "usagetrace.calls"}


def test_status_finds_packages_seen_and_installed(capsys):
    """status lists packages from the consent file and from installed distributions depending on usagetrace."""
    consent.write_choice("somepkg", True)
    assert "somepkg" in cli.known_packages()


def test_report_without_arguments_is_a_usage_error():
    """`usagetrace report` with no source fails with a usage message instead of a traceback."""
    result = run_cli("report")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("answer,expected", [("y\n", True), ("n\n", False)])
def test_ask_consent_stores_the_answer(monkeypatch, answer, expected, no_ci):
    """ask_consent asks on a terminal, stores the answer and never asks again."""
    import io

    from usagetrace._internal import prompt

    class TTY(io.StringIO):
        def isatty(self):
            return True

    err = TTY()
    monkeypatch.setattr(sys, "stdin", TTY(answer))
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(prompt, "_read_answer", lambda timeout: sys.stdin.readline())
    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    state = prompt.ask("askpkg")
    assert state.enabled is expected and "Share anonymous usage statistics of askpkg?" in err.getvalue()
    assert consent.read_choices(paths.consent_file()) == {"askpkg": expected}
    err.truncate(0)
    again = prompt.ask("askpkg")
    assert again.enabled is expected and err.getvalue().strip("\x00") == ""


def test_ask_consent_never_prompts_without_a_terminal(monkeypatch, no_ci):
    """Without a terminal (CI jobs, notebooks, pipes) nothing is asked and consent stays unset."""
    import usagetrace

    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    state = usagetrace.ask_consent("askpkg2", timeout=0.1)
    assert state.state == "unset" and consent.read_choices(paths.consent_file()) is None


def test_inventory_callables_lists_counted_and_skipped_with_reasons(packages, tmp_path, monkeypatch):
    """`inventory PKG --callables` imports the package in a child process and gives the account, with reasons."""
    import json
    import os
    import subprocess
    import sys

    packages.write("inv_callables_pkg", {"__init__.py": '''
        import warnings

        def default_key(x):
            return x

        def cached(f, key=default_key):
            return f

        def old():
            warnings.warn("old", DeprecationWarning, stacklevel=2)

        def fine(x):
            return x
    '''})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "pkgs"), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run([sys.executable, "-m", "usagetrace", "inventory", "inv_callables_pkg", "--callables",
                           "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    account = json.loads(proc.stdout)["callables"]
    assert account["wrapped"] == ["inv_callables_pkg.cached", "inv_callables_pkg.fine"]
    assert "reference" in account["skipped"]["inv_callables_pkg.default_key"]
    assert "stack" in account["skipped"]["inv_callables_pkg.old"]
    home = os.environ["USAGETRACE_HOME"]
    assert not os.path.exists(os.path.join(home, "data", "ids"))  # nothing of the person's was written
