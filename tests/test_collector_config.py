"""Structural validation of collector-config/ (the bundled OpenTelemetry Collector).

No collector binary is needed: the files are loaded, merged the way the
collector merges several ``--config`` files (maps merge recursively, lists are
replaced), and checked against the pinned contrib distribution's components and
against :mod:`usagetrace._internal.allowlist`. Where ``otelcol-contrib`` is on
PATH the real ``validate`` command runs as well.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from tests.collector_emulator import merge
from usagetrace._internal import allowlist, collector_config, collector_rules

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "collector-config"

#: The contrib version the config is written for; docker-compose.yml pins the same image tag.
PINNED_VERSION = "0.136.0"

# Component *type names* registered by the modules listed in the otelcol-contrib
# manifest for 0.136.0: open-telemetry/opentelemetry-collector-releases,
# distributions/otelcol-contrib/manifest.yaml (every module at v0.136.0). Processors and
# exporters are the complete lists; extensions and receivers are the subsets an
# operator of this bundle might reach for.
PINNED_COMPONENTS = {
    "receivers": {
        "otlp",
        "nop",
        "jaeger",
        "zipkin",
        "prometheus",
        "kafka",
        "filelog",
        "otlpjsonfile",
        "hostmetrics",
        "statsd",
        "syslog",
        "fluentforward",
    },
    "processors": {
        "batch",
        "memory_limiter",
        "attributes",
        "cumulativetodelta",
        "coralogix",
        "deltatocumulative",
        "deltatorate",
        "filter",
        "geoip",
        "groupbyattrs",
        "groupbytrace",
        "interval",
        "isolationforest",
        "k8sattributes",
        "logdedup",
        "experimental_metricsgeneration",
        "metricstarttime",
        "metricstransform",
        "probabilistic_sampler",
        "redaction",
        "remotetap",
        "resourcedetection",
        "resource",
        "schema",
        "span",
        "sumologic",
        "tail_sampling",
        "transform",
    },
    "exporters": {
        "debug",
        "nop",
        "otlp",
        "otlphttp",
        "alibabacloud_logservice",
        "awscloudwatchlogs",
        "awsemf",
        "awskinesis",
        "awsxray",
        "awss3",
        "azureblob",
        "azuredataexplorer",
        "azuremonitor",
        "bmchelix",
        "carbon",
        "cassandra",
        "clickhouse",
        "coralogix",
        "datadog",
        "dataset",
        "doris",
        "elasticsearch",
        "faro",
        "file",
        "googlecloud",
        "googlecloudpubsub",
        "googlemanagedprometheus",
        "honeycombmarker",
        "influxdb",
        "kafka",
        "loadbalancing",
        "logicmonitor",
        "logzio",
        "mezmo",
        "opensearch",
        "otelarrow",
        "prometheus",
        "prometheusremotewrite",
        "pulsar",
        "rabbitmq",
        "sapm",
        "sentry",
        "signalfx",
        "splunk_hec",
        "stef",
        "sumologic",
        "syslog",
        "tencentcloud_logservice",
        "tinybird",
        "zipkin",
    },
    "extensions": {
        "zpages",
        "health_check",
        "pprof",
        "basicauth",
        "bearertokenauth",
        "oauth2client",
        "oidc",
        "headers_setter",
        "file_storage",
        "db_storage",
        "sigv4auth",
        "opamp",
        "http_forwarder",
        "jaegerremotesampling",
        "awsproxy",
        "docker_observer",
        "host_observer",
        "k8s_observer",
        "ecs_observer",
        "ecs_task_observer",
    },
    "connectors": {
        "forward",
        "count",
        "exceptions",
        "failover",
        "roundrobin",
        "routing",
        "servicegraph",
        "spanmetrics",
        "sum",
        "signaltometrics",
    },
}

BASE = ("collector.yaml", "allowlist.yaml")
VARIANTS = {
    "base": BASE,
    "clickhouse": BASE + ("clickhouse.yaml",),
    "forward-otlphttp": BASE + ("forward-otlphttp.yaml",),
}
SIGNAL_PIPELINES = ("traces", "metrics")


def load(*names: str) -> dict:
    merged: dict = {}
    for name in names:
        data = yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8"))
        assert isinstance(data, dict), name
        merge(merged, data)
    return merged


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _statements(processor: dict, signal_key: str, context: str) -> list[str]:
    out: list[str] = []
    for group in processor.get(signal_key, []):
        if group["context"] == context:
            out += group["statements"]
    return out


def _ottl_string_args(statement: str) -> list[str]:
    return re.findall(r'"((?:[^"\\]|\\.)*)"', statement)


@pytest.fixture(params=sorted(VARIANTS))
def variant(request) -> tuple[str, dict]:
    return request.param, load(*VARIANTS[request.param])


def test_every_pipeline_component_is_defined(variant):
    """Every receiver, processor, exporter and extension a pipeline uses is defined in the merged config."""
    _, cfg = variant
    service = cfg["service"]
    for ext in service.get("extensions", []):
        assert ext in cfg["extensions"], ext
    assert set(service["pipelines"]) == set(SIGNAL_PIPELINES)
    for name, pipeline in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            assert pipeline.get(kind), f"{name} has no {kind}"
            for component in pipeline[kind]:
                assert component in cfg.get(kind, {}), f"{name}: {kind} {component} is not defined"


def test_every_component_type_ships_in_pinned_contrib(variant):
    """Every defined component's type is one that the pinned otelcol-contrib distribution registers."""
    _, cfg = variant
    for kind in ("receivers", "processors", "exporters", "extensions", "connectors"):
        for component in cfg.get(kind, {}) or {}:
            assert _type(component) in PINNED_COMPONENTS[kind], f"{kind}: {component}"


