"""Hostile and broken input: the host runs normally, no exception, no output, no hang."""

from __future__ import annotations

import json
import os
import stat

import pytest

from usagetrace.testing import capture

from ..conftest import BROKEN_CONTENT, SPECIAL, place_broken
from .conftest import SRC, WORKLOAD, clean_env, run_py

HOST = WORKLOAD.format(n=20) + "\nprint(json.dumps(out))\n"


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    proc = run_py(HOST, clean_env(tmp_path_factory.mktemp("h"), TINYSTATS_TELEMETRY="0"))
    assert proc.returncode == 0
    return proc.stdout


def _check(proc, expected):
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
    assert proc.stderr == ""


CORRUPT = [
    b"",
    b"[consent\n",
    b"[consent]\ntinystats = maybe\n",
    b"[consent]\n\"tinystats\" = true\n\"tinystats\" = false\n",
    b"\xff\xfe\x00garbage\x00",
    b"[consent]\n" + b"a" * 200_000,
    b"[[consent]]\nx = 1\n",
    b"consent = 5\n",
    b"[consent]\ntinystats = true\n"[:14],  # truncated mid-write
]


@pytest.mark.parametrize("content", CORRUPT, ids=range(len(CORRUPT)))
def test_corrupt_user_consent_file(home, expected, content):
    """A corrupt or truncated consent.toml turns telemetry off: no error, same output."""
    path = home / "config" / "consent.toml"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    env = clean_env(home)
    del env["TINYSTATS_TELEMETRY"]  # the file decides
    _check(run_py(HOST, env), expected)


@pytest.mark.parametrize("content", [b"{", b"[]", b"null", b"\x00\x01", b'{"notices": 5, "packages": []}'])
def test_corrupt_state_and_id_files(home, expected, content):
    """Corrupt state.json and install-id files are ignored or replaced; telemetry still works."""
    for rel in ("state/state.json", "data/ids/tinystats.id"):
        p = home / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    env = clean_env(home, USAGETRACE_EXPORT_INTERVAL="0.1")
    _check(run_py(HOST, env), expected)


def test_corrupt_spool_files_are_discarded(home, expected):
    """Garbage in the spool directory is deleted by the sender and never raises."""
    spool = home / "cache" / "spool"
    spool.mkdir(parents=True)
    for i, data in enumerate([b"{", b"[]", b'{"v": 1}', b'{"v":1,"package":"tinystats","samples":[[1]]}', b"\xff"]):
        (spool / f"1-{i}-tinystats.json").write_bytes(data)
    code = HOST + (
        "from usagetrace._internal import spool\nspool.deliver()\n"
    )
    _check(run_py(code, clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")), expected)
    assert not [p for p in spool.iterdir() if p.name.startswith("1-")]  # this run's own spool file may remain


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_home(home, expected):
    """A read-only usagetrace home: nothing can be stored, the host is unaffected."""
    home.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        _check(run_py(HOST, clean_env(home, USAGETRACE_EXPORT_INTERVAL="0.1")), expected)
    finally:
        home.chmod(stat.S_IRWXU)


def test_unwritable_data_dir_file_in_the_way(home, expected):
    """Files where usagetrace's directories should be (so makedirs fails even as root): host unaffected."""
    for name in ("config", "data", "cache", "state"):
        (home / name).write_text("not a directory")
    _check(run_py(HOST, clean_env(home, USAGETRACE_EXPORT_INTERVAL="0.1")), expected)


def test_missing_home_and_no_home_variable(tmp_path, expected):
    """HOME unset and pointing nowhere, no USAGETRACE_HOME: the host runs and exits normally."""
    for home_value in (None, str(tmp_path / "does" / "not" / "exist")):
        env = clean_env(tmp_path)
        del env["USAGETRACE_HOME"]
        env.pop("XDG_CONFIG_HOME", None)
        env.pop("XDG_CACHE_HOME", None)
        if home_value is None:
            env.pop("HOME", None)
        else:
            env["HOME"] = home_value
        _check(run_py(HOST, env, cwd=str(tmp_path)), expected)


BAD_ENV = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": ["not a url", "http://", "http://127.0.0.1:notaport", "ftp://x", "http://[::1",
                                    "http://127.0.0.1:99999", " ", "x" * 100_000],
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ["::::", "http://\x7f"],
    "OTEL_EXPORTER_OTLP_HEADERS": ["=", "a", "a=b,,=c", "k=%ZZ", "k=v%0d%0aX: y", "\x00=\x00", "a=" + "b" * 100_000],
    "OTEL_EXPORTER_OTLP_PROTOCOL": ["carrier-pigeon", "GRPC", "", "http/protobuf\x00"],
    "OTEL_EXPORTER_OTLP_TIMEOUT": ["-1", "nan", "inf", "1e309", "abc", "0"],
    "OTEL_EXPORTER_OTLP_COMPRESSION": ["brotli", "GZIP"],
    "OTEL_EXPORTER_OTLP_CERTIFICATE": ["/nonexistent/ca.pem", "\x01"],
    "OTEL_EXPORTER_OTLP_INSECURE": ["perhaps"],
    "USAGETRACE_EXPORT_INTERVAL": ["-5", "nan", "0", "1e999", "soon"],
    "USAGETRACE_DETACHED_SEND": ["maybe"],
    "USAGETRACE_HOME": ["\x01relative", "/proc/self/nonexistent"],
    "USAGETRACE_DEV_FILE": ["/proc/self/forbidden.jsonl", ""],
    "USAGETRACE_CONSOLE": ["2"],
    "TINYSTATS_TELEMETRY": ["yes please", "2"],
    "DO_NOT_TRACK": ["x" * 100_000],
    "OTEL_SDK_DISABLED": ["TRUE "],
    "CI": ["\x02"],
    "XDG_CONFIG_HOME": ["relative/path"],
}


