#!/usr/bin/env bash
# tests/test_collector_go_regexp.py runs the collector config's strings and patterns through
# Go's own strconv and regexp (standard library only: no modules are fetched). Install
# Debian's Go when missing and we are allowed to; otherwise that test skips with a reason.
set -u
if command -v go >/dev/null 2>&1 || [ -x /usr/lib/go-1.19/bin/go ] || [ -x /usr/lib/go/bin/go ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's golang-go for the collector regexp tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null \
    && exit 0
  echo "golang-go could not be installed; the Go regexp tests will be skipped" >&2
else
  echo "go is not installed (apt-get install golang-go as root); the Go regexp tests will be skipped" >&2
fi
exit 0
