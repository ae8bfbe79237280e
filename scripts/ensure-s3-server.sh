#!/usr/bin/env bash
# An S3-compatible server for the test that keeps dataset content in an
# object store: s3s-fs (crates.io; an S3 server over a directory), built
# once into target/tools. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.14.1
bin="target/tools/s3s-fs-$version/bin/s3s-fs"
if [ ! -x "$bin" ]; then
  echo "installing s3s-fs $version from crates.io for the object-store test (once)" >&2
  cargo install s3s-fs --version "$version" --features binary --locked --root "target/tools/s3s-fs-$version" >&2
fi
echo "$(pwd)/$bin"
