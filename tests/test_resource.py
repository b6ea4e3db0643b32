"""The anonymized resource and the install id."""

from __future__ import annotations

import os
import uuid

from usagetrace._internal import allowlist, paths, resource


def _attrs(pkg="mypkg"):
    return resource.attributes(pkg, "1.0", policy="opt-in", consent_source="user:/x", sdk_version="1.2.3")


def test_only_allowlisted_resource_keys(monkeypatch):
    """The resource holds allowlisted keys only, even with host resource variables set."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=canary,user.name=canary")
    attrs = _attrs()
    assert set(attrs) <= allowlist.allowed_keys("resource")
    assert "canary" not in repr(attrs)
    assert attrs["usagetrace.consent.source"] == "user"  # the kind of source, never the path


def test_ci_is_detected_with_provider(monkeypatch):
    """CI runs are tagged with a provider from a fixed list."""
    for var in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD"):
        monkeypatch.delenv(var, raising=False)
    assert _attrs()["usagetrace.ci"] is False and "usagetrace.ci.provider" not in _attrs()
    monkeypatch.setenv("GITLAB_CI", "true")
    attrs = _attrs()
    assert attrs["usagetrace.ci"] is True and attrs["usagetrace.ci.provider"] == "gitlab"
    assert attrs["usagetrace.run.context"] == "ci"


def test_install_id_is_stable_random_and_per_package():
    """The install id is a stored UUID4, stable across calls, different per package."""
    first, source = resource.install_id("a")
    assert source == "stored" and uuid.UUID(first).version == 4
    assert resource.install_id("a") == (first, "stored")
    assert resource.install_id("b")[0] != first


def test_unwritable_data_dir_gives_a_per_run_id_never_a_machine_derived_one(tmp_path, monkeypatch):
    """When the id cannot be stored: a random id for this run only, marked run-; nothing anyone could compute."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where a directory should be")
    monkeypatch.setenv("USAGETRACE_HOME", str(blocker))
    a, source = resource.install_id("a")
    again, _ = resource.install_id("a")
    assert source == "per-run" and a.startswith("run-") and uuid.UUID(a[4:])
    assert again != a  # nothing stable: a new one each time it is asked for (once per run)
    assert not hasattr(resource, "salted_machine_id")


def test_corrupt_id_file_is_replaced():
    """A corrupt id file is replaced by a fresh random id."""
    path = os.path.join(paths.ids_dir(), "c.id")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("not-a-uuid")
    value, source = resource.install_id("c")
    assert source == "stored" and uuid.UUID(value)


def test_runtime_version_is_major_minor_only():
    """Only Python's major.minor is sent."""
    assert _attrs()["process.runtime.version"].count(".") == 1


def test_sdk_version_left_out_is_added_back_in_its_place():
    """Daily runs store the resource without the SDK's version; the uploader's with_sdk_version puts it back
    exactly where attributes() has it (the same resource on the wire)."""
    full = _attrs()
    short = resource.attributes("mypkg", "1.0", policy="opt-in", consent_source="user:/x", sdk_version=None)
    assert "telemetry.sdk.version" not in short
    short["usagetrace.install.id"], short["usagetrace.session.id"] = full["usagetrace.install.id"], \
        full["usagetrace.session.id"]
    back = resource.with_sdk_version(short)
    assert back["telemetry.sdk.version"] == resource.sdk_version() != "unknown"
    assert list(back.items()) == list({**full, "telemetry.sdk.version": resource.sdk_version()}.items())
    assert resource.with_sdk_version(full) is full  # stored before this change: kept as recorded
