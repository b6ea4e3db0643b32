"""The report cache: only new or changed input files are read again, answers never change."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("duckdb")

from usagetrace._internal.analytics.core import Analytics  # noqa: E402
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine  # noqa: E402

from .fixtures import generate  # noqa: E402

_LINES = generate().lines


def write_fixture(path):
    path.write_text("\n".join(_LINES) + "\n", encoding="utf-8")


def _answers(engine):
    a = Analytics(engine, package="mypkg", since=None, k=1)
    return a.feature_usage(), a.error_rates(), a.adoption("day")


def _engine(src, cache):
    return DuckDBEngine.from_path(src, cache=cache)


def test_cache_gives_the_same_answers_and_reads_only_changes(tmp_path, monkeypatch):
    """A cached run answers exactly like an uncached one; unchanged files are not re-read, changed and removed files are."""
    src = tmp_path / "data"
    src.mkdir()
    write_fixture(src / "a.jsonl")
    shutil.copy(src / "a.jsonl", src / "b.jsonl")
    cache = tmp_path / "cache.duckdb"
    read: list[str] = []
    original = DuckDBEngine._insert_files

    def recording(self, files, tmpdir):
        read.extend(os.path.basename(f) for f in files)
        return original(self, files, tmpdir)

    monkeypatch.setattr(DuckDBEngine, "_insert_files", recording)

    plain = DuckDBEngine.from_path(src)
    first = _engine(src, cache)
    assert first.counts() == plain.counts()
    assert _answers(first) == _answers(plain)
    first.close()

    read.clear()
    second = _engine(src, cache)
    assert second.counts() == plain.counts()
    assert read == []  # nothing re-read
    second.close()

    os.unlink(src / "b.jsonl")
    third = _engine(src, cache)
    only_a = DuckDBEngine.from_path(src)
    assert third.counts() == only_a.counts()
    assert _answers(third) == _answers(only_a)
    third.close()

    with open(src / "a.jsonl", "a", encoding="utf-8") as out:  # the collector appends to its current file
        out.write("\n".join(_LINES[: len(_LINES) // 2]) + "\n")
    read.clear()
    fourth = _engine(src, cache)
    assert read == ["a.jsonl"]  # only the file that grew
    grown = DuckDBEngine.from_path(src)
    assert fourth.counts() == grown.counts()
    assert fourth.counts()["spans"] > only_a.counts()["spans"]


def test_warnings_survive_in_the_cache(tmp_path):
    """Skipped-line warnings of a cached file are reported again on later runs."""
    src = tmp_path / "data"
    src.mkdir()
    write_fixture(src / "a.jsonl")
    with open(src / "a.jsonl", "a", encoding="utf-8") as out:
        out.write('{"resourceSpans": [ truncated\n')
    cache = tmp_path / "cache.duckdb"
    first = _engine(src, cache)
    assert any("skipped" in w for w in first.warnings)
    first.close()
    second = _engine(src, cache)
    assert second.warnings == first.warnings and second.skipped_lines == first.skipped_lines


def test_corrupt_cache_is_rebuilt(tmp_path):
    """A cache file that is not a DuckDB database is replaced, and the answers are right."""
    src = tmp_path / "data"
    src.mkdir()
    write_fixture(src / "a.jsonl")
    cache = tmp_path / "cache.duckdb"
    cache.write_bytes(b"not a database at all" * 100)
    engine = _engine(src, cache)
    assert engine.counts() == DuckDBEngine.from_path(src).counts()


def test_cache_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """The same source reached by different relative paths reuses the cache without re-reading."""
    src = tmp_path / "data"
    src.mkdir()
    write_fixture(src / "a.jsonl")
    cache = tmp_path / "cache.duckdb"
    monkeypatch.chdir(tmp_path)
    _engine("data", cache).close()
    read: list = []
    original = DuckDBEngine._insert_files
    monkeypatch.setattr(DuckDBEngine, "_insert_files", lambda self, files, tmpdir: read.extend(files) or original(self, files, tmpdir))
    monkeypatch.chdir(src)
    engine = _engine(".", cache)
    assert read == [] and engine.counts()["spans"] > 0
