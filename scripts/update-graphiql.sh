#!/usr/bin/env bash
# Refreshes the GraphiQL the gateway serves from its own binary
# (gateway/assets/graphiql): the pinned versions below, from the npm
# registry. Run it when changing a version, then commit the files.
set -euo pipefail
cd "$(dirname "$0")/.."
GRAPHIQL=3.8.3
REACT=18.3.1
out=gateway/assets/graphiql
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" --silent >/dev/null)
for pkg in graphiql-$GRAPHIQL react-$REACT react-dom-$REACT; do
    mkdir -p "$tmp/$pkg" && tar xzf "$tmp/$pkg.tgz" -C "$tmp/$pkg"
done
mkdir -p "$out"
cp "$tmp/graphiql-$GRAPHIQL/package/graphiql.min.js" "$tmp/graphiql-$GRAPHIQL/package/graphiql.min.css" "$out/"
cp "$tmp/react-$REACT/package/umd/react.production.min.js" "$tmp/react-dom-$REACT/package/umd/react-dom.production.min.js" "$out/"
cp "$tmp/graphiql-$GRAPHIQL/package/LICENSE" "$out/LICENSE.graphiql"
cp "$tmp/react-$REACT/package/LICENSE" "$out/LICENSE.react"
echo "GraphiQL $GRAPHIQL and React $REACT in $out" >&2
