#!/usr/bin/env bash
# Instructions per execution of the execute bench's workloads (`nested`,
# `TestQuery`), counted by valgrind's callgrind. Time on this shared machine
# drifts by 10% between runs; an instruction count does not, so a change of
# 1% in the gateway's own work shows. It says nothing of cache misses: time
# them end to end (scripts/bench.sh). Installs Debian's valgrind if missing.
#
#   scripts/bench-instructions.sh            # both workloads, 20 executions each
#   scripts/bench-instructions.sh 50 nested  # 50 executions of `nested` only
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
only=${2:-}
scripts/ensure-build-tools.sh
if ! command -v valgrind >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian's valgrind to count instructions" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
bin=$(cargo bench -p stitching --bench execute --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "the execute bench did not build" >&2; exit 1; }
# Setup (building the supergraph, making the answers) is in both counts;
# the difference is N executions. The largest count is the bench's own
# (criterion's probe for gnuplot is a process of its own).
count() {
  EXECUTE_ITERATIONS=$1 EXECUTE_ONLY=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 \
    | sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' | tr -d , | sort -n | tail -1
}
for workload in "stitching nested" "federation TestQuery"; do
  case "$workload" in *"$only"*) ;; *) continue ;; esac
  one=$(count 1 "$workload")
  more=$(count $((n + 1)) "$workload")
  echo "$workload: $(((more - one) / n)) instructions per execution (callgrind, $n executions)"
done
