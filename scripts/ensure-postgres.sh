#!/usr/bin/env bash
# PostgreSQL's server binaries (Debian package `postgresql`) for the tests
# that run the services on Postgres: each such test makes a throwaway cluster
# (initdb in a temporary directory, pg_ctl on a free loopback port). Installs
# the package when missing; the tests and .ci/run call this.
set -euo pipefail
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing Debian's postgresql for the tests on Postgres" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
