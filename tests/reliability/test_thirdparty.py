"""Behaviour preservation on third-party code: their own test suites, plain vs instrumented.

One test per library of ``thirdparty/run.py``'s corpus. The first test to run starts every selected
library's two passes in one pool of parallel processes (``run_corpus``); each test then checks its own
library's result. Sdists and installed targets are cached between runs (see run.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _runner():
    path = os.path.join(HERE, "thirdparty", "run.py")
    spec = importlib.util.spec_from_file_location("ut_thirdparty_run", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


RUN = _runner()


@pytest.fixture(scope="module")
def corpus(request, tmp_path_factory) -> dict:
    """Results of every library selected in this session, run together in parallel."""
    names = [item.callspec.params["name"] for item in request.session.items
             if item.module is request.module and getattr(item, "callspec", None) is not None]
    return RUN.run_corpus(names, str(tmp_path_factory.mktemp("thirdparty")))


def _short(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if not k.endswith("_tail")}, indent=1)[:20000]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first test waits for the whole corpus (about 11 minutes on 2 idle cores)
@pytest.mark.parametrize("name", list(RUN.LIBS))
def test_own_suite_identical_when_instrumented(name, corpus):
    """The library's own tests give identical per-test outcomes, counts and exit status when instrumented."""
    result = corpus[name]
    if "prepare_error" in result:  # no package index reachable: say so rather than pass
        pytest.skip(f"cannot download or install {result['library']}: {result['prepare_error'][-500:]}")
    assert "run_error" not in result, _short(result)
    assert result["plain"].get("passed", 0) > 0 and result["tests_compared"] > 0, _short(result)  # really ran
    assert all(rep["enabled"] for rep in result["instrumentation"].values()), _short(result)
    assert result["differing_tests"] == {}, _short(result) + result.get("instrumented_tail", "")
    if RUN.coverage(result)["public"] == 0:
        # nothing found to count: only a library whose API is an instance (issue 20) may say so
        assert RUN.LIBS[name].instance_api, _short(result)
        assert result["identical"], _short(result)
        return
    # really wrapped: functions of the library are usagetrace wrappers at the end of the run, and every
    # name usagetrace lists as wrapped is one (what inventory and status print must be true)
    reports = result["instrumentation"].values()
    assert sum(rep["wrapped_verified"] for rep in reports) > 0, _short(result)
    assert all(rep["wrapped_verified"] == rep["wrapped"] for rep in reports), _short(result)
    assert result["calls_received"] > 0, _short(result)  # and really exported over OTLP
    assert result["differing_tests"] == {}, _short(result) + result.get("instrumented_tail", "")
    assert result["plain"] == result["instrumented"], _short(result) + result.get("instrumented_tail", "")
    assert result["returncodes"][0] == result["returncodes"][1], _short(result)
    assert result["identical"], _short(result)


def test_coverage_is_wrapped_plus_monitored_over_public_callables():
    """The coverage table's figures: (wrapped + monitored) / (wrapped + monitored + skipped), reasons by kind."""
    from usagetrace._internal import hazards

    assert RUN.reason_kind(hazards.REASON_FRAMES.format(target="p.f", reach=2, how="stacklevel")) == "frames"
    assert RUN.reason_kind(hazards.REASON_IMPLICIT.format(target="p.C.__call__", reach=2, how="x")) == "frames"
    assert RUN.reason_kind(hazards.REASON_CAPTURED.format(n=1)) == "identity"
    assert RUN.reason_kind(hazards.REASON_RECURSIVE) == "recursion"
    plugin = {"deprecated": {"wrapped": 6, "monitored": 3, "skipped": 1,
                             "skipped_names": {"deprecated.f": hazards.REASON_RECURSIVE}},
              "other": {"wrapped": 0, "skipped": 0, "skipped_names": {}}}  # no monitored key: counted as 0
    result = {"instrumentation": plugin, "skipped_reasons": RUN.skipped_reasons(plugin)}
    assert RUN.coverage(result) == {"public": 10, "wrapped": 6, "monitored": 3, "skipped": 1, "coverage": 0.9}
    table = RUN.coverage_table({"deprecated": result}, ["deprecated"])
    assert table.splitlines()[-1] == "| deprecated 1.3.1 | 10 | 6 | 3 | 1 | 90 % | recursion 1 |"
    assert RUN.coverage({"instrumentation": {}})["coverage"] is None
