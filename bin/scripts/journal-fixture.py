#!/usr/bin/env python3
"""Writes a journal fixture: a SQLite journal made by this release, and what it reads as.

    bin/scripts/journal-fixture.py [--binary target/debug/tradefloor] OUT_DIR

Starts a node on a fresh data directory (snapshots every few events, so the journal holds
snapshots of accounts and books too), drives a scenario that writes every kind of event the
node journals (markets, deposits, limits, orders that trade, rest and are cancelled, a
withdrawal, a halt, quotes, a strategy started and stopped), reads the answers of the read
routes, stops the node and writes:

- OUT_DIR/journal.sqlite: the journal, compacted (VACUUM INTO, no WAL);
- OUT_DIR/expected.json: every read route's answer, route by route.

tests/tests/journal_fixture.rs starts a node of the current code on a copy of that journal
and checks that every route answers as expected.json says: a journal written by an earlier
release reads identically after schemas evolve (docs/schema-evolution.md). Regenerate it
only on purpose: the checked-in fixture is the earlier release.
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# The read routes the fixture records, in order: the test reads the same ones.
READS = [
    "/v1/markets/BTC-USD",
    "/v1/markets/ETH-USD",
    "/v1/markets/BTC-USD/book?depth=10",
    "/v1/markets/BTC-USD/trades",
    "/v1/markets/BTC-USD/candles?interval=1m",
    "/v1/accounts/alice",
    "/v1/accounts/bob",
    "/v1/accounts/carol",
    "/v1/accounts/alice/limits",
    "/v1/accounts/bob/limits",
    "/v1/accounts/alice/positions",
    "/v1/accounts/bob/positions",
    "/v1/accounts/alice/history",
    "/v1/accounts/bob/history",
    "/v1/accounts/carol/history",
    "/v1/accounts/alice/orders/1001",
    "/v1/accounts/alice/orders/1002",
    "/v1/accounts/alice/orders/1003",
    "/v1/accounts/bob/orders/2001",
    "/v1/accounts/bob/orders/2002",
    "/v1/accounts/carol/orders/3001",
    "/v1/accounts/carol/orders/3002",
    "/v1/accounts/carol/orders/3003",
    "/v1/strategies/fixture-momentum",
]

# Fields of answers that say when they were read rather than what the journal holds
# (a history read as of now).
VOLATILE = {"as_of", "server_time", "status_since", "known_at", "valid_at"}

BASE_TIME_US = 1_764_547_200_000_000  # 2025-12-01T00:00:00Z


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Node:
    def __init__(self, binary, data_dir):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["TRADEFLOOR_TRADING__SNAPSHOT_EVERY_EVENTS"] = "5"
        env["TRADEFLOOR_LOG_FILTER"] = "warn"
        self.process = subprocess.Popen(
            [binary, "node", "--http", f"127.0.0.1:{self.port}", "--data-dir", data_dir],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.call("GET", "/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("the node did not become ready")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        if status >= 300:
            sys.exit(f"{method} {path}: {status} {answer}")
        return answer

    def stop(self):
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(timeout=60) != 0:
            sys.exit("the node did not stop cleanly")


def order(node, order_id, account, side, quantity, price=None, order_type="limit", extra=None,
          expect=None):
    body = {
        "order_id": order_id,
        "account_id": account,
        "symbol": "BTC-USD",
        "side": side,
        "type": order_type,
        "quantity": quantity,
    }
    if price is not None:
        body["price"] = price
    if order_type == "market":
        body["time_in_force"] = "ioc"
    body.update(extra or {})
    if expect is None:
        return node.ok("POST", "/v1/orders", body)
    status, answer = node.call("POST", "/v1/orders", body)
    if status != expect:
        sys.exit(f"order {order_id}: {status} {answer}, expected {expect}")
    return answer


def scenario(node):
    market = {"symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": 1, "lot_size": 1}
    node.ok("POST", "/v1/markets", market)
    node.ok("POST", "/v1/markets", {**market, "symbol": "ETH-USD", "base": "ETH"})
    node.ok("POST", "/v1/markets/ETH-USD/halt", {})
    for account, asset, amount, command in [
        ("alice", "USD", 1_000_000, "d-alice"),
        ("bob", "BTC", 100, "d-bob"),
        ("carol", "USD", 50_000, "d-carol"),
    ]:
        node.ok(
            "POST",
            f"/v1/accounts/{account}/deposits",
            {"asset": asset, "amount": amount, "command_id": command},
        )
    node.ok(
        "PUT",
        "/v1/accounts/alice/limits",
        {"max_open_orders": 20, "max_order_notional": 400_000, "max_position": {"BTC": 60}},
    )
    order(node, 2001, "bob", "sell", 10, 100)
    order(node, 1001, "alice", "buy", 4, 100)  # trades 4 of bob's 10
    order(node, 2002, "bob", "sell", 5, 110)  # rests
    resting = order(node, 1002, "alice", "buy", 3, 90)  # rests, then cancelled
    node.ok("DELETE", f"/v1/orders/{resting['order_id']}")
    order(node, 1003, "alice", "buy", 8, 120, "market")  # takes bob's rest at 100, then 110
    order(node, 3001, "carol", "buy", 2, 95)  # rests
    # Rejected: the hold refused (funds), then the book refusing a post-only that crosses.
    order(node, 3002, "carol", "buy", 1_000, 100, expect=422)
    order(node, 3003, "carol", "buy", 1, 110, extra={"post_only": True}, expect=422)
    node.ok(
        "POST",
        "/v1/accounts/alice/withdrawals",
        {"asset": "USD", "amount": 1_000, "command_id": "w-alice"},
    )
    quotes = [{"at": BASE_TIME_US + i * 1_000_000, "price": 100 + i % 7, "quantity": i} for i in range(20)]
    node.ok("POST", "/v1/markets/BTC-USD/quotes", {"quotes": quotes})
    strategy = {
        "id": "fixture-momentum",
        "symbol": "BTC-USD",
        "source": "quotes",
        "account": "dave",
        "timeframe_seconds": 5,
        "predictors": [{"name": "momentum", "kind": "momentum", "weight": 1.0}],
        "ensemble": {"threshold": 0.25},
        "breaker": {"failures_max": 3, "open_bars": 10},
        "risk": {"order_quantity": 1, "max_position": 2, "max_orders_per_minute": 6},
    }
    node.ok("POST", "/v1/strategies", strategy)
    node.ok("POST", "/v1/strategies/fixture-momentum/start", {})
    node.ok("POST", "/v1/strategies/fixture-momentum/stop", {"reason": "fixture"})


def settled(node):
    """Waits until the trade tape shows the scenario's trades (read models trail the log)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        trades = node.ok("GET", "/v1/markets/BTC-USD/trades")
        if len(trades.get("trades", [])) >= 3:
            time.sleep(1)  # the other read models catch up within their poll interval
            return
        time.sleep(0.2)
    sys.exit("the trade tape did not show the scenario's trades")


def strip_volatile(value):
    if isinstance(value, dict):
        return {key: strip_volatile(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(item) for item in value]
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--binary", default="target/debug/tradefloor")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir:
        node = Node(args.binary, data_dir)
        try:
            scenario(node)
            settled(node)
            expected = {}
            for path in READS:
                status, answer = node.call("GET", path)
                expected[path] = {"status": status, "body": strip_volatile(answer)}
        finally:
            node.stop()
        journal = os.path.join(args.out_dir, "journal.sqlite")
        if os.path.exists(journal):
            os.remove(journal)
        with sqlite3.connect(os.path.join(data_dir, "journal.sqlite")) as source:
            source.execute("VACUUM INTO ?", (journal,))
    with open(os.path.join(args.out_dir, "expected.json"), "w") as out:
        json.dump(expected, out, indent=1, sort_keys=True)
        out.write("\n")
    print(f"wrote {journal} and expected.json ({len(READS)} routes)")


if __name__ == "__main__":
    main()
