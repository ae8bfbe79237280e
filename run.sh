#!/usr/bin/env bash
# Builds and starts the whole system from config.toml: the dataset, log and
# pipeline subgraphs (SQLite files and content under ./data) and the gateway.
# Ctrl-C stops all four.
set -euo pipefail
cd "$(dirname "$0")"
config="${1:-config.toml}"

scripts/ensure-build-tools.sh
cargo build --release -p subgraphs -p gateway

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Dev mode: the sample secrets of config.toml are accepted (a production
# config sets its own, e.g. `signing_secret = "${SIGNING_SECRET}"`).
export STITCH_DEV=1

for service in dataset log pipeline; do
  target/release/"$service" --config "$config" &
  pids+=($!)
done
# The gateway introspects the subgraphs at start-up and retries while they come up.
target/release/gateway --config "$config" &
pids+=($!)

# Exit (stopping the others) as soon as any of the four exits.
wait -n
