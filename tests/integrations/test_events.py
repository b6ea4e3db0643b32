"""usagetrace.command() and usagetrace.event(): declared measurements on the consent-gated pipeline."""

from __future__ import annotations

import logging

import pytest

import usagetrace
from usagetrace.testing import capture


def test_command_emits_one_span_after_success_with_declared_measures(fresh_package):
    """A successful command block exports one usagetrace.command span with its name, duration and declared measures."""
    pkg = fresh_package("cmd")
    with capture(pkg) as cap:
        with usagetrace.command(
            "generate",
            package=pkg,
            measures={"flowgroups": int, "dry_run": bool, "env": ("dev", "test", "prod")},
        ) as cmd:
            cmd.set(flowgroups=23, dry_run=False, env="dev")
    spans = cap.spans("usagetrace.command")
    assert len(spans) == 1
    attrs = spans[0]["attributes"]
    assert attrs == {
        "usagetrace.command.name": "generate",
        "usagetrace.measure.flowgroups": 23,
        "usagetrace.measure.dry_run": False,
        "usagetrace.measure.env": "dev",
    }
    assert spans[0]["end"] >= spans[0]["start"] > 0


def test_command_drops_undeclared_and_ill_fitting_values_without_raising(fresh_package, caplog):
    """Undeclared keys, strings outside the enum and wrong types are dropped (debug log), never raised."""
    pkg = fresh_package("cmd")
    caplog.set_level(logging.DEBUG, logger="usagetrace")
    with capture(pkg) as cap:
        with usagetrace.command("generate", package=pkg, measures={"n": int, "env": ("dev", "prod")}) as cmd:
            cmd.set(n="23", env="/home/ana/secret", project="acme-corp", other=1.5)
            cmd.set(n=True)  # a bool is not an int measurement
    attrs = cap.spans("usagetrace.command")[0]["attributes"]
    assert attrs == {"usagetrace.command.name": "generate"}
    assert b"acme-corp" not in cap.raw_bytes() and b"/home/ana" not in cap.raw_bytes()
    assert "was not declared" in caplog.text


def test_command_failure_emits_nothing_by_default_and_error_with_always(fresh_package):
    """A failing block records nothing with emit='success' and an error span (type only) with emit='always'."""
    pkg = fresh_package("cmd")
    with capture(pkg) as cap:
        with pytest.raises(RuntimeError):
            with usagetrace.command("generate", package=pkg):
                raise RuntimeError("secret message /home/ana")
        with pytest.raises(KeyError):
            with usagetrace.command("validate", package=pkg, emit="always"):
                raise KeyError("customer-42")
    spans = cap.spans("usagetrace.command")
    assert [s["attributes"]["usagetrace.command.name"] for s in spans] == ["validate"]
    assert spans[0]["status"] == 2
    assert spans[0]["attributes"]["error.type"] == "KeyError"
    assert b"secret message" not in cap.raw_bytes() and b"customer-42" not in cap.raw_bytes()


def test_command_treats_sys_exit_zero_as_success(fresh_package):
    """SystemExit(0) inside the block (as click raises) still counts as a successful run."""
    pkg = fresh_package("cmd")
    with capture(pkg) as cap:
        with pytest.raises(SystemExit):
            with usagetrace.command("run", package=pkg):
                raise SystemExit(0)
    assert len(cap.spans("usagetrace.command")) == 1


@pytest.mark.parametrize(
    "measures, error",
    [
        ({"project": str}, TypeError),
        ({"Bad Key": int}, ValueError),
        ({"env": ()}, ValueError),
        ({"env": ("dev", "has space")}, ValueError),
        ({"n": list}, TypeError),
        (["n"], TypeError),
    ],
)
def test_bad_declarations_raise_for_the_maintainer_even_with_consent_off(fresh_package, measures, error):
    """Free-form str, bad key names, empty or odd enums raise at declaration time whatever the consent."""
    pkg = fresh_package("cmd")
    usagetrace.instrument(pkg, consent="opt-in")  # under pytest: consent off
    with pytest.raises(error):
        usagetrace.command("generate", package=pkg, measures=measures)


