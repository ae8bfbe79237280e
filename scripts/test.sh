#!/usr/bin/env bash
# Every test: the workspace's tests (unit, snapshot, end to end on the
# services' embedded SQLite), then the end-to-end suite again with every
# service on Postgres (a throwaway cluster the tests make themselves, from
# Debian's postgresql, installed by scripts/ensure-postgres.sh when missing).
# Extra arguments go to both runs (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-tools.sh
scripts/ensure-postgres.sh
cargo test --workspace "$@"
E2E_STORAGE=postgres cargo test -p e2e --test e2e "$@"
