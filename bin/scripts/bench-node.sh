#!/usr/bin/env bash
# End-to-end benchmark of one node through HTTP, every figure from the same run:
#   1. the HTTP ceiling: `bench --baseline` (GET /health/live) at the same concurrency;
#   2. the maximum rate of persisted orders: closed loop at CONCURRENCY callers;
#   3. latency at half that rate: open loop at max/2 orders/s;
#   4. overload: open loop at twice the maximum, with the node's RSS sampled every second.
# Usage: bin/scripts/bench-node.sh [sqlite|postgres] [seconds per phase] [concurrency]
# PostgreSQL needs DATABASE_URL (a fresh database is made for the run).
set -euo pipefail
cd "$(dirname "$0")/../.."
backend="${1:-sqlite}"
seconds="${2:-20}"
concurrency="${3:-64}"
accounts="${ACCOUNTS:-1000}"

cargo build --release --locked -q -p tradefloor
bin=target/release/tradefloor
work="$(mktemp -d)"
node_args=(node --http 127.0.0.1:0 --data-dir "$work/data")
if [[ "$backend" == postgres ]]; then
    : "${DATABASE_URL:?set DATABASE_URL for the PostgreSQL run}"
    database="tf_bench_$$"
    psql -q "$DATABASE_URL" -c "CREATE DATABASE $database"
    node_args+=(--journal "${DATABASE_URL%/*}/$database")
fi

TRADEFLOOR_LOG_FILTER=warn "$bin" "${node_args[@]}" >"$work/node.out" 2>"$work/node.err" &
node_pid=$!
cleanup() {
    kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" || true
    if [[ -n "${database:-}" ]]; then
        psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $database" || true
    fi
}
trap cleanup EXIT
for _ in $(seq 1 600); do
    grep -q 'listening on' "$work/node.out" 2>/dev/null && break
    sleep 0.1
done
url="$(sed -n 's/.*listening on //p' "$work/node.out" | head -1)"
until curl -sf "$url/health/ready" >/dev/null; do sleep 0.2; done
echo "node $url ($backend), load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$node_pid/status"; }
bench() { "$bin" bench --node "$url" --accounts "$accounts" --json "$@"; }

bench --baseline --concurrency "$concurrency" --duration-seconds "$seconds" >"$work/baseline.json"
# Per-order costs of the closed-loop phase: the journal's counters and the node's CPU time.
counters() {
    curl -sf "$url/metrics" | awk '/^tradefloor_journal_(events|appends|commits)_total / {print $1, $2}'
    echo "cpu_ticks $(awk '{print $14 + $15}' "/proc/$node_pid/stat")"
}
counters >"$work/counters_before"
bench --concurrency "$concurrency" --duration-seconds "$seconds" --seed 1 >"$work/closed.json"
counters >"$work/counters_after"
max="$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["ok_per_second"]))' "$work/closed.json")"
half=$(( max / 2 > 0 ? max / 2 : 1 ))
bench --rate "$half" --duration-seconds "$seconds" --seed 2 >"$work/half.json"
rss_before="$(rss_kib)"
( peak=0; while kill -0 "$node_pid" 2>/dev/null; do
      now="$(rss_kib || echo 0)"; (( now > peak )) && peak=$now && echo "$peak" >"$work/rss_peak"
      sleep 1
  done ) &
sampler=$!
bench --rate $(( max * 2 )) --duration-seconds "$seconds" --seed 3 >"$work/double.json"
kill "$sampler" 2>/dev/null || true
rss_after="$(rss_kib)"
curl -sf "$url/health/live" >/dev/null && alive=yes || alive=no

python3 - "$work" "$backend" "$rss_before" "$(cat "$work/rss_peak" 2>/dev/null || echo 0)" "$rss_after" "$alive" <<'PY'
import json, sys
work, backend, rss_before, rss_peak, rss_after, alive = sys.argv[1:]
load = lambda name: json.load(open(f"{work}/{name}.json"))
base, closed, half, double = load("baseline"), load("closed"), load("half"), load("double")
lat = lambda r: r["latency_micros"]
print(f"backend: {backend}")
print(f"HTTP ceiling (GET /health/live): {base['ok_per_second']:.0f} req/s, p99 {lat(base)['p99']} µs")
print(f"orders, closed loop x{closed['concurrency']}: {closed['ok_per_second']:.0f} orders/s "
      f"(ratio to the ceiling {closed['ok_per_second'] / base['ok_per_second']:.4f}), "
      f"p50 {lat(closed)['p50']} µs, p99 {lat(closed)['p99']} µs, rejected {closed['rejected']}, shed {closed['shed']}")
print(f"orders, open loop at half ({half['offered_rate']}/s): achieved {half['achieved_rate']:.0f}/s, "
      f"p50 {lat(half)['p50']} µs, p99 {lat(half)['p99']} µs, p99.9 {lat(half)['p99_9']} µs")
print(f"overload, open loop at 2x ({double['offered_rate']}/s): ok {double['ok']}, shed {double['shed']}, "
      f"5xx {double['server_errors']}, transport errors {double['transport_errors']}, dropped {double['dropped']}, "
      f"node alive after: {alive}")
def counters(name):
    values = {}
    for line in open(f"{work}/counters_{name}"):
        key, value = line.split()
        values[key] = float(value)
    return values
before, after = counters("before"), counters("after")
delta = lambda key: after.get(key, 0) - before.get(key, 0)
orders = closed["ok"]
ticks_per_second = 100
if orders:
    print(f"per order (closed loop, {orders} orders): "
          f"{delta('tradefloor_journal_appends_total') / orders:.2f} appends, "
          f"{delta('tradefloor_journal_events_total') / orders:.2f} events, "
          f"{delta('tradefloor_journal_commits_total') / orders:.3f} journal commits (fsyncs), "
          f"{delta('cpu_ticks') / ticks_per_second * 1e6 / orders:.0f} µs of node CPU")
print(f"node RSS: before {int(rss_before)//1024} MiB, peak {int(rss_peak)//1024} MiB, after {int(rss_after)//1024} MiB")
PY
