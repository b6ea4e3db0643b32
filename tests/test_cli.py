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
    assert {"status", "preview", "inventory", "report", "history"} <= set(subcommands)
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
    out = json.loads(capsys.readouterr().out)
    assert out["granted"] is True and out["kept_denials"] == ["tinystats"]
    assert consent.read_choices(paths.consent_file()) == {"*": True, "tinystats": False}


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
    """When the consent file cannot be written (its directory is a file), the command says so and exits 1."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config").write_text("a file where the config directory should be")
    result = run_cli("disable", "tinystats", env={"USAGETRACE_HOME": str(home)})
    assert result.returncode == 1 and "cannot write" in result.stderr


def test_a_directory_instead_of_the_consent_file_is_refused(tmp_path):
    """A directory where consent.toml should be: refused with what to do, exit 1, nothing changed."""
    home = tmp_path / "home"
    (home / "config" / "consent.toml").mkdir(parents=True)
    result = run_cli("disable", "tinystats", env={"USAGETRACE_HOME": str(home)})
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr and "is a directory" in result.stderr
    assert "Remove that directory" in result.stderr


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
    err.seek(0)
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


# ------------------------------------------------------------ issue 12: what was observed

OPTPKG = """
def f():
    return 1

import usagetrace
H = usagetrace.instrument(__name__, consent="opt-out")
"""


def _wait_for_empty_spool(home, timeout=60.0) -> bool:
    """True once the spool holds no file and no sender holds its lock (bounded)."""
    import time

    spool = home / "cache" / "spool"
    deadline = time.monotonic() + timeout
    while True:
        if not spool.exists() or not [p for p in spool.iterdir() if p.suffix == ".json"]:
            from usagetrace._internal import paths

            try:  # the spool lock is an flock (its file stays): free once no sender holds it
                with paths.locked(str(spool / ".lock"), timeout=0.0):
                    return True
            except paths.LockTimeout:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_what_was_observed_sends_nothing_after_the_denial(tmp_path):
    """Issue 12's scenario: notice on a terminal, disable, a hand-edited bad line: 0 bytes; `enable otherpkg`
    refuses and keeps the denial; status names the file and the line."""
    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env, run_on_terminal

    pkgs = tmp_path / "pkgs"
    (pkgs / "optpkg").mkdir(parents=True)
    (pkgs / "optpkg" / "__init__.py").write_text(OPTPKG)
    home = tmp_path / "home"
    consent_file = home / "config" / "consent.toml"
    with OTLPReceiver() as rx:
        env = {"USAGETRACE_HOME": str(home), "PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
               "USAGETRACE_DETACHED_SEND": "1", "USAGETRACE_EXPORT_INTERVAL": "0.2"}

        def cli_run(*args):
            return subprocess.run([sys.executable, "-m", "usagetrace", *args], capture_output=True, text=True,
                                  env=child_env(env), timeout=120)

        # 1. First run on a terminal: the notice is shown, then the opt-out package sends (a detached sender).
        proc, terminal = run_on_terminal("import optpkg\noptpkg.f()\nprint('wrapped' if __import__('usagetrace.testing', fromlist=['x']).is_wrapped(optpkg.f) else 'function')\n", env)
        assert proc.returncode == 0 and proc.stdout.strip() == "wrapped"
        assert "optpkg collects anonymous usage statistics" in terminal
        assert rx.wait_for(lambda r: r.calls("optpkg.f") == 1, timeout=60)
        assert _wait_for_empty_spool(home)

        # 2. The person says no.
        disabled = cli_run("disable", "optpkg")
        assert disabled.returncode == 0, disabled.stderr
        sent = rx.connections

        # 3. Later they hand-edit the file and leave one bad line.
        with open(consent_file, "a") as fh:
            fh.write("numpy = maybe\n")
        bad_line = consent_file.read_text().splitlines().index("numpy = maybe") + 1
        before = consent_file.read_bytes()

        # 4. The next run: not wrapped, nothing spooled, nothing sent, now or by a flush.
        proc, terminal = run_on_terminal(
            "import time, optpkg\nfor _ in range(5): optpkg.f()\ntime.sleep(0.5)\nprint('wrapped' if __import__('usagetrace.testing', fromlist=['x']).is_wrapped(optpkg.f) else 'function')\n", env)
        assert proc.returncode == 0 and proc.stdout.strip() == "function"
        assert "collects anonymous usage" not in terminal
        assert _wait_for_empty_spool(home, timeout=0.0)
        flushed = cli_run("flush")
        assert flushed.returncode == 0 and "Nothing was waiting" in flushed.stdout

        # 5. `enable otherpkg` refuses, exit 1, the file (and the denial in it) unchanged.
        enabled = cli_run("enable", "otherpkg")
        assert enabled.returncode == 1
        assert f"{consent_file}, line {bad_line}" in enabled.stderr and "nothing was changed" in enabled.stderr
        assert consent_file.read_bytes() == before and "optpkg = false" in before.decode()

        # 6. status names the broken file and line and says what to do; optpkg is off.
        status = cli_run("status", "optpkg")
        assert status.returncode == 0
        assert f"PROBLEM: {consent_file}, line {bad_line}:" in status.stdout
        assert "To fix it:" in status.stdout and "optpkg: off" in status.stdout
        assert rx.connections == sent  # 0 bytes at every step after the denial


def test_status_is_true_after_a_one_second_run(tmp_path):
    """After a short opt-out run that sent data, status knows the policy, the endpoint and the delivery."""
    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env, run_on_terminal

    pkgs = tmp_path / "pkgs"
    (pkgs / "optpkg").mkdir(parents=True)
    (pkgs / "optpkg" / "__init__.py").write_text(OPTPKG)
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = {"USAGETRACE_HOME": str(home), "PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
               "USAGETRACE_DETACHED_SEND": "1"}  # the default 5 s interval: this run is over long before it
        proc, _ = run_on_terminal("import optpkg\noptpkg.f()\n", env)
        assert proc.returncode == 0
        assert rx.wait_for(lambda r: r.calls("optpkg.f") == 1, timeout=60)
        assert _wait_for_empty_spool(home)
        status = subprocess.run([sys.executable, "-m", "usagetrace", "status", "optpkg", "--json"],
                                capture_output=True, text=True, env=child_env(env), timeout=60)
    [row] = json.loads(status.stdout)["packages"]
    assert row["policy"] == "opt-out" and row["enabled"] is True
    assert row["endpoint"] == row["last_run_target"] == f"http/protobuf {rx.endpoint}/v1/traces"
    assert row["ran_with_telemetry_on"] is True and row["last_on"]
    assert row["last_delivered"]["endpoint"] == rx.endpoint and row["receipts"] == len(rx.requests)


def test_status_tells_never_ran_from_off(capsys):
    """A package that never ran with telemetry on says so; one that did and is now off says when it last did."""
    from usagetrace._internal import state

    consent.write_choice("neverpkg", False)
    state.remember_package("wasonpkg", {"policy": "opt-in", "ci": "off", "endpoint": None, "consent_version": None})
    consent.write_choice("wasonpkg", False)
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    never = out[out.index("neverpkg: off"):]
    assert "ran with telemetry on: never" in never.split("\n\n")[0]
    assert "policy:         unknown" in never.split("\n\n")[0]
    was = out[out.index("wasonpkg: off"):]
    assert "ran with telemetry on: last " in was.split("\n\n")[0] and "policy:         opt-in" in was


# -------------------------------------------------------------- choices: concurrent writers

WRITER = """
import os, sys, time
from usagetrace._internal import cli