def test_memory_limiter_first_and_batch_last(variant):
    """Each pipeline starts with memory_limiter and ends with batch, with the privacy processors in between."""
    _, cfg = variant
    for name, pipeline in cfg["service"]["pipelines"].items():
        procs = [_type(p) for p in pipeline["processors"]]
        assert procs[0] == "memory_limiter", name
        assert procs[-1] == "batch", name
        for needed in ("filter", "redaction", "transform"):
            assert needed in procs, f"{name} lacks {needed}"


def test_compose_image_is_the_pinned_version():
    """docker-compose.yml runs exactly the contrib version these component lists were taken from."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert (
        compose["services"]["collector"]["image"] == f"otel/opentelemetry-collector-contrib:{PINNED_VERSION}"
    )
    assert PINNED_VERSION in (CONFIG_DIR / "collector.yaml").read_text(encoding="utf-8").splitlines()[0]


def test_redaction_allowlist_equals_sdk_allowlist():
    """The redaction processor allows exactly the SDK allowlist's keys (all places), fail-closed, silently."""
    red = load(*BASE)["processors"]["redaction/allowlist"]
    assert red["allow_all_keys"] is False
    # The redaction processor also filters resource, scope, event and data-point
    # attributes, so resource keys belong in the list too.
    assert set(red["allowed_keys"]) == set(allowlist.allowed_keys())
    assert len(red["allowed_keys"]) == len(allowlist.allowed_keys())
    assert red["summary"] == "silent"  # otherwise it would add redaction.* attributes itself


def _keep_keys(statements: list[str]) -> list[str]:
    (stmt,) = [s for s in statements if s.startswith("keep_keys(attributes, [")]
    return _ottl_string_args(stmt)


def test_each_place_keeps_exactly_its_allowlisted_keys():
    """transform/allowlist keeps, per place, exactly the keys the SDK may send there (data points: the metrics' keys)."""
    proc = load(*BASE)["processors"]["transform/allowlist"]
    metric_keys = sorted({k for m in allowlist.METRICS for k in m.attributes})
    expected = {
        ("trace_statements", "resource"): sorted(allowlist.allowed_keys("resource")),
        ("metric_statements", "resource"): sorted(allowlist.allowed_keys("resource")),
        ("trace_statements", "span"): sorted(allowlist.allowed_keys("span")),
        ("trace_statements", "spanevent"): sorted(allowlist.allowed_keys("event")),
        ("metric_statements", "datapoint"): metric_keys,
        ("trace_statements", "scope"): [],
        ("metric_statements", "scope"): [],
    }
    for (signal_key, context), keys in expected.items():
        assert _keep_keys(_statements(proc, signal_key, context)) == keys, (signal_key, context)
    for key in ("host.name", "host.id", "user.name", "net.host.ip", "k8s.pod.name", "cloud.region", "redaction.masked.keys"):
        for keys in expected.values():
            assert key not in keys


