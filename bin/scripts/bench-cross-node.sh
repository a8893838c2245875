#!/usr/bin/env bash
# The cross-node ask in detail: two nodes on one PostgreSQL database, deposits into accounts
# whose shards n1 owns, sent alternately through n1 (same node) and through n2 (forwarded),
# twice each; for each run the rate, the latency and each node's CPU per call (from
# /proc/<pid>/stat), then the remoting's calls per frame from both nodes' metrics.
# Usage: bin/scripts/bench-cross-node.sh [seconds per run] [concurrency]
# Needs DATABASE_URL (a fresh database is made for the run).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-10}"
concurrency="${2:-64}"
: "${DATABASE_URL:?set DATABASE_URL}"

cargo build --release --locked -q -p tradefloor
bin=target/release/tradefloor
work="$(mktemp -d)"
database="tf_cross_bench_$$"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $database"
journal="${DATABASE_URL%/*}/$database"
export TRADEFLOOR_CLUSTER__SECRET="bench-cross-node-secret-$$"
export TRADEFLOOR_LOG_FILTER=warn
declare -A pids urls
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $database" || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
seed_port="$(free_port)"
start_node() { # id port
    "$bin" node --node-id "$1" --http 127.0.0.1:0 --cluster-addr "127.0.0.1:$2" \
        --seeds "127.0.0.1:$seed_port" --journal "$journal" >"$work/$1.out" 2>"$work/$1.err" &
    pids[$1]=$!
    for _ in $(seq 1 600); do grep -q 'listening on' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
    urls[$1]="$(sed -n 's/.*listening on //p' "$work/$1.out" | head -1)"
    until curl -sf "${urls[$1]}/health/ready" >/dev/null; do sleep 0.1; done
}
settled() { # url count
    curl -sf "$1/v1/cluster/shards" | python3 -c '
import json, sys
shards = json.load(sys.stdin)["shards"]
ok = all(s["handoff"] == "active" for s in shards) and len({s["owner"] for s in shards}) == int(sys.argv[1])
sys.exit(0 if ok else 1)' "$2"
}
start_node n1 "$seed_port"
until settled "${urls[n1]}" 1; do sleep 0.1; done
start_node n2 "$(free_port)"
until settled "${urls[n1]}" 2; do sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
deposits() { # url seconds
    "$bin" bench --accounts 200 --json --concurrency "$concurrency" --duration-seconds "$2" \
        --deposits --owned-by n1 --node "$1"
}
run() { # name url
    local n1_before n2_before
    n1_before="$(ticks "${pids[n1]}")"; n2_before="$(ticks "${pids[n2]}")"
    deposits "$2" "$seconds" >"$work/$1.json"
    python3 - "$work/$1.json" "$1" "$n1_before" "$(ticks "${pids[n1]}")" \
        "$n2_before" "$(ticks "${pids[n2]}")" <<'PY'
import json, sys
path, name, a1, b1, a2, b2 = sys.argv[1:]
r = json.load(open(path))
calls = r["ok"] or 1
per_call = lambda a, b: (float(b) - float(a)) * 1e4 / calls  # ticks of 10 ms, in µs
print(f"{name}: {r['ok_per_second']:.0f}/s, p50 {r['latency_micros']['p50']} µs, "
      f"p99 {r['latency_micros']['p99']} µs; CPU per call: n1 {per_call(a1, b1):.0f} µs, "
      f"n2 {per_call(a2, b2):.0f} µs")
PY
}
deposits "${urls[n1]}" 3 >/dev/null
for round in 1 2; do
    run "same node $round" "${urls[n1]}"
    run "cross node $round" "${urls[n2]}"
done
for id in n1 n2; do
    echo "$id: $(curl -sf "${urls[$id]}/metrics" | awk '/^tradefloor_cluster_calls_per_frame_(sum|count)/ {print $1, $2}' | tr '\n' ' ')"
done
