#!/usr/bin/env bash
# The archive (docs/retention.md) end to end: a node (SQLite, a snapshot every 100 events)
# takes orders for SECONDS_LOAD seconds (default 20); then, timed: a rebuild of the trades
# read model from offset 0, an account's history, an archive run of everything a snapshot
# covers (`ctl archive --older-than-seconds 0`), the same history and the same rebuild, now
# read from the archive. Usage: bin/scripts/bench-archive.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -q -p tradefloor
bin=target/release/tradefloor
work="$(mktemp -d)"
printf '[trading]\nsnapshot_every_events = 100\n' > "$work/node.toml"
TRADEFLOOR_LOG_FILTER=warn "$bin" node --config "$work/node.toml" --http 127.0.0.1:0 --data-dir "$work/data" >"$work/node.out" 2>"$work/node.err" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null && wait "$pid" || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 600); do grep -q 'listening on' "$work/node.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/.*listening on //p' "$work/node.out" | head -1)"
until curl -sf "$url/health/ready" >/dev/null; do sleep 0.2; done
"$bin" bench --node "$url" --accounts 1000 --concurrency 64 --duration-seconds "${SECONDS_LOAD:-20}" --seed 1 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("orders", d["ok"])'
sleep 2
db="$work/data"
hist() { curl -s -o /dev/null -w '%{time_total}' "$url/v1/accounts/${1}/history?limit=1000"; }
acct="$(curl -s "$url/v1/events?after=0&limit=1&kinds=account" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"][0]["stream"].split("|")[1])')"
echo "history of $acct before: $(hist $acct) s $(hist $acct) s"
echo "events in the journal: $(curl -s "$url/metrics" | awk '/^tradefloor_journal_events_total / {print $2}')"
rebuild() {
    local t0
    t0=$(date +%s.%N)
    "$bin" ctl --node "$url" rebuild trading.trades < /dev/null | tail -1
    echo "rebuild of trading.trades took $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s"
}
rebuild
start=$(date +%s.%N)
"$bin" ctl --node "$url" archive --older-than-seconds 0 < /dev/null | tail -2
end=$(date +%s.%N)
echo "archive took $(python3 -c "print(round($end-$start,2))") s"
"$bin" ctl --node "$url" archive --status
echo "history of $acct after: $(hist $acct) s $(hist $acct) s"
rebuild
du -sh "$db"/archive
