#!/usr/bin/env bash
# The benchmark in one command, on a fresh machine (Linux, Rust toolchain):
# builds the gateway, the subgraphs and the load generator (profile
# `production`: fat LTO),
# then `bench all` starts the four processes on free loopback ports, seeds
# the store, runs root / nested / fanout / subscriptions / resilience from its own
# process and prints a Markdown report.
#
#   scripts/bench.sh                          # 20 s per phase after 3 s warm-up
#   scripts/bench.sh --duration 10 --warmup 2 # a quicker run
#   scripts/bench.sh --write ...              # also put the report into BENCHMARKS.md
#   scripts/bench.sh --peers                  # against Hive Router and graphql-tools instead
#   scripts/bench.sh --pgo ...                # the gateway built with profile-guided optimization (scripts/pgo.sh)
#   scripts/bench.sh --scenarios soak         # 5 min of load, a subgraph killed twice (opt-in)
#
# `--peers` installs the peers first, cached under target/peers: Hive Router
# (crates.io, pinned) and the graphql-tools stitching gateway (npm, from
# bench/peers/package-lock.json). CI does not run it.
#
# Every other option goes to `bench all` / `bench peers` (`target/production/bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

write=0
peers=0
pgo=0
args=()
for a in "$@"; do
    case "$a" in
        --write) write=1 ;;
        --peers) peers=1 ;;
        --pgo) pgo=1 ;;
        *) args+=("$a") ;;
    esac
done

HIVE_VERSION=0.2.0
install_peers() {
    local dir=target/peers
    mkdir -p "$dir/npm"
    if [ ! -x "$dir/hive-router-$HIVE_VERSION/bin/hive_router" ]; then
        echo "bench: installing Hive Router $HIVE_VERSION from crates.io (once; takes a while)" >&2
        # Without the graphiql feature its build script fetches an npm package the registry does not serve.
        cargo install "hive-router@$HIVE_VERSION" --locked --features graphiql \
            --root "$dir/hive-router-$HIVE_VERSION"
    fi
    command -v node >/dev/null || { echo "bench: --peers needs Node.js (apt-get install nodejs npm)" >&2; exit 1; }
    cp bench/peers/package.json bench/peers/package-lock.json bench/peers/*.mjs "$dir/npm/"
    if ! cmp -s bench/peers/package-lock.json "$dir/npm/.installed-lock" 2>/dev/null; then
        echo "bench: installing the graphql-tools gateway from npm" >&2
        (cd "$dir/npm" && npm ci --no-audit --no-fund --loglevel=error)
        cp bench/peers/package-lock.json "$dir/npm/.installed-lock"
    fi
}

# 1,000 WebSocket subscriptions: a socket each in the gateway (the gateway
# raises its own limit; the load generator needs this one).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

scripts/ensure-build-tools.sh
if [ "$peers" = 1 ]; then
    install_peers
fi
# The production profile: fat LTO, one codegen unit.
cargo build --profile production -p gateway -p subgraphs -p bench
bin_dir=target/production
if [ "$pgo" = 1 ]; then
    scripts/pgo.sh
    bin_dir=target/pgo/bin
fi

report=target/bench-report.md
rm -f "$report"
status=0
command=all
[ "$peers" = 1 ] && command=peers
BENCH_COMMAND="scripts/bench.sh${*:+ $*}" \
    target/production/bench "$command" --bin-dir "$bin_dir" --markdown-out "$report" ${args[@]+"${args[@]}"} ||
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
