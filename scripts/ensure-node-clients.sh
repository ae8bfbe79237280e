#!/usr/bin/env bash
# The npm clients the end-to-end tests drive (tests/clients, pinned by its
# package-lock.json): installed with `npm ci` when missing or stale. Node.js
# and npm come from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing Debian's nodejs and npm for the client tests" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error >&2
    cp package-lock.json node_modules/.installed-lock
fi
