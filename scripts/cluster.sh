#!/usr/bin/env bash
# Starts a local cluster on this machine: Postgres, two replicas of each
# service (pipeline, dataset, log) on it, two gateways, and HAProxy in front
# of the gateways. Clients use http://127.0.0.1:4100/ (GraphQL, WebSocket,
# GraphiQL); Ctrl-C stops everything. Postgres (Debian's postgresql) and
# HAProxy (Debian's haproxy) are installed when missing; the data (the
# Postgres cluster, dataset content) stays under data/cluster.
#
# Ports: CLUSTER_PORT_BASE (4100) is HAProxy; +1, +2 the gateways; +3, +4
# pipeline; +5, +6 dataset; +7, +8 log; +9 Postgres.
# Binaries: target/release/NAME (built here), or GATEWAY_BIN, PIPELINE_BIN,
# DATASET_BIN, LOG_BIN (then nothing is built). CLUSTER_DIR moves the data.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
base="${CLUSTER_PORT_BASE:-4100}"
dir="${CLUSTER_DIR:-data/cluster}"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
scripts/ensure-postgres.sh
if ! command -v haproxy >/dev/null; then
  echo "installing Debian's haproxy for the cluster's load balancer" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi

if [ -z "${GATEWAY_BIN:-}" ]; then
  cargo build --release -p subgraphs -p gateway
fi
gateway_bin="${GATEWAY_BIN:-$root/target/release/gateway}"
pipeline_bin="${PIPELINE_BIN:-$root/target/release/pipeline}"
dataset_bin="${DATASET_BIN:-$root/target/release/dataset}"
log_bin="${LOG_BIN:-$root/target/release/log}"

port() { echo $((base + $1)); }
url() { echo "http://127.0.0.1:$(port "$1")/graphql"; }

# ---- Postgres: a cluster of its own under $dir/postgres ---------------------
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres=()
if [ "$(id -u)" = 0 ]; then
  as_postgres=(runuser -u postgres --)
  chown postgres: "$dir"
fi
pg() { "${as_postgres[@]}" "$bindir/$1" "${@:2}"; }
if [ ! -f "$dir/postgres/PG_VERSION" ]; then
  pg initdb -D "$dir/postgres" -U postgres -A trust -E UTF8 --locale=C >/dev/null
fi
pg pg_ctl -D "$dir/postgres" -l "$dir/postgres.log" -w \
  -o "-p $(port 9) -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=300" start >/dev/null
database="postgres://postgres@127.0.0.1:$(port 9)/platform"
if ! pg psql -h 127.0.0.1 -p "$(port 9)" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'platform'" | grep -q 1; then
  pg psql -h 127.0.0.1 -p "$(port 9)" -U postgres -qc "CREATE DATABASE platform"
fi

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg pg_ctl -D "$dir/postgres" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop INT TERM EXIT

# ---- the services: replica r (1, 2) of each --------------------------------
# Pipeline replica r calls dataset and log replica r.
for r in 1 2; do
  cat >"$dir/services-$r.toml" <<EOF
[services.pipeline]
listen = "127.0.0.1:$(port $((2 + r)))"
database = "$database"
workers = 4
dataset_url = "$(url $((4 + r)))"
log_url = "$(url $((6 + r)))"
service_token = "cluster-service-token"
[services.pipeline.authorization]
default = ["*"]

[services.dataset]
listen = "127.0.0.1:$(port $((4 + r)))"
database = "$database"
data_dir = "$dir/datasets"
signing_secret = "cluster-signing-secret"
service_token = "cluster-service-token"
[services.dataset.authorization]
default = ["*"]

[services.log]
listen = "127.0.0.1:$(port $((6 + r)))"
database = "$database"
service_token = "cluster-service-token"
[services.log.authorization]
default = ["*"]
EOF
  for service in dataset log pipeline; do
    bin="${service}_bin"
    "${!bin}" --config "$dir/services-$r.toml" &
    pids+=($!)
  done
done

# ---- two gateways, each over every replica ---------------------------------
subgraph() { # name, first replica's offset, hidden fields
  cat <<EOF
[[subgraphs]]
name = "$1"
url = "$(url "$2")"
replicas = ["$(url $(($2 + 1)))"]
ws_url = "ws://127.0.0.1:$(port "$2")/graphql"
timeout_ms = 10000
stitching_files = ["$root/gateway/stitching/$1.graphql"]
hide = [$3]
propagate_headers = ["authorization", "x-forwarded-email"]

EOF
}
{
  printf '[gateway]\nlisten = "127.0.0.1:%s"\nintrospection = true\nhot_reload = false\n\n' "$(port 1)"
  subgraph pipeline 3 '"Query.pipelinesByIds"'
  subgraph dataset 5 '"Query.datasetsByIds", "Mutation.recordDatasetProducer", "Subscription.datasetUpdated"'
  subgraph log 7 '"Query.pipelineLogs", "Query.pipelineLogPages", "Mutation.ingestLogs", "Subscription.logStream"'
} >"$dir/gateway.toml"
for g in 1 2; do
  "$gateway_bin" --config "$dir/gateway.toml" --listen "127.0.0.1:$(port "$g")" &
  pids+=($!)
done

# ---- HAProxy in front of the gateways --------------------------------------
# HAProxy counts a server as up until a check fails, so it starts once both
# gateways have built their schema (`/health` says "ok", not "starting");
# its checks then take out a gateway that restarts.
gateway_up() { # gateway number
  local reply
  reply=$({ printf 'GET /health HTTP/1.0\r\n\r\n' >&3; cat <&3; } \
    3<>"/dev/tcp/127.0.0.1/$(port "$1")" 2>/dev/null) || return 1
  [[ $reply == *'"status":"ok"'* ]]
}
for g in 1 2; do
  for _ in $(seq 600); do gateway_up "$g" && break; sleep 0.1; done
  gateway_up "$g" || { echo "cluster: gateway $g on $(port "$g") did not start within 60 s" >&2; exit 1; }
done
cat >"$dir/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend graphql
  bind 127.0.0.1:$(port 0)
  default_backend gateways
backend gateways
  balance roundrobin
  option httpchk GET /health
  http-check expect rstring status.:.ok
  server gateway1 127.0.0.1:$(port 1) check inter 1s
  server gateway2 127.0.0.1:$(port 2) check inter 1s
EOF
haproxy -db -f "$dir/haproxy.cfg" &
pids+=($!)

echo "cluster: http://127.0.0.1:$(port 0)/ (HAProxy over gateways on $(port 1), $(port 2); Postgres on $(port 9))" >&2
# Stop everything as soon as any one of them exits.
wait -n