def test_bad_emit_and_name_raise():
    """An unknown emit mode or a non-name command name is a maintainer error raised immediately."""
    with pytest.raises(ValueError):
        usagetrace.command("generate", package="x", emit="sometimes")
    with pytest.raises(ValueError):
        usagetrace.command("rm -rf /\n", package="x")
    with pytest.raises(ValueError):
        usagetrace.event("", package="x")


def test_nothing_recorded_when_consent_is_off(fresh_package):
    """With consent off, commands and events queue nothing and set() is a no-op."""
    pkg = fresh_package("off")
    handle = usagetrace.instrument(pkg, consent="opt-out")
    assert not handle.enabled and handle.recorder is None
    with usagetrace.command("generate", package=pkg, measures={"n": int}) as cmd:
        cmd.set(n=1)
    usagetrace.event("session_start", package=pkg)
    assert cmd.values == {}
    assert handle.recorder is None


def test_event_with_package_declared_measures(fresh_package):
    """usagetrace.event() exports a usagetrace.event span carrying only measures declared via instrument()."""
    pkg = fresh_package("evt")
    usagetrace.instrument(
        pkg, consent="opt-in", measures={"mode": ("watch", "test-drive", "evaluate"), "workers": int}
    )
    with capture(pkg) as cap:
        usagetrace.event("session_start", package=pkg, mode="watch", workers=4, host="ana-laptop")
        usagetrace.event("session_start", package=pkg, mode="not-a-mode")
    spans = cap.spans("usagetrace.event")
    assert [s["attributes"] for s in spans] == [
        {
            "usagetrace.event.name": "session_start",
            "usagetrace.measure.mode": "watch",
            "usagetrace.measure.workers": 4,
        },
        {"usagetrace.event.name": "session_start"},
    ]
    assert b"ana-laptop" not in cap.raw_bytes()


def test_event_with_a_bad_package_declaration_raises(fresh_package):
    """A free-form str declared through instrument(measures=...) raises at the first event, whatever the consent."""
    pkg = fresh_package("evt")
    usagetrace.instrument(pkg, consent="opt-in", measures={"host": str})
    with pytest.raises(TypeError):
        usagetrace.event("session_start", package=pkg)


def test_declaration_after_pipeline_exists_still_exports(fresh_package):
    """Keys declared after the first export (pipeline already built) are still allowed for that package."""
    pkg = fresh_package("late")
    with capture(pkg) as cap:
        usagetrace.event("start", package=pkg)
        cap.flush()
        with usagetrace.command("later", package=pkg, measures={"files": int}) as cmd:
            cmd.set(files=7)
    spans = cap.spans("usagetrace.command")
    assert spans[0]["attributes"]["usagetrace.measure.files"] == 7


def test_a_float_measurement_is_a_finite_number_and_no_subclass_code_runs():
    """float measures take finite ints and floats only (nan, inf, an int beyond a float's range, a bool: dropped),
    decided without math and without calling a subclass's own arithmetic."""
    from usagetrace._internal.events import _fits

    class Loud(float):
        def __sub__(self, other):
            raise AssertionError("host code ran")

        def __float__(self):
            raise AssertionError("host code ran")

    class LoudInt(int):
        def __float__(self):
            raise AssertionError("host code ran")

    fits = [1.5, -0.0, 1e308, 3, -(2**80), Loud(2.5), LoudInt(7)]
    drops = [float("nan"), float("inf"), float("-inf"), Loud(float("inf")), 10**400, True, "1.5", None]
    assert [_fits(float, v) for v in fits] == [True] * len(fits)
    assert [_fits(float, v) for v in drops] == [False] * len(drops)
