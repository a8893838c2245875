#!/usr/bin/env bash
# End-to-end benchmark of a cluster on one PostgreSQL database, every figure from one run:
#   1. cross-node against same-node ask: deposits (one account-entity ask each) into accounts
#      whose shards n1 owns, sent through n1 (same node) and through n2 (forwarded to n1);
#   2. cluster orders/s with 1, 2 and 3 nodes (closed loop, requests spread over the nodes);
#   3. rebalance time when a fourth node joins (from its start until every shard is active
#      and the new node owns its share);
#   4. failover time under load: kill -9 of a node while deposits run; time until an account
#      of one of its shards is served again through another node.
# Usage: bin/scripts/bench-cluster.sh [seconds per phase] [concurrency]
# Needs DATABASE_URL (a fresh database is made for the run). Nodes and the load generator
# share the machine's cores: read the figures as ratios within the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-15}"
concurrency="${2:-64}"
accounts="${ACCOUNTS:-200}"
: "${DATABASE_URL:?set DATABASE_URL}"

cargo build --release --locked -q -p tradefloor
bin=target/release/tradefloor
work="$(mktemp -d)"
database="tf_cluster_bench_$$"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $database"
journal="${DATABASE_URL%/*}/$database"
export TRADEFLOOR_CLUSTER__SECRET="bench-cluster-secret-$$"
export TRADEFLOOR_LOG_FILTER=warn
declare -A pids urls

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cluster_port1="$(free_port)"

start_node() { # id
    local id="$1" port
    port="$( [[ "$id" == n1 ]] && echo "$cluster_port1" || free_port )"
    "$bin" node --node-id "$id" --http 127.0.0.1:0 --cluster-addr "127.0.0.1:$port" \
        --seeds "127.0.0.1:$cluster_port1" --journal "$journal" >"$work/$id.out" 2>"$work/$id.err" &
    pids[$id]=$!
    for _ in $(seq 1 600); do grep -q 'listening on' "$work/$id.out" 2>/dev/null && break; sleep 0.1; done
    urls[$id]="$(sed -n 's/.*listening on //p' "$work/$id.out" | head -1)"
    until curl -sf "${urls[$id]}/health/ready" >/dev/null; do sleep 0.1; done
}
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $database" || true
}
trap cleanup EXIT

# Settled: every shard active, owned by an up member, each of the `count` members owning some.
settled() { # url count
    curl -sf "$1/v1/cluster/shards" | python3 -c '
import json, sys
shards = json.load(sys.stdin)["shards"]
owners = {s["owner"] for s in shards}
ok = all(s["handoff"] == "active" for s in shards) and len(owners) == int(sys.argv[1])
sys.exit(0 if ok else 1)' "$2"
}
wait_settled() { until settled "$1" "$2"; do sleep 0.05; done; }
now_ms() { date +%s%3N; }
bench() { "$bin" bench --accounts "$accounts" --json --concurrency "$concurrency" --duration-seconds "$seconds" "$@"; }
ok_rate() { # report.json → "N/s, p50 …, p99 … (errors, shed, rejected)"
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_micros"]
count = lambda v: sum(v.values()) if isinstance(v, dict) else v
errors = count(r["server_errors"]) + count(r["transport_errors"])
print("%.0f/s, p50 %s us, p99 %s us (errors %d, shed %d, rejected %d)" % (
    r["ok_per_second"], lat["p50"], lat["p99"], errors, count(r["shed"]), count(r["rejected"])))
PY
}

start_node n1
wait_settled "${urls[n1]}" 1
bench --node "${urls[n1]}" --seed 1 >"$work/orders1.json"
start_node n2
wait_settled "${urls[n1]}" 2
bench --node "${urls[n1]},${urls[n2]}" --seed 2 >"$work/orders2.json"
bench --deposits --owned-by n1 --node "${urls[n1]}" >"$work/same.json"
bench --deposits --owned-by n1 --node "${urls[n2]}" >"$work/cross.json"
start_node n3
wait_settled "${urls[n1]}" 3
bench --node "${urls[n1]},${urls[n2]},${urls[n3]}" --seed 3 >"$work/orders3.json"

joined_at="$(now_ms)"
start_node n4
wait_settled "${urls[n1]}" 4
rebalanced_ms=$(( $(now_ms) - joined_at ))
moved="$(curl -sf "${urls[n1]}/v1/cluster/members" | python3 -c 'import json,sys; print([m["shards"] for m in json.load(sys.stdin)["members"] if m["node_id"]=="n4"][0])')"

# Failover: deposits through n2..n4 in the background; kill -9 n1; probe an n1 account via n2.
victim="$(curl -sf "${urls[n2]}/v1/cluster/shards" | python3 -c '
import json, sys
shards = json.load(sys.stdin)
owner = {s["shard"]: s["owner"] for s in shards["shards"]}
def fnv(text):
    h = 0xcbf29ce484222325
    for b in text.encode(): h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    return h % shards["shard_count"]
print(next(f"probe-{i}" for i in range(10**6) if owner[fnv(f"probe-{i}")] == "n1"))')"
"$bin" bench --deposits --accounts "$accounts" --json --concurrency 16 --duration-seconds 8 \
    --node "${urls[n2]},${urls[n3]},${urls[n4]}" >"$work/failover-load.json" &
load_pid=$!
sleep 2
killed_at="$(now_ms)"
kill -9 "${pids[n1]}"
unset 'pids[n1]'
until curl -sf -m 2 -H 'content-type: application/json' -X POST \
    "${urls[n2]}/v1/accounts/$victim/deposits" -d '{"asset":"USD","amount":1}' >/dev/null; do
    sleep 0.02
done
failover_ms=$(( $(now_ms) - killed_at ))
wait "$load_pid" || true

echo "cluster of PostgreSQL nodes, release build, ${seconds}s per phase, ${concurrency} in flight"
echo "orders/s, 1 node:  $(ok_rate "$work/orders1.json")"
echo "orders/s, 2 nodes: $(ok_rate "$work/orders2.json")"
echo "orders/s, 3 nodes: $(ok_rate "$work/orders3.json")"
echo "deposit ask, same node (accounts of n1 through n1):  $(ok_rate "$work/same.json")"
echo "deposit ask, cross node (accounts of n1 through n2): $(ok_rate "$work/cross.json")"
python3 -c 'import json,sys; s,c=(json.load(open(p))["ok_per_second"] for p in sys.argv[1:]); print(f"cross/same throughput ratio: {c/s:.2f}")' "$work/same.json" "$work/cross.json"
echo "rebalance when n4 joins: ${rebalanced_ms} ms from its start to settled, n4 owns ${moved} shards"
echo "failover (kill -9 n1 under load → its account served through n2): ${failover_ms} ms"
echo "load during failover: $(ok_rate "$work/failover-load.json")"
