"""Structural validation of collector-config/ (the bundled OpenTelemetry Collector).

No collector binary is needed: the files are loaded, merged the way the
collector merges several ``--config`` files (maps merge recursively, lists are
replaced), and checked against the pinned contrib distribution's components and
against :mod:`usagetrace._internal.allowlist`. Where ``otelcol-contrib`` is on
PATH the real ``validate`` command runs as well.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from usagetrace._internal import allowlist, collector_config

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


def _merge(into: dict, other: dict) -> dict:
    """Merge like the collector's confmap: maps recursively, everything else replaced."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def load(*names: str) -> dict:
    merged: dict = {}
    for name in names:
        data = yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8"))
        assert isinstance(data, dict), name
        _merge(merged, data)
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


def test_resource_keep_pattern_matches_exactly_the_resource_keys():
    """transform/allowlist keeps precisely the allowlist's resource keys on every resource."""
    cfg = load(*BASE)
    proc = cfg["processors"]["transform/allowlist"]
    for signal_key in ("trace_statements", "metric_statements"):
        (stmt,) = [s for s in _statements(proc, signal_key, "resource") if s.startswith("keep_matching_keys")]
        (pattern,) = _ottl_string_args(stmt)
        rx = re.compile(pattern)
        resource_keys = allowlist.allowed_keys("resource")
        for key in resource_keys:
            assert rx.search(key), key
        others = (allowlist.allowed_keys() - resource_keys) | {
            "host.name",
            "host.id",
            "service.name.extra",
            "xservice.name",
            "service_name",
            "user.name",
            "process.command_line",
            "k8s.pod.name",
            "cloud.region",
            "net.host.ip",
        }
        for key in others:
            assert not rx.search(key), key


def test_host_pattern_deletes_every_host_key_but_host_arch():
    """The RE2-compatible host.* pattern in transform/anonymize deletes all host keys except host.arch."""
    proc = load(*BASE)["processors"]["transform/anonymize"]
    for signal_key in ("trace_statements", "metric_statements"):
        patterns = [
            _ottl_string_args(s)[0]
            for s in _statements(proc, signal_key, "resource")
            if s.startswith("delete_matching_keys")
        ]

        def deleted(key: str, patterns=tuple(patterns)) -> bool:
            return any(re.search(p, key) for p in patterns)

        assert not deleted("host.arch")
        for key in (
            "host.name",
            "host.id",
            "host.ip",
            "host.mac",
            "host.a",
            "host.ar",
            "host.arc",
            "host.archx",
            "host.arch.x",
            "host.image.name",
            "host.type",
        ):
            assert deleted(key), key
        for prefix in ("net", "client", "user", "k8s", "cloud"):
            assert deleted(f"{prefix}.anything"), prefix
        for key in allowlist.allowed_keys("resource"):
            assert not deleted(key), key


def test_caps_equal_allowlist_limits():
    """Value length, attribute count and array length caps in the transforms equal the allowlist's constants."""
    cfg = load(*BASE)
    anonymize = cfg["processors"]["transform/anonymize"]
    contexts = {
        "trace_statements": ("resource", "span", "spanevent"),
        "metric_statements": ("resource", "datapoint"),
    }
    for signal_key, ctxs in contexts.items():
        for ctx in ctxs:
            stmts = _statements(anonymize, signal_key, ctx)
            assert f"truncate_all(attributes, {allowlist.MAX_VALUE_LENGTH})" in stmts, (signal_key, ctx)
            assert f"limit(attributes, {allowlist.MAX_ATTRIBUTES}, [])" in stmts, (signal_key, ctx)
    generated = cfg["processors"]["transform/allowlist"]
    array_keys = [a.key for a in allowlist.ATTRIBUTES if a.type.endswith("[]")]
    text = "\n".join(_statements(generated, "trace_statements", "span"))
    for key in array_keys:
        assert f'delete_key(attributes, "{key}")' in text
        assert f"> {allowlist.MAX_ARRAY_ITEMS}" in text


def test_filter_keeps_only_usagetrace_scope_and_allowed_services():
    """filter/usagetrace drops data outside the usagetrace scope, without service.name, or from unlisted services."""
    flt = load(*BASE)["processors"]["filter/usagetrace"]
    for conds in (flt["traces"]["span"], flt["metrics"]["metric"]):
        assert f'instrumentation_scope.name != "{allowlist.SCOPE_NAME}"' in conds
        assert 'resource.attributes["service.name"] == nil' in conds
        assert any(
            'IsMatch(resource.attributes["service.name"]' in c and "${env:USAGETRACE_ALLOWED_SERVICES:-" in c
            for c in conds
        )
    # generated: only usagetrace's own span events and metrics pass
    event_cond = flt["traces"]["spanevent"][0]
    for name in allowlist.EVENT_NAMES:
        assert f'name != "{name}"' in event_cond
    metric_cond = flt["metrics"]["datapoint"][0]
    for metric in allowlist.METRICS:
        assert f'metric.name != "{metric.name}"' in metric_cond


def _blocked_values() -> list[re.Pattern]:
    red = load(*BASE)["processors"]["redaction/allowlist"]
    pats = red["blocked_values"]
    for p in pats:
        # Go RE2: no lookaround, no backreferences.
        assert not re.search(r"\(\?<?[=!]|\\[1-9]", p), p
    return [re.compile(p) for p in pats]


@pytest.mark.parametrize(
    "value",
    [
        "jane.doe@example.com",
        "contact me at a+b@mail.example.co.uk please",
        "192.168.1.20",
        "from 10.0.0.1:8080",
        "255.255.255.255",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1",
        "::1",
        "2001:db8::",
        "addr=2001:db8::ff00:42:8329",
    ],
)
def test_blocked_values_catch_emails_and_ip_addresses(value):
    """Each e-mail address or IPv4/IPv6 address is matched by at least one blocked_values pattern."""
    assert any(p.search(value) for p in _blocked_values()), value


def test_blocked_values_leave_allowlisted_examples_alone():
    """None of the allowlist's documented example values (versions, ids, stack frames) would be masked."""
    pats = _blocked_values()
    samples = [a.example for a in allowlist.ATTRIBUTES] + [
        "3.11",
        "3.13.1",
        "1.4.2",
        "2024.10.1",
        "0.136.0",
        "mypkg.io:read_table:41\nmypkg._parse:row:12",
        "mypkg.cafe:beef:12",
        "ValueError",
        "mypkg.errors.BadInput",
        "/reports/2024",
        "linux",
        "amd64",
    ]
    for value in samples:
        for p in pats:
            assert not p.search(value), (p.pattern, value)


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
