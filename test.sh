#!/usr/bin/env bash
# Install everything the tests need (Python packages; Debian's chromium and chromium-driver,
# postgresql and redis-server when run as root) and run the whole test suite, browser tests
# and the scaleout tier (real PostgreSQL, Redis and S3 servers on loopback) included.
# Extra arguments go to pytest, e.g. ./test.sh -k login
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing chromium and chromium-driver for the browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "The browser tests need Chromium and its driver. Install them with:" >&2
    echo "  sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
fi
# The scaleout tier starts Debian's PostgreSQL and Redis itself (tests/scaleout/servers.py);
# without them, and not root, it skips and says why.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing postgresql and redis-server for the scaleout tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
  else
    echo "The scaleout tests need postgresql and redis-server (they will be skipped):" >&2
    echo "  sudo apt-get install -y postgresql redis-server" >&2
  fi
fi
export DASH_TEST_CHROMEPATH="${DASH_TEST_CHROMEPATH:-$(command -v chromium)}"
exec .venv/bin/python -m pytest "$@"
