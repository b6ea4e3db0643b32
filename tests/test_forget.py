"""Forgetting on withdrawal: `usagetrace disable` deletes the package's spool and install id."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from usagetrace._internal import consent, delivery, paths, resource
from usagetrace._internal.forget import forget
from usagetrace.testing import OTLPReceiver

from .conftest import EXAMPLES, child_env


def _spool_file(package: str, n: int) -> str:
    path = os.path.join(paths.spool_dir(), f"{1000 + n}-{os.getpid()}-{package}.json")
    paths.atomic_write(path, "{}")
    return path


def test_forget_deletes_only_that_packages_spool_and_id():
    """forget() deletes the package's spooled batches and install id; other packages keep theirs."""
    mine = [_spool_file("mypkg", i) for i in range(3)]
    other = _spool_file("otherpkg", 9)
    my_id, _ = resource.install_id("mypkg")
    other_id, _ = resource.install_id("otherpkg")
    report = forget("mypkg")
    assert report == {"spooled_batches": 3, "aggregated_runs": 0, "install_id": my_id, "local_copies": 0, "errors": []}
    assert not any(os.path.exists(p) for p in mine) and os.path.exists(other)
    assert resource.stored_install_id("mypkg") is None and resource.stored_install_id("otherpkg") == other_id
    assert forget("mypkg") == {"spooled_batches": 0, "aggregated_runs": 0, "install_id": None, "local_copies": 0,
                              "errors": []}


def test_disable_forgets_and_a_reenable_sends_under_a_new_id(tmp_path):
    """`usagetrace disable` deletes pending data and the id (and says which); after `enable` a new id is used."""
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = child_env({"USAGETRACE_HOME": str(home), "PYTHONPATH": EXAMPLES, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                         "USAGETRACE_DETACHED_SEND": "0", "USAGETRACE_EXPORT_INTERVAL": "3600"})

        def run(code):
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            return proc

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "usagetrace", *args], env=env, capture_output=True, text=True,
                                  timeout=120)

        assert cli("enable", "tinystats").returncode == 0
        run("import tinystats\ntinystats.mean([1])\nfrom usagetrace._internal import instrumentation\n"
            "assert instrumentation.get('tinystats').flush(10)\n")
        [first_id] = {p["resource"]["usagetrace.install.id"] for p in rx.points()}
        run("import tinystats\ntinystats.mean([2])\n")  # spooled at exit, not yet sent
        assert len(list((home / "cache" / "spool").glob("*-tinystats.json"))) == 1
        out = cli("disable", "tinystats")
        assert out.returncode == 0
        assert f"Deleted for tinystats: 1 spooled batch(es) not yet sent; install id {first_id}" in out.stdout
        assert list((home / "cache" / "spool").glob("*.json")) == []
        assert not (home / "data" / "ids" / "tinystats.id").exists()
        assert cli("enable", "tinystats").returncode == 0
        assert json.loads(cli("flush", "--json").stdout)["delivered"] == 0  # nothing from before was kept
        run("import tinystats\ntinystats.mean([3])\nfrom usagetrace._internal import instrumentation\n"
            "assert instrumentation.get('tinystats').flush(10)\n")
    ids = {p["resource"]["usagetrace.install.id"] for p in rx.points()}
    assert len(ids) == 2 and first_id in ids
    assert rx.calls("tinystats.mean") == 2  # the spooled call of the second run was never sent


def test_a_running_process_reenabled_after_withdrawal_uses_a_new_id(packages, monkeypatch, no_ci):
    """In one process: granted, withdrawn (disable), granted again: the id after differs from the id before."""
    from usagetrace._internal import cli

    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    with OTLPReceiver() as rx:
        consent.write_choice("fgtpkg", True)
        mod = packages.load("fgtpkg", {"__init__.py": f"def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__, endpoint={rx.endpoint!r})\n"})
        mod.f()
        assert mod.H.flush(5)
        assert cli.main(["disable", "fgtpkg"]) == 0
        delivery.get()._refresh_consent()
        assert not mod.H.enabled
        assert cli.main(["enable", "fgtpkg"]) == 0
        delivery.get()._refresh_consent()
        assert mod.H.enabled
        mod.f()
        assert mod.H.flush(5)
    ids = [p["resource"]["usagetrace.install.id"] for p in rx.points("usagetrace.calls")]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_disable_deletes_every_local_copy(capsys):
    """Set-aside broken stores, the development file (and its rotation) and their report caches go; others stay."""
    from usagetrace._internal import aggregate, cli, forget as forget_module
    from usagetrace._internal.analytics.duckdb_engine import default_cache_path

    consent.write_choice("mypkg", True)
    store = aggregate.store_path("mypkg")
    broken = [f"{store}.broken-20260101T000000-{n}" for n in (1, 2)]
    dev, rotated = forget_module.dev_files("mypkg")
    caches = [default_cache_path(dev), default_cache_path(os.path.dirname(dev))]
    other_dev = forget_module.dev_files("otherpkg")[0]
    for path in [*broken, dev, rotated, *caches, other_dev, aggregate.store_path("otherpkg") + ".broken-x"]:
        paths.atomic_write(path, "{}")
    assert cli.main(["disable", "mypkg"]) == 0
    assert "6 other local file(s)" in capsys.readouterr().out
    assert not any(os.path.exists(p) for p in [*broken, dev, rotated, *caches])
    assert os.path.exists(other_dev) and os.path.exists(aggregate.store_path("otherpkg") + ".broken-x")
