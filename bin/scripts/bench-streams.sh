#!/usr/bin/env bash
# Stream fan-out: SUBSCRIBERS clients follow one market's SSE stream while orders flow at
# RATE/s (open loop), against the same load without subscribers, on one node (SQLite): events
# delivered per second, each trade's delay from the book to a subscriber, the orders' latency
# with and without the subscribers, and the node's RSS.
# Usage: bin/scripts/bench-streams.sh [subscribers] [rate] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
subscribers="${1:-1000}"
rate="${2:-500}"
seconds="${3:-20}"

cargo build --release --locked -q -p tradefloor
bin=target/release/tradefloor
work="$(mktemp -d)"
TRADEFLOOR_LOG_FILTER=warn "$bin" node --http 127.0.0.1:0 --data-dir "$work/data" \
    >"$work/node.out" 2>"$work/node.err" &
node_pid=$!
trap 'kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" || true' EXIT
for _ in $(seq 1 600); do
    grep -q 'listening on' "$work/node.out" 2>/dev/null && break
    sleep 0.1
done
url="$(sed -n 's/.*listening on //p' "$work/node.out" | head -1)"
until curl -sf "$url/health/ready" >/dev/null; do sleep 0.2; done
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$node_pid/status"; }
bench() { "$bin" bench --node "$url" --accounts 1000 --rate "$rate" --duration-seconds "$seconds" "$@"; }

bench --seed 1 --json >"$work/without.json"
rss_before="$(rss_kib)"
( peak=0; while kill -0 "$node_pid" 2>/dev/null; do
    rss="$(rss_kib)"; (( rss > peak )) && peak=$rss && echo "$peak" >"$work/peak"; sleep 0.5
  done ) &
sampler=$!
bench --seed 2 --stream-subscribers "$subscribers" --json >"$work/with.json"
kill "$sampler" 2>/dev/null || true
python3 - "$work" "$rss_before" "$(cat "$work/peak")" <<'PY'
import json, sys
work, before, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
without = json.load(open(f"{work}/without.json"))
with_ = json.load(open(f"{work}/with.json"))
stream = with_["stream"]
lat = lambda report: report["latency_micros"]
print(f"orders at {with_['offered_rate']}/s: ok {without['ok_per_second']:.0f}/s without subscribers, "
      f"{with_['ok_per_second']:.0f}/s with; latency p50/p99 ms "
      f"{lat(without)['p50']/1000:.1f}/{lat(without)['p99']/1000:.1f} without, "
      f"{lat(with_)['p50']/1000:.1f}/{lat(with_)['p99']/1000:.1f} with")
d = stream["delay_micros"]
print(f"stream: {stream['connected']} of {stream['subscribers']} subscribers, {stream['events']} events "
      f"({stream['events_per_second']:.0f}/s), {stream['trades']} trades; "
      f"trade delay p50/p99/p99.9 ms {d['p50']/1000:.1f}/{d['p99']/1000:.1f}/{d['p99_9']/1000:.1f}")
print(f"node RSS {before/1024:.0f} MiB before the subscribers, peak {peak/1024:.0f} MiB")
PY
