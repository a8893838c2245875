#!/usr/bin/env python3
"""Reference values for the features' indicators (domain/src/features/), generated once and
checked in as domain/tests/fixtures/indicators.json; domain/tests/indicators.rs compares
every value to 1e-9 relative.

SMA, EMA, RSI, MACD, Bollinger bands and ATR come from TA-Lib (the `TA-Lib` package, which
ships the C library); VWAP, which TA-Lib lacks, from pandas (typical price times volume,
summed per UTC day). The bars are a seeded random walk of one-minute bars crossing midnight.

    python3 -m venv /tmp/ta && /tmp/ta/bin/pip install TA-Lib pandas numpy
    /tmp/ta/bin/python bin/scripts/indicator-fixtures.py > domain/tests/fixtures/indicators.json
"""
import json
import math
import random

import numpy as np
import pandas as pd
import talib

BARS = 400
START_MICROS = 1_796_601_600_000_000 - 200 * 60_000_000  # 200 minutes before a UTC midnight


def bars():
    rng = random.Random(20261207)
    close, rows = 100.0, []
    for index in range(BARS):
        open_ = close
        close = max(1.0, close * math.exp(rng.gauss(0.0, 0.004)))
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, 0.002)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, 0.002)))
        volume = float(rng.randint(1, 500))
        rows.append({"start": START_MICROS + index * 60_000_000, "open": round(open_, 6),
                     "high": round(high, 6), "low": round(low, 6), "close": round(close, 6),
                     "volume": volume})
    return rows


def values(array):
    return [None if math.isnan(value) else float(value) for value in array]


def main():
    rows = bars()
    high = np.array([row["high"] for row in rows])
    low = np.array([row["low"] for row in rows])
    close = np.array([row["close"] for row in rows])
    volume = np.array([row["volume"] for row in rows])
    macd, signal, histogram = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    frame = pd.DataFrame({"start": [row["start"] for row in rows], "high": high, "low": low,
                          "close": close, "volume": volume})
    day = frame["start"] // 86_400_000_000
    typical = (frame["high"] + frame["low"] + frame["close"]) / 3
    vwap = (typical * frame["volume"]).groupby(day).cumsum() / frame["volume"].groupby(day).cumsum()
    fixture = {
        "source": f"TA-Lib {talib.__version__} (VWAP: pandas {pd.__version__})",
        "bars": rows,
        "sma_20": values(talib.SMA(close, timeperiod=20)),
        "ema_20": values(talib.EMA(close, timeperiod=20)),
        "rsi_14": values(talib.RSI(close, timeperiod=14)),
        "macd_12_26_9": {"macd": values(macd), "signal": values(signal),
                         "histogram": values(histogram)},
        "bollinger_20_2": {"upper": values(upper), "middle": values(middle),
                           "lower": values(lower)},
        "atr_14": values(talib.ATR(high, low, close, timeperiod=14)),
        "vwap_daily": values(vwap.to_numpy()),
    }
    print(json.dumps(fixture, indent=1))


if __name__ == "__main__":
    main()