def test_measure_keys_are_kept_on_spans_only_when_declared():
    """--measure-key adds a declared measurement to the span keep-list and the redaction allowlist, as any scalar."""
    key = allowlist.MEASURE_PREFIX + "flowgroups"
    cfg = yaml.safe_load(collector_config.render([key]))["processors"]
    assert key in _keep_keys(_statements(cfg["transform/allowlist"], "trace_statements", "span"))
    assert key in cfg["redaction/allowlist"]["allowed_keys"]
    assert key not in _keep_keys(_statements(cfg["transform/allowlist"], "trace_statements", "resource"))


def test_caps_equal_allowlist_limits():
    """The character cut, attribute count, array length and event count in the config equal the allowlist's constants."""
    cfg = load(*BASE)
    proc = cfg["processors"]["transform/allowlist"]
    assert f"{{{allowlist.MAX_VALUE_LENGTH}}}" in collector_rules.TRUNCATE
    for signal_key, ctxs in {"trace_statements": ("resource", "span", "spanevent"),
                             "metric_statements": ("resource", "datapoint")}.items():
        for ctx in ctxs:
            stmts = _statements(proc, signal_key, ctx)
            assert f"limit(attributes, {allowlist.MAX_ATTRIBUTES}, [])" in stmts, (signal_key, ctx)
            assert any(collector_config.ottl_string(collector_rules.TRUNCATE) in st and '"$$1"' in st for st in stmts)
            assert any(collector_config.ottl_string(collector_rules.INVALID_UTF8) in st for st in stmts)
            assert not any("truncate_all" in st for st in stmts)  # byte-based: would split UTF-8
    span = "\n".join(_statements(proc, "trace_statements", "span"))
    for key in (a.key for a in allowlist.ATTRIBUTES if a.type.endswith("[]")):
        assert f'Len(attributes["{key}"]) > {allowlist.MAX_ARRAY_ITEMS}' in span
        for i in range(allowlist.MAX_ARRAY_ITEMS):
            assert f'attributes["{key}"][{i}]' in span
    spans = cfg["processors"]["filter/allowlist"]["traces"]["span"]
    assert f"Len(events) > {allowlist.MAX_EVENTS}" in spans and "Len(links) > 0" in spans


def test_filter_keeps_only_usagetrace_scope_and_allowed_services():
    """filter/usagetrace drops data outside the usagetrace scope, without service.name, or from unlisted services."""
    cfg = load(*BASE)["processors"]
    flt = cfg["filter/usagetrace"]
    for conds in (flt["traces"]["span"], flt["metrics"]["metric"]):
        assert f'instrumentation_scope.name != "{allowlist.SCOPE_NAME}"' in conds
        assert 'resource.attributes["service.name"] == nil' in conds
        assert any(
            'IsMatch(resource.attributes["service.name"]' in c and "${env:USAGETRACE_ALLOWED_SERVICES:-" in c
            for c in conds
        )
    # generated: only usagetrace's own span events and metrics (sums) pass
    shapes = cfg["filter/allowlist"]
    (event_cond,) = shapes["traces"]["spanevent"]
    for name in allowlist.EVENT_NAMES:
        assert f'name != "{name}"' in event_cond
    metric_cond = shapes["metrics"]["metric"][0]
    for metric in allowlist.METRICS:
        assert f'name != "{metric.name}"' in metric_cond
    assert "Len(exemplars) > 0" in shapes["metrics"]["datapoint"]


def test_memory_limiter_accepts_any_positive_limit():
    """No fixed spike_limit_mib: the 20 % default keeps limit_mib above it for any USAGETRACE_MEMORY_LIMIT_MIB >= 1."""
    ml = load(*BASE)["processors"]["memory_limiter"]
    assert "spike_limit_mib" not in ml and "spike_limit_percentage" not in ml
    assert ml["limit_mib"].startswith("${env:USAGETRACE_MEMORY_LIMIT_MIB:-")