@pytest.mark.parametrize("name,value", [(k, v) for k, vs in BAD_ENV.items() for v in vs],
                         ids=lambda x: repr(x)[:30])
def test_invalid_environment_values(home, expected, name, value):
    """Every variable usagetrace reads, set to garbage: same results, nothing on stderr, clean exit."""
    env = clean_env(home, USAGETRACE_EXPORT_INTERVAL="0.1")
    env[name] = value.replace("\x00", "")  # NUL cannot be passed in an environment
    code = HOST.replace("print(json.dumps(out))", "import time; time.sleep(0.3)\nprint(json.dumps(out))")
    _check(run_py(code, env, cwd=str(home)), expected)  # a relative USAGETRACE_HOME lands in cwd


def test_non_utf8_environment_bytes(home, expected):
    """Non-UTF-8 bytes in every variable usagetrace reads (set via os.environb) are ignored."""
    names = list(BAD_ENV) + ["HOME"]
    code = (
        "import os\n"
        f"for n in {names!r}:\n"
        "    os.environb[n.encode()] = b'\\xff\\xfe\\x80bad'\n"
        "os.environb[b'OTEL_EXPORTER_OTLP_HEADERS'] = b'k=\\xff'\n"
        + HOST
        + "from usagetrace._internal import config, consent\n"
        "config.resolve('traces', None, 'tinystats'); consent.resolve('tinystats')\n"
    )
    env = clean_env(home)
    del env["TINYSTATS_TELEMETRY"]
    code = code.replace("import json, tinystats", "import os; os.environb[b'TINYSTATS_TELEMETRY'] = b'\\xff'\nimport json, tinystats")
    _check(run_py(code, env), expected)


HOSTILE_PKG = {
    "__init__.py": """
        import sys

        class Weird:
            def __repr__(self):
                raise RuntimeError("repr")
            def __eq__(self, other):
                raise RuntimeError("eq")
            def __hash__(self):
                raise RuntimeError("hash")
            def __bool__(self):
                raise RuntimeError("bool")

        class Props:
            @property
            def bad(self):
                raise RuntimeError("property read")

            @property
            def fine(self):
                return 1

            def method(self, x):
                return x

        class Meta(type):
            def __getattribute__(cls, name):
                if name == "__module__":
                    raise RuntimeError("no module for you")
                return super().__getattribute__(name)

        class Strange(metaclass=Meta):
            def m(self):
                return "m"

        def takes(obj, *args, **kwargs):
            return obj

        def raises_weird():
            raise WeirdError()

        class WeirdError(Exception):
            def __str__(self):
                raise RuntimeError("str")

        WEIRD = Weird()

        def __getattr__(name):
            raise RuntimeError(f"module __getattr__ exploded on {name}")
    """,
    "sub.py": """
        def __getattr__(name):
            raise KeyError(name)

        def f():
            return "sub"
    """,
}


def test_hostile_package_and_objects(packages):
    """Raising module __getattr__, raising properties and metaclasses, broken repr/eq/hash: wrapped safely."""
    pkg = packages.load("rel_hostile_pkg", HOSTILE_PKG)
    import rel_hostile_pkg.sub as sub

    with capture("rel_hostile_pkg") as cap:
        w = pkg.WEIRD
        assert pkg.takes(w, w, key=w) is w
        assert pkg.Props().fine == 1
        assert pkg.Props().method(w) is w
        with pytest.raises(RuntimeError, match="property read"):
            pkg.Props().bad
        assert pkg.Strange().m() == "m"
        with pytest.raises(pkg.WeirdError):
            pkg.raises_weird()
        assert sub.f() == "sub"
        with pytest.raises(RuntimeError, match="exploded"):
            pkg.nonexistent
    assert cap.calls("rel_hostile_pkg.takes") == 1
    assert cap.calls("rel_hostile_pkg.raises_weird", "error") == 1
    assert cap.calls("rel_hostile_pkg.sub.f") == 1


