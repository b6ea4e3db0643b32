"""``usagetrace report`` entry point: formats, output file, and clear errors."""

from __future__ import annotations

import builtins
import json

import fixtures
import pytest

from usagetrace._internal.analytics import cli

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    fixtures.write(fixtures.generate(), d)
    return d


def test_json_to_stdout(data, capsys):
    """The JSON format prints the report with the chosen package and k."""
    assert cli.main([str(data), "--package", "mypkg", "--format", "json", "--k", "6"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["k"] == 6 and doc["meta"]["package"] == "mypkg"
    assert all(r["installs"] >= 6 for r in doc["sections"]["feature_usage"]["rows"])


def test_html_to_file(data, tmp_path, capsys):
    """--output writes the file and says so on stderr."""
    out = tmp_path / "r.html"
    assert cli.main([str(data), "--package", "mypkg", "--format", "html", "--output", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert str(out) in capsys.readouterr().err


def test_unknown_format(data, capsys):
    """An unknown format exits 2 naming the choices."""
    assert cli.main([str(data), "--format", "xml"]) == 2
    assert "unknown format 'xml'" in capsys.readouterr().err


def test_missing_path(tmp_path, capsys):
    """A missing path exits non-zero with the path in the message."""
    assert cli.main([str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_several_packages_need_package(data, capsys):
    """Data with two packages and no --package exits 2 listing both."""
    assert cli.main([str(data)]) == 2
    assert "mypkg, otherpkg" in capsys.readouterr().err


def test_bad_since_and_bad_k(data, capsys):
    """A malformed --since or a k below 1 is a usage error with a readable message."""
    assert cli.main([str(data), "--package", "mypkg", "--since", "last tuesday"]) == 2
    assert "--since must look like 30d" in capsys.readouterr().err
    assert cli.main([str(data), "--k", "0"]) == 2


def test_corrupt_line_warning_on_stderr(tmp_path, capsys):
    """Skipped lines are announced on stderr with file:line and the report still runs."""
    t = fixtures.generate()
    p = tmp_path / "u.jsonl"
    p.write_text("\n".join(t.lines[:40] + ["{broken"]) + "\n")
    assert cli.main([str(p), "--package", "mypkg", "--format", "json", "--k", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{p}:41: invalid JSON" in err


def test_missing_duckdb_names_the_extra(data, monkeypatch, capsys):
    """Without duckdb installed the error names pip install 'usagetrace[report]'."""
    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "duckdb":
            raise ImportError("No module named 'duckdb'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert cli.main([str(data), "--package", "mypkg"]) == 1
    assert "pip install 'usagetrace[report]'" in capsys.readouterr().err


def test_clickhouse_url_is_validated(capsys):
    """A malformed ClickHouse URL is rejected before connecting."""
    pytest.importorskip("clickhouse_connect")
    assert cli.main(["clickhouse://"]) == 2
    assert "not a ClickHouse URL" in capsys.readouterr().err
