"""Behaviour preservation on third-party code: their own test suites, plain vs instrumented."""

from __future__ import annotations

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _runner():
    spec = importlib.util.spec_from_file_location("ut_thirdparty_run", os.path.join(HERE, "thirdparty", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUN = _runner()


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("name", list(RUN.LIBS))
def test_own_suite_identical_when_instrumented(name, tmp_path):
    """The library's own tests give identical per-test outcomes and counts with usagetrace instrumenting it."""
    try:
        result = RUN.compare(name, str(tmp_path))
    except Exception as exc:  # no package index reachable: say so rather than pass
        if "pip" in repr(exc) or "CalledProcessError" in type(exc).__name__:
            pytest.skip(f"cannot download {name} from the package index: {exc}")
        raise
    assert result["plain"], result
    assert sum(v["wrapped"] for v in result["instrumentation"].values()) > 0, result  # really instrumented
    assert result["calls_received"] > 0, result  # and really exporting
    assert result["differing_tests"] == [], result
    assert result["plain"] == result["instrumented"], result
