"""The never-raise guard: an internal error in any layer never reaches the host call."""

from __future__ import annotations

import logging

import pytest

from usagetrace.testing import capture

from .conftest import clean_env, free_port, run_py

PKG = {"__init__.py": """
    def add(a, b):
        return a + b

    def fail():
        raise LookupError("host error")

    def gen(n):
        yield from range(n)

    class C:
        def m(self):
            return "m"
"""}


def _boom(*args, **kwargs):
    raise RuntimeError("injected")


def _patch_recorder_queue(mp, handle):
    mp.setattr(handle.recorder, "queue", _boom)


def _patch_call_attributes(mp, handle):
    mp.setattr(handle.recorder, "call_attributes", _boom)


def _patch_sanitize(mp, handle):
    from usagetrace._internal import sanitize

    mp.setattr(sanitize, "frames", _boom)


def _patch_sampler(mp, handle):
    from usagetrace._internal import pipeline

    mp.setattr(pipeline.ConsentSampler, "should_sample", _boom)


def _patch_resource(mp, handle):
    from usagetrace._internal import resource

    mp.setattr(resource, "attributes", _boom)


def _patch_encoder(mp, handle):
    from usagetrace._internal import pipeline

    mp.setattr(pipeline, "encode_trace_request", _boom)
    mp.setattr(pipeline, "encode_metric_request", _boom)


def _patch_transport(mp, handle):
    from usagetrace._internal import transport

    mp.setattr(transport.MemoryTransport, "send", _boom)


def _patch_consent(mp, handle):
    from usagetrace._internal import consent

    mp.setattr(consent, "fingerprint", _boom)
    mp.setattr(consent, "_resolve", _boom)


LAYERS = {
    "recorder.queue": _patch_recorder_queue,
    "recorder.call_attributes": _patch_call_attributes,
    "sanitize.frames": _patch_sanitize,
    "sampler": _patch_sampler,
    "resource": _patch_resource,
    "encoder": _patch_encoder,
    "transport": _patch_transport,
    "consent": _patch_consent,
}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_internal_error_never_reaches_the_host(packages, monkeypatch, caplog, layer):
    """With the layer raising, every host call returns its normal result or its own exception, unchanged."""
    pkg = packages.load(f"rel_guard_{layer.replace('.', '_')}", PKG)
    caplog.set_level(logging.DEBUG, logger="usagetrace")
    with capture(pkg.__name__, flush=False) as cap:
        LAYERS[layer](monkeypatch, cap.handle)
        for _ in range(3):
            assert pkg.add(1, 2) == 3
            with pytest.raises(LookupError, match="host error"):
                pkg.fail()
            assert list(pkg.gen(3)) == [0, 1, 2]
            assert pkg.C().m() == "m"
        cap.handle.flush(2.0)  # delivery layers run here
        cap.handle.refresh_consent()
        cap.handle._fingerprint = "stale"  # force the consent layer to be consulted
        cap.handle.refresh_consent()
    # the fault was really hit and swallowed at debug level
    assert any("injected" in (r.getMessage() + str(r.exc_info)) for r in caplog.records), layer
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name.startswith("usagetrace"))


def test_consent_error_at_instrument_time_means_off(packages, monkeypatch):
    """If consent cannot be decided, instrument() wraps nothing and returns a handle that is off."""
    from usagetrace._internal import consent, instrumentation

    monkeypatch.setattr(consent, "_resolve", _boom)
    monkeypatch.setenv("REL_GUARD_CONSENT_TELEMETRY", "1")
    pkg = packages.load("rel_guard_consent", PKG)
    original = pkg.add
    handle = instrumentation.instrument("rel_guard_consent")
    assert handle.enabled is False
    assert pkg.add is original
    assert pkg.add(2, 2) == 4


SPOOL_FAULTS = {
    "spool.write": "from usagetrace._internal import spool; spool.write = boom",
    "spool.dir": "from usagetrace._internal import paths; paths.spool_dir = boom",
    "spool.spawn": "from usagetrace._internal import spool; spool.spawn_sender = boom",
    "at_exit.take_deltas": "from usagetrace._internal import delivery; delivery.Channel.take_deltas = boom",
}


AGGREGATE_FAULTS = {
    "aggregate.record": "from usagetrace._internal import aggregate; aggregate.record = boom",
    "aggregate.store_path": "from usagetrace._internal import aggregate; aggregate.store_path = boom",
    "aggregate.tally": "from usagetrace._internal import aggregate; aggregate.Tally.add_samples = boom",
    "upload_mode": "from usagetrace._internal import config; config.upload_mode = boom",
    "uploader.spawn": "from usagetrace._internal import spool, aggregate; spool.spawn_sender = boom; "
                      "aggregate._claim_upload = lambda *a: True",
}


@pytest.mark.parametrize("mode,fault",
                         [("realtime", f) for f in SPOOL_FAULTS] + [("daily", f) for f in AGGREGATE_FAULTS])
def test_exit_path_errors_never_reach_the_host(home, mode, fault):
    """Faults at exit (realtime: the spool; daily: store, tally, mode, uploader start) leave the host untouched."""
    code = f"""
import tinystats
def boom(*a, **k):
    raise RuntimeError("injected")
{(SPOOL_FAULTS if mode == "realtime" else AGGREGATE_FAULTS)[fault]}
print(tinystats.mean([1, 2, 3]))
"""
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                    USAGETRACE_DETACHED_SEND="1", USAGETRACE_UPLOAD=mode)
    proc = run_py(code, env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "2.0\n", "")


def test_uploader_survives_a_broken_store(home):
    """The detached uploader's entry point returns 0 even when every layer under it raises."""
    code = """
from usagetrace._internal import aggregate, uploader
def boom(*a, **k):
    raise RuntimeError("injected")
aggregate.packages = boom
print(uploader.main([]))
aggregate.packages = lambda: ["tinystats"]
aggregate.Store.__enter__ = boom
print(uploader.upload(everything=True)["failed"])
"""
    proc = run_py(code, clean_env(home))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0\n1\n", "")


def test_spool_sender_survives_a_broken_spool(home):
    """The detached sender's entry point returns 0 even when every layer under it raises."""
    code = """
from usagetrace._internal import spool, paths
def boom(*a, **k):
    raise RuntimeError("injected")
paths.spool_dir = boom
print(spool.main())
"""
    proc = run_py(code, clean_env(home))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0\n", "")
