#!/usr/bin/env bash
# The benchmark in one command, on a fresh machine (Linux, Rust toolchain):
# builds the gateway, the subgraphs and the load generator in release mode,
# then `bench all` starts the four processes on free loopback ports, seeds
# the store, runs root / nested / fanout / subscriptions from its own
# process and prints a Markdown report.
#
#   scripts/bench.sh                          # 20 s per phase after 3 s warm-up
#   scripts/bench.sh --duration 10 --warmup 2 # a quicker run
#   scripts/bench.sh --write ...              # also put the report into BENCHMARKS.md
#
# Every other option goes to `bench all` (see `target/release/bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

write=0
args=()
for a in "$@"; do
    if [ "$a" = "--write" ]; then write=1; else args+=("$a"); fi
done

# 1,000 WebSocket subscriptions: two sockets each in the gateway.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release -p gateway -p subgraphs -p bench

report=target/bench-report.md
rm -f "$report"
status=0
BENCH_COMMAND="scripts/bench.sh${*:+ $*}" \
    target/release/bench all --bin-dir target/release --markdown-out "$report" ${args[@]+"${args[@]}"} ||
    status=$?

# A failed scenario is in the report too: record it rather than hide it.
if [ "$write" = 1 ] && [ -s "$report" ]; then
    marker='<!-- bench results: everything below is written by scripts/bench.sh --write -->'
    tmp=$(mktemp)
    if [ -f BENCHMARKS.md ] && grep -qF "$marker" BENCHMARKS.md; then
        sed "/^$(printf '%s' "$marker" | sed 's/[][\/.*^$]/\\&/g')\$/q" BENCHMARKS.md > "$tmp"
    else
        printf '# Benchmarks\n\n%s\n' "$marker" > "$tmp"
    fi
    printf '\n' >> "$tmp"
    cat "$report" >> "$tmp"
    mv "$tmp" BENCHMARKS.md
    echo "bench: BENCHMARKS.md updated" >&2
fi
exit "$status"