worker, go = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
for j in range(12):
    name = f"w{worker}p{j}"
    steps = (["enable", name], ["disable", name]) if j % 2 else (["disable", name], ["enable", name])
    for step in steps:
        assert cli.main([*step, "--json"]) == 0
"""


def test_concurrent_enable_disable_from_8_processes_lose_no_entry(tmp_path):
    """8 processes enabling and disabling at once: every entry and the hand-written comment survive."""
    from .conftest import child_env

    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "consent.toml").write_text("# written by hand: keep me\n[consent]\nkeep = false\n")
    go = tmp_path / "go"
    env = child_env({"USAGETRACE_HOME": str(home)})
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(i), str(go)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    go.write_text("")
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    text = (home / "config" / "consent.toml").read_text()
    assert text.startswith("# written by hand: keep me\n")
    expected = {"keep": False, **{f"w{i}p{j}": j % 2 == 0 for i in range(8) for j in range(12)}}
    assert consent.read_choices(str(home / "config" / "consent.toml")) == expected


# -------------------------------------------------------------------------- flush counts


def test_flush_says_what_happened_to_each_batch(tmp_path):
    """flush counts delivered, withdrawn, expired, rejected and kept batches; none is called delivered unless it was."""
    import time

    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env

    home = tmp_path / "home"
    spool = home / "cache" / "spool"
    with OTLPReceiver(status=503) as rx:
        env = child_env({"USAGETRACE_HOME": str(home), "PYTHONPATH": EXAMPLES, "TINYSTATS_TELEMETRY": "1",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "USAGETRACE_DETACHED_SEND": "0",
                         "USAGETRACE_EXPORT_INTERVAL": "3600"})

        def spool_one():
            proc = subprocess.run([sys.executable, "-c", "import tinystats; tinystats.mean([1])"], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr

        def flush(**extra):
            return subprocess.run([sys.executable, "-m", "usagetrace", "flush"], env={**env, **extra},
                                  capture_output=True, text=True, timeout=120)

        for _ in range(3):
            spool_one()
        oldest = sorted(spool.glob("*.json"))[0]
        eight_days_ago = time.time() - 8 * 86400
        os.utime(oldest, (eight_days_ago, eight_days_ago))
        result = flush()
        assert result.returncode == 1
        assert "Delivered 0 spooled batch(es)" in result.stdout
        assert "1 deleted unsent: older than 7 days" in result.stdout
        assert "2 kept for a later attempt" in result.stdout
        rx.status = 200
        result = flush()
        assert result.returncode == 0 and "Delivered 2 spooled batch(es) (4 request(s) accepted)" in result.stdout
        assert rx.calls("tinystats.mean") == 2

        spool_one()
        result = flush(TINYSTATS_TELEMETRY="0")  # withdrawn before the sender ran
        assert "Delivered 0 spooled batch(es)" in result.stdout
        assert "1 deleted unsent: consent was withdrawn" in result.stdout
        assert rx.calls("tinystats.mean") == 2

        rx.status = 400
        spool_one()
        result = flush()
        assert "1 deleted: the collector rejected them" in result.stdout
        assert list(spool.glob("*.json")) == []
        assert flush().stdout.strip() == "Nothing was waiting in the spool."
