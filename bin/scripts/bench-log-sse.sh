#!/usr/bin/env bash
# The log to one outside consumer: a node's journal filled by SECONDS of closed-loop orders,
# then read from offset 0 by one `GET /v1/events` Server-Sent Events connection until it has
# every event, against the same log read as JSON pages of 1 000 (`?after=&limit=1000`, one
# request after another): events per second each way, and their ratio.
# Usage: bin/scripts/bench-log-sse.sh [seconds of orders]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-15}"

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
echo "filling the log: ${seconds} s of orders" >&2
"$bin" bench --node "$url" --accounts 1000 --concurrency 64 --duration-seconds "$seconds" \
    --json >"$work/fill.json"
python3 - "$url" <<'PY'
import http.client, json, sys, time, urllib.parse

url = urllib.parse.urlparse(sys.argv[1])

def connect():
    return http.client.HTTPConnection(url.hostname, url.port, timeout=60)

def head():
    """The journal's last offset: what a read model has read plus its lag."""
    connection = connect()
    connection.request("GET", "/v1/projections")
    projections = json.loads(connection.getresponse().read())["projections"]
    return max(p["read_to"] + p["lag"] for p in projections)

last = head()
print(f"log: {last} events", file=sys.stderr)

def pages():
    connection = connect()
    after, events, started = 0, 0, time.perf_counter()
    while after < last:
        connection.request("GET", f"/v1/events?after={after}&limit=1000")
        page = json.loads(connection.getresponse().read())
        events += len(page["events"])
        after = page["next_after"]
    return events, time.perf_counter() - started

def sse():
    connection = connect()
    started = time.perf_counter()
    connection.request("GET", "/v1/events", headers={"Accept": "text/event-stream"})
    response = connection.getresponse()
    events, seen = 0, 0
    while seen < last:
        line = response.readline()
        if line.startswith(b"id: "):
            seen = int(line[4:])
            events += 1
    return events, time.perf_counter() - started

page_events, page_seconds = pages()
sse_events, sse_seconds = sse()
page_rate, sse_rate = page_events / page_seconds, sse_events / sse_seconds
print(f"JSON pages of 1000: {page_events} events in {page_seconds:.2f} s = {page_rate:.0f} events/s")
print(f"one SSE connection: {sse_events} events in {sse_seconds:.2f} s = {sse_rate:.0f} events/s "
      f"({sse_rate / page_rate:.2f} of the pages)")
PY
