#!/bin/bash
# Runs once, on the first start of an empty ClickHouse volume (docker-entrypoint-initdb.d).
# Creates the least-privilege users: the collector's writer and Grafana's reader.
set -euo pipefail

: "${USAGETRACE_CLICKHOUSE_USER:=usagetrace_writer}"
: "${USAGETRACE_CLICKHOUSE_PASSWORD:?USAGETRACE_CLICKHOUSE_PASSWORD is required}"
: "${USAGETRACE_CLICKHOUSE_READER_PASSWORD:?USAGETRACE_CLICKHOUSE_READER_PASSWORD is required}"
DB="${CLICKHOUSE_DB:-usagetrace}"

# Quote a value as a ClickHouse string literal.
sql_quote() {
  local s=${1//\\/\\\\}
  s=${s//\'/\\\'}
  printf "'%s'" "$s"
}
WRITER_PW=$(sql_quote "$USAGETRACE_CLICKHOUSE_PASSWORD")
READER_PW=$(sql_quote "$USAGETRACE_CLICKHOUSE_READER_PASSWORD")

clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS \`${DB}\`;

-- The collector's clickhouse exporter: creates its tables (create_schema: true) and inserts.
CREATE USER IF NOT EXISTS \`${USAGETRACE_CLICKHOUSE_USER}\` IDENTIFIED WITH sha256_password BY ${WRITER_PW};
GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, ALTER TABLE, ALTER VIEW, INSERT, SELECT
  ON \`${DB}\`.* TO \`${USAGETRACE_CLICKHOUSE_USER}\`;

-- Grafana: read-only (readonly = 1: no writes, no DDL, no SET), except that the
-- datasource plugin sets max_execution_time on every query; it may change only
-- that, between 1 and 600 s (needs config.d/usagetrace.xml).
CREATE USER IF NOT EXISTS usagetrace_reader IDENTIFIED WITH sha256_password BY ${READER_PW}
  SETTINGS readonly = 1, max_execution_time = 60 MIN 1 MAX 600 CHANGEABLE_IN_READONLY;
GRANT SELECT ON \`${DB}\`.* TO usagetrace_reader;
SQL
