#!/usr/bin/env bash
# Prometheus's promtool (Debian package `prometheus`) for the test that
# lints the /metrics pages; installs it when missing. The test calls this
# itself; .ci/run does too.
set -euo pipefail
command -v promtool >/dev/null && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing Debian's prometheus (for promtool) for the metrics test" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