def test_hostile_all_and_dict_keys(packages):
    """A bogus __all__ and non-string module keys neither raise nor stop the rest from being wrapped."""
    pkg = packages.load("rel_all_pkg", {"__init__.py": """
        __all__ = ["f", "missing", "g"]
        def f():
            return 1
        def g():
            return 2
        globals()[1] = "int key"
    """})
    with capture("rel_all_pkg") as cap:
        assert pkg.f() == 1 and pkg.g() == 2
    assert cap.calls("rel_all_pkg.f") == 1 and cap.calls("rel_all_pkg.g") == 1


def test_huge_arguments_are_not_inspected(packages):
    """Arguments are never repr'd or hashed: a 50 MB string and unhashable kwargs pass straight through."""
    pkg = packages.load("rel_big_pkg", {"__init__.py": "def f(*a, **k):\n    return len(a), sorted(k)\n"})
    big = "x" * (50 * 1024 * 1024)
    with capture("rel_big_pkg") as cap:
        for _ in range(10):
            assert pkg.f(big, [big], **{"a": {}, "b": big}) == (2, ["a", "b"])
    assert b"xxxxxxxxxxxxxxxx" not in cap.raw_bytes()
    assert cap.calls("rel_big_pkg.f") == 10


# ---------------------------------------------------- broken consent sources send nothing

BROKEN_PKG = """
def f():
    return 1

import usagetrace
H = usagetrace.instrument(__name__, consent={policy!r})
"""
BROKEN_RUN = """
import json, mypkg
for _ in range(5):
    mypkg.f()
print(json.dumps({"enabled": mypkg.H.enabled, "wrapped": "wrapped" if __import__("usagetrace.testing", fromlist=["x"]).is_wrapped(mypkg.f) else "function", "flushed": mypkg.H.flush(5)}))
"""
VALID_GRANT = b"[consent]\nmypkg = true\n"
BAD_VARIABLE = ["maybe", "2", "yes please", "x" * 100_000, "\udcff"]  # the last one is the byte 0xff
SOURCES = ([("user", c) for c in [*BROKEN_CONTENT, *SPECIAL, "unreadable"]]
           + [("project", c) for c in [*BROKEN_CONTENT, *SPECIAL, "unreadable"]]
           + [("env", i) for i in range(len(BAD_VARIABLE))]
           + [("valid", None)])


@pytest.mark.parametrize("policy", ["opt-in", "opt-out"])
@pytest.mark.parametrize("where,case", SOURCES, ids=lambda x: str(x)[:24])
def test_broken_consent_source_opens_no_connection(tmp_path, where, case, policy):
    """Every consent source broken every way, under either policy, while a grant exists elsewhere: 0 connections
    to a listening receiver, nothing wrapped, nothing spooled. The "valid" control proves the setup would send."""
    from usagetrace.testing import OTLPReceiver

    if case == "unreadable" and os.geteuid() == 0:
        pytest.skip("root ignores permission bits")
    home = tmp_path / "home"
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "mypkg").mkdir()
    (project / "mypkg" / "__init__.py").write_text(BROKEN_PKG.format(policy=policy))
    user_file = home / "config" / "consent.toml"
    target = user_file if where == "user" else project / ".usagetrace"
    if where != "user":
        place_broken(str(user_file), VALID_GRANT)  # a grant that the broken source must override
    if where in ("user", "project"):
        if case == "unreadable":
            place_broken(str(target), VALID_GRANT)
            target.chmod(0)
        else:
            place_broken(str(target), BROKEN_CONTENT.get(case), None if case in BROKEN_CONTENT else case)
    (home / "state").mkdir(parents=True)
    (home / "state" / "state.json").write_text(json.dumps({"notices": {"mypkg": "2025-01-01T00:00:00Z"}}))
    with OTLPReceiver() as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.05",
                        PYTHONPATH=os.pathsep.join([SRC, str(project)]))
        del env["TINYSTATS_TELEMETRY"]
        if where == "env":
            env["MYPKG_TELEMETRY"] = BAD_VARIABLE[case]
        proc = run_py(BROKEN_RUN, env, cwd=str(project))
        connections = rx.connections
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    result = json.loads(proc.stdout)
    spooled = list((home / "cache" / "spool").glob("*.json")) if (home / "cache" / "spool").exists() else []
    if where == "valid":
        assert result == {"enabled": True, "wrapped": "wrapped", "flushed": True} and connections > 0
        return
    assert result == {"enabled": False, "wrapped": "function", "flushed": True}
    assert connections == 0 and spooled == []
