#!/usr/bin/env bash
# What the build needs besides the Rust toolchain: a C compiler (SQLite,
# ring) and make (jemalloc, the gateway's allocator, builds with configure
# and make). Installs Debian's packages when one is missing. run.sh,
# scripts/test.sh, scripts/bench.sh and .ci/run call this first.
set -euo pipefail
missing=()
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
[ ${#missing[@]} = 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing Debian's ${missing[*]} to build jemalloc and SQLite" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
