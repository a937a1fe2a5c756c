#!/usr/bin/env bash
# Installs the Prometheus server and promtool (Debian's `prometheus` package) for tests/deploy.
# Idempotent: does nothing when both are already on PATH. Needs root (CI and dev machines are).
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package's postinst tries to start the service; no init system here, tests start their own.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null
echo "installed: $(promtool --version 2>&1 | head -n1)"
