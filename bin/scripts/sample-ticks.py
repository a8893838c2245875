#!/usr/bin/env python3
"""Writes a recorded-looking tick file (at,price,quantity) for backtests and `tradefloor feed`:
a random walk with drifting regimes, from a fixed seed, so the file is the same every time.

    bin/scripts/sample-ticks.py > strategy/tests/data/ticks.csv
"""
import random
import sys

SEED = 20261207
TICKS = 4000
START_MICROS = 1_764_547_200_000_000  # 2025-12-01T00:00:00Z


def main() -> None:
    rng = random.Random(SEED)
    price = 50_000.0
    drift = 0.0
    at = START_MICROS
    out = sys.stdout
    out.write("# sample ticks: bin/scripts/sample-ticks.py (seed %d)\n" % SEED)
    out.write("at,price,quantity\n")
    for index in range(TICKS):
        if index % 400 == 0:
            drift = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0]) * 2.0
        price = max(100.0, price + drift + rng.gauss(0.0, 25.0))
        at += rng.randint(50_000, 600_000)
        out.write("%d,%d,%d\n" % (at, round(price), rng.randint(1, 20)))


if __name__ == "__main__":
    main()
