#!/usr/bin/env bash
# Installs Debian's kcat for tests/streams/test_librdkafka.py (the test skips without it).
# Debian's kcat links librdkafka 2.0.2, which fails the embedded Tansu broker's ApiVersions
# reply; the test runs it on the librdkafka that the confluent-kafka wheel bundles (docs).
# Idempotent; needs root (CI and dev machines are).
set -euo pipefail

command -v kcat >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends kcat >/dev/null
echo "installed: $(kcat -V 2>&1 | grep -m1 Version)"
