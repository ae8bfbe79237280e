#!/usr/bin/env bash
# The gateway built with profile-guided optimization (PGO) and laid out
# again by BOLT, for production and for the benchmark
# (`scripts/bench.sh --pgo`):
#
#   scripts/pgo.sh     # -> target/pgo/bin/gateway, beside links to the other production binaries
#
# 1. builds the production binaries, and a gateway instrumented to count
#    which code runs (target/pgo/generate);
# 2. `bench train` runs every workload the benchmark times through it for
#    about a minute; each gateway process adds its counts to target/pgo/raw
#    as it exits;
# 3. llvm-profdata merges them (the LLVM major release rustc is built on:
#    Debian's llvm-N, installed when missing, as is bolt-N);
# 4. builds the gateway again with that profile (target/pgo/use), keeping
#    its relocations so that BOLT may move code;
# 5. BOLT instruments that binary, `bench train` runs it again, and BOLT
#    lays out its functions and blocks in the order they ran.
#
# Both builds have a target directory of their own: different RUSTFLAGS
# would rebuild the normal one from scratch each time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-build-tools.sh

llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$llvm" ] || { echo "pgo: cannot read rustc's LLVM version from 'rustc -vV'" >&2; exit 1; }
tools=/usr/lib/llvm-$llvm/bin
if [ ! -x "$tools/llvm-profdata" ] || [ ! -x "$tools/llvm-bolt" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "pgo: installing Debian's llvm-$llvm and bolt-$llvm (rustc is built on LLVM $llvm)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "llvm-$llvm" "bolt-$llvm" >/dev/null
fi

pgo=$PWD/target/pgo
cargo build --profile production -p gateway -p subgraphs -p bench
RUSTFLAGS="-Cprofile-generate=$pgo/raw" CARGO_TARGET_DIR=$pgo/generate \
    cargo build --profile production -p gateway

# A directory for `--bin-dir`: every production binary but the gateway,
# which the caller puts there.
beside() {
    local dir=$1
    rm -rf "$dir"
    mkdir -p "$dir"
    for f in target/production/*; do
        if [ -f "$f" ] && [ -x "$f" ] && [ "$(basename "$f")" != gateway ]; then
            ln -s "$PWD/$f" "$dir/"
        fi
    done
}

train() {
    target/production/bench train --bin-dir "$pgo/train" \
        --runs 200 --log-lines 4000 --subscriptions 200 --fanout 1,10,100
}

# Build scripts and proc macros were instrumented too, and wrote counts of
# their own while the gateway built: only the training's are wanted.
rm -rf "$pgo/raw"
beside "$pgo/train"
cp "$pgo/generate/production/gateway" "$pgo/train/gateway"
train
"$tools/llvm-profdata" merge -o "$pgo/gateway.profdata" "$pgo/raw"

RUSTFLAGS="-Cprofile-use=$pgo/gateway.profdata -Clink-arg=-Wl,--emit-relocs" \
    CARGO_TARGET_DIR=$pgo/use cargo build --profile production -p gateway
built=$pgo/use/production/gateway

rm -rf "$pgo/bolt"
mkdir -p "$pgo/bolt"
beside "$pgo/train"
# BOLT reports at length: its output is kept, and shown when it fails.
bolt() {
    "$tools/llvm-bolt" "$@" > "$pgo/bolt/log" 2>&1 || { cat "$pgo/bolt/log" >&2; exit 1; }
}
bolt "$built" -o "$pgo/train/gateway" -instrument \
    --instrumentation-file="$pgo/bolt/counts" --instrumentation-file-append-pid
train
"$tools/merge-fdata" "$pgo/bolt"/counts.*.fdata > "$pgo/gateway.fdata"
beside "$pgo/bin"
bolt "$built" -o "$pgo/bin/gateway" -data="$pgo/gateway.fdata" \
    -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions \
    -split-all-cold -split-eh -icf=1 -use-gnu-stack
echo "pgo: target/pgo/bin/gateway is built with profile-guided optimization and BOLT" >&2