# --- blocked_values, under RE2 semantics (google-re2 runs the same RE2 syntax as Go's regexp) ---


def _re2():
    return pytest.importorskip("re2")


def _blocked_values() -> list:
    red = load(*BASE)["processors"]["redaction/allowlist"]
    assert red["blocked_values"] == [p for _, p in collector_rules.BLOCKED_VALUES]
    return [_re2().compile(p) for p in red["blocked_values"]]


def _mask(value: str) -> str:
    """What the redaction processor does to a string value: each pattern once, in order, matches -> ****."""
    for rx in _blocked_values():
        if rx.search(value):
            value = rx.sub(collector_rules.MASK, value)
    return value


@pytest.mark.parametrize(
    "value,secret",
    [
        ("jane.doe@example.com", "jane.doe"),
        ("contact me at a+b@mail.example.co.uk please", "a+b@"),
        ("пользователь@пример.рф", "пользователь"),
        ("用户@例子.广告", "用户"),
        ("jörg.müller@bücher.de", "müller"),
        ("रमेश@उदाहरण.भारत", "रमेश"),
        ("x@xn--p1ai.xn--p1ai", "x@"),
        ("jane＠example。com", "jane"),
        ("192.168.1.20", "192.168"),
        ("from 10.0.0.1:8080", "10.0.0.1"),
        ("255.255.255.255", "255.255"),
        ("hosts 1.1.1.1 2.2.2.2 3.3.3.3", "2.2.2.2"),
        ("(10.1.2.3).", "10.1.2.3"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "85a3"),
        ("fe80::1", "fe80"),
        ("2001:db8::", "2001"),
        ("addr=2001:db8::ff00:42:8329", "8329"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
    ],
)
def test_blocked_values_mask_emails_and_ip_addresses(value, secret):
    """E-mail addresses (any script) and IPv4/IPv6 addresses are masked, leaving no part of the secret."""
    masked = _mask(value)
    assert collector_rules.MASK in masked and secret not in masked, masked


@pytest.mark.parametrize(
    "value",
    [
        "1.2.3.4.5",
        "2.0.0.0.dev1",
        "1.10.0.0.1",
        "ab::cd",
        "dead::beef",
        "x[::2]",
        "::1",
        "3.11",
        "3.13.1",
        "2024.10.1",
        "0.136.0",
        "mypkg.io:read_table:41\nmypkg._parse:row:12",
        "mypkg.cafe:beef:12",
        "pkg @ https://example.org/pkg.whl",
        "/@scope/pkg.json",
        "/reports/2024",
    ]
    + sorted({a.example for a in allowlist.ATTRIBUTES if a.key not in allowlist.VERSION_KEYS}),
)
def test_blocked_values_leave_versions_and_allowlisted_examples_alone(value):
    """Versions with more than four parts, C++-like names, loopback, stack frames and every documented example stay."""
    assert _mask(value) == value


def test_version_keys_are_exempt_and_format_checked():
    """Version keys skip masking (1.2.3.4 is a version there) and must look like versions instead."""
    red = load(*BASE)["processors"]["redaction/allowlist"]
    assert sorted(red["ignored_keys"]) == sorted(allowlist.VERSION_KEYS)
    assert set(allowlist.VERSION_KEYS) <= allowlist.allowed_keys("resource")
    version = _re2().compile(collector_rules.VERSION)
    for good in ["1.2.3.4", "2.0.0.0.dev1", "1!2.0+local.7", "3.11", "v1.0", "unknown", "0.1.0"] + [
        a.example for a in allowlist.ATTRIBUTES if a.key in allowlist.VERSION_KEYS
    ]:
        assert version.search(good), good
    for bad in ["jane@example.com", "", "CANARY1", "1.0 secret", "a" * 70, "1" * 70, "fe80::1"]:
        assert not version.search(bad), bad


def test_name_patterns_under_re2():
    """Keyword names must be identifiers and span names dotted qualified names, both at most MAX_VALUE_LENGTH chars."""
    re2 = _re2()
    ident, qual = re2.compile(collector_rules.IDENTIFIER), re2.compile(collector_rules.QUALIFIED_NAME)
    length = re2.compile(collector_rules.NAME_LENGTH)
    for good in ["sep", "café", "_x1", "名前", "Ω"]:
        assert ident.search(good), good
    for bad in ["1a", "jane@example.com", "a b", "", "10.0.0.1", "fe80::1"]:
        assert not ident.search(bad), bad
    for good in ["mypkg.io.read_table", *allowlist.SPAN_NAMES, "日本.関数"]:
        assert qual.search(good) and length.search(good), good
    for bad in ["a..b", "x y", "mypkg.<locals>.f", "jane@example.com", ""]:
        assert not qual.search(bad), bad
    assert length.search("é" * allowlist.MAX_VALUE_LENGTH) and not length.search("é" * (allowlist.MAX_VALUE_LENGTH + 1))


def test_cut_and_repair_patterns_under_re2():
    """The cut keeps exactly MAX_VALUE_LENGTH characters of any width; shorter values are untouched."""
    re2 = _re2()
    cut = re2.compile(collector_rules.TRUNCATE)
    for ch in ("a", "é", "€", "𝄞"):
        for n in (1, allowlist.MAX_VALUE_LENGTH - 1, allowlist.MAX_VALUE_LENGTH, allowlist.MAX_VALUE_LENGTH + 1, 1000):
            got = cut.sub(r"\1", ch * n)
            assert got == (ch * n)[: allowlist.MAX_VALUE_LENGTH], (ch, n)
            got.encode("utf-8")
    repair = re2.compile(collector_rules.INVALID_UTF8)
    # (a function as replacement: google-re2's sub mis-encodes a non-ASCII replacement string)
    assert repair.sub(lambda m: collector_rules.REPLACEMENT_CHARACTER, "ok\ufffd\ufffe") == "ok\ufffd\ufffd"
    assert repair.sub(lambda m: "?", "naïve") == "naïve"


def test_receiver_is_hardened():
    """The OTLP receiver has size limits and timeouts, drops client metadata and has CORS off."""
    protocols = load(*BASE)["receivers"]["otlp"]["protocols"]
    grpc, http = protocols["grpc"], protocols["http"]
    assert grpc["endpoint"].endswith(":4317") and http["endpoint"].endswith(":4318")
    assert 0 < grpc["max_recv_msg_size_mib"] <= 16
    assert 0 < http["max_request_body_size"] <= 16 * 1024 * 1024
    assert grpc["include_metadata"] is False and http["include_metadata"] is False
    assert "cors" not in http
    for key in ("read_header_timeout", "read_timeout", "write_timeout", "idle_timeout"):
        assert http[key], key
    assert grpc["keepalive"]["server_parameters"]["max_connection_age"]


def test_exporters_and_extensions():
    """debug is defined but unused, file writes rotated OTLP JSON, clickhouse creates its schema, otlphttp reads env."""
    base = load(*BASE)
    used = {e for p in base["service"]["pipelines"].values() for e in p["exporters"]}
    assert "debug" in base["exporters"] and "debug" not in used
    for name in ("file/traces", "file/metrics"):
        exp = base["exporters"][name]
        assert exp["format"] == "json"
        assert exp["path"].endswith(".jsonl")
        assert exp["rotation"]["max_megabytes"] > 0 and exp["rotation"]["max_backups"] > 0
        assert name in used
    assert base["service"]["extensions"] == ["health_check"]
    assert base["extensions"]["health_check"]["endpoint"].endswith(":13133")

    ch = load(*VARIANTS["clickhouse"])["exporters"]["clickhouse"]
    assert ch["create_schema"] is True
    for key in ("endpoint", "username", "password"):
        assert str(ch[key]).startswith("${env:USAGETRACE_CLICKHOUSE_"), key

    fwd = load(*VARIANTS["forward-otlphttp"])["exporters"]["otlphttp/forward"]
    assert fwd["endpoint"].startswith("${env:")
    assert all(str(v).startswith("${env:") for v in fwd["headers"].values())


def test_only_env_provider_references():
    """Every ${...} reference in the collector config uses the env provider (no file/http fetches)."""
    for path in CONFIG_DIR.glob("*.yaml"):
        for ref in re.findall(r"\$\{([^}]*)\}", path.read_text(encoding="utf-8")):
            assert ref.startswith("env:"), (path.name, ref)


def test_generated_allowlist_file_is_not_stale(tmp_path):
    """allowlist.yaml equals what the generator renders now, and --check fails on a stale copy."""
    committed = (CONFIG_DIR / "allowlist.yaml").read_text(encoding="utf-8")
    assert committed == collector_config.render()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "usagetrace._internal.collector_config", "--check"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "allowlist.yaml"
    stale.write_text(committed.replace("      - 'service.version'\n", ""), encoding="utf-8")
    bad = subprocess.run(
        cmd + ["--path", str(stale)], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert bad.returncode == 1
    assert "stale" in bad.stderr
    written = subprocess.run(
        [sys.executable, "-m", "usagetrace._internal.collector_config", "--write", "--path", str(stale)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert written.returncode == 0 and stale.read_text(encoding="utf-8") == committed


def test_generator_measure_keys_and_rejects_unsafe_keys():
    """--measure-key adds declared usagetrace.measure.* keys; keys outside the prefix or with odd characters are refused."""
    text = collector_config.render([allowlist.MEASURE_PREFIX + "flowgroups"])
    assert (
        yaml.safe_load(text)["processors"]["redaction/allowlist"]["allowed_keys"].count(
            allowlist.MEASURE_PREFIX + "flowgroups"
        )
        == 1
    )
    with pytest.raises(ValueError):
        collector_config.render(["host.name"])
    with pytest.raises(ValueError):
        collector_config.render([allowlist.MEASURE_PREFIX + 'x") or true or ("'])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_otelcol_contrib_validate(name, tmp_path):
    """The real otelcol-contrib binary accepts each config variant (skipped where it is not installed)."""
    binary = shutil.which("otelcol-contrib")
    if binary is None:
        pytest.skip("otelcol-contrib is not on PATH (no Docker engine or release binary on this machine)")
    env = {
        **os.environ,
        "USAGETRACE_DATA_DIR": str(tmp_path),
        "USAGETRACE_CLICKHOUSE_PASSWORD": "x",
        "USAGETRACE_FORWARD_ENDPOINT": "https://127.0.0.1:1",
        "USAGETRACE_FORWARD_AUTH": "Bearer x",
    }
    args = [binary, "validate"] + [f"--config={CONFIG_DIR / f}" for f in VARIANTS[name]]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_name_shapes_python_and_re2_agree():
    """collector_rules.masked/clean_names (Python re, for `usagetrace collect`) decide as the generated RE2 config does."""
    re2 = _re2()
    length = re2.compile(collector_rules.NAME_LENGTH)
    samples = ["mypkg.io.read_table", "ValueError+subclass", "mypkg.E+subclass", "a+subclass+subclass", "名前.関数",
               "mycli run", "export:csv/x-y", " lead", "x\n", "x\ny", "=HYPERLINK(1)", "+cmd|x", "-1", "@a",
               "\x1b[2J", "alice@example.com", "a..b", "_", "1abc", "(numeric)", "dev", "a" * 256, "a" * 257,
               "é" * 256, "é" * 257, "€", "𝄞", "x\u200by", ""]
    for key, pattern in collector_rules.NAME_SHAPES.items():
        rx = re2.compile(pattern)
        for value in samples:
            go = bool(rx.search(value)) and bool(length.search(value))
            assert (collector_rules.masked(key, value) == value) == go, (key, value)
    assert collector_rules.clean_names({"usagetrace.params.set": ["sep", "x y"], "code.function.name": "=1",
                                        "usagetrace.args.count": 2}) == {
        "code.function.name": collector_rules.MASK, "usagetrace.args.count": 2}
    assert collector_rules.clean_names({"usagetrace.params.set": ["sep", "名前"]}) == {
        "usagetrace.params.set": ["sep", "名前"]}
