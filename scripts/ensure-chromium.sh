#!/usr/bin/env bash
# Debian's Chromium for the browser tests (CORS from a real page); installs
# it when missing. The tests call this themselves; .ci/run does too.
set -euo pipefail
command -v chromium >/dev/null && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing Debian's chromium for the browser tests" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
