#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests (CORS from a real
# page, GraphiQL driven over WebDriver); installs them when missing. The
# tests call this themselves; .ci/run does too.
set -euo pipefail
command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
