#!/usr/bin/env bash
# Browser tests (HTML report, Dash integration) drive Debian's Chromium. Install it
# when missing and we are allowed to; otherwise those tests skip with a reason.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    && exit 0
  echo "chromium could not be installed; browser tests will be skipped" >&2
else
  echo "chromium is not installed (apt-get install chromium as root); browser tests will be skipped" >&2
fi
exit 0
