#!/usr/bin/env bash
# A real OTLP receiver for the tracing test: Rotel, an OpenTelemetry
# collector (gRPC and HTTP receivers, a debug log of every span it gets),
# from its PyPI wheel, which carries the binary. Installed under
# target/tools/rotel when missing and printed; the test calls this itself,
# .ci/run does too.
set -euo pipefail
cd "$(dirname "$0")/.."
version="0.0.1a15"
dir="target/tools/rotel-$version"
bin="$dir/rotel/rotel-agent"
if [ ! -x "$bin" ]; then
  echo "installing the Rotel OTLP receiver $version from PyPI" >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "$dir.tmp" "rotel==$version" >&2
  python3 -m zipfile -e "$dir.tmp"/rotel-*.whl "$dir.tmp/unpacked"
  chmod +x "$dir.tmp/unpacked/rotel/rotel-agent"
  rm -rf "$dir" && mv "$dir.tmp/unpacked" "$dir" && rm -rf "$dir.tmp"
fi
echo "$PWD/$bin"
