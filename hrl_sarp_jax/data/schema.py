"""The canonical on-disk market: a folder of Parquet files (DESIGN §3).

``prices.parquet`` (required), long format, one row per (date, ticker):
    date (date32 or timestamp), ticker (str), sector (str), open, high, low, close (float),
    volume (float or int); optional adj_close, market_cap, circuit_band (fraction, e.g. 0.2),
    delivery_pct (0..100).
``macro.parquet`` (required): date + any subset of MACRO_SERIES (daily or lower frequency,
    joined as-of: a value is used from its own date on, never before).
``fundamentals.parquet`` (optional): date (the day the figure became public), ticker, any
    subset of FUNDAMENTAL_FIELDS.
``index.parquet`` (optional): date, close. The benchmark; if absent the cap- or
    equal-weighted universe is used.
``sentiment.parquet`` (optional): date, ticker, score (-1..1).
``regimes.parquet`` (optional, synthetic markets): date, regime (0 Bull, 1 Bear, 2 Sideways),
    the latent regime the generator used that day.
``meta.json`` (optional): {"market": str, "currency": str, "calendar": str,
    "sectors": [sector order], "synthetic": bool, ...}.
"""

from __future__ import annotations

import pyarrow as pa

PRICES_FILE = "prices.parquet"
MACRO_FILE = "macro.parquet"
FUNDAMENTALS_FILE = "fundamentals.parquet"
INDEX_FILE = "index.parquet"
SENTIMENT_FILE = "sentiment.parquet"
REGIMES_FILE = "regimes.parquet"
META_FILE = "meta.json"

PRICE_REQUIRED = ("date", "ticker", "sector", "open", "high", "low", "close", "volume")
PRICE_OPTIONAL = ("adj_close", "market_cap", "circuit_band", "delivery_pct")

# Macro series the feature layer understands (any subset may be present; others are kept as
# extra columns but not used by the default features).
MACRO_SERIES = (
    "vix",             # volatility index level
    "fii_flow",        # foreign institutional net buying (currency units per day)
    "dii_flow",        # domestic institutional net buying
    "put_call_ratio",  # index option put/call open-interest ratio
    "usd_inr",         # FX rate, currency units per USD
    "crude",           # crude oil price (USD/bbl)
    "policy_rate",     # central-bank policy rate, percent
    "credit_spread",   # corporate minus government yield, percent
    "gsec_10y",        # 10-year government bond yield, percent
    "fno_oi",          # total derivatives open interest (any unit)
    "event_flag",      # 1 on scheduled event days (published in advance: MPC, budget, ...)
)

FUNDAMENTAL_FIELDS = (
    "pe",
    "pb",
    "ev_ebitda",
    "roe",               # percent
    "roce",              # percent
    "debt_to_equity",
    "earnings_growth",   # YoY, percent
    "promoter_pledge",   # percent of promoter holding pledged
    "free_float",        # percent
    "inst_holding_change",  # change in institutional holding, percentage points
)

FLOAT = pa.float64()

PRICES_SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("sector", pa.string(), nullable=False),
        pa.field("open", FLOAT),
        pa.field("high", FLOAT),
        pa.field("low", FLOAT),
        pa.field("close", FLOAT),
        pa.field("volume", FLOAT),
        pa.field("adj_close", FLOAT),
        pa.field("market_cap", FLOAT),
        pa.field("circuit_band", FLOAT),
        pa.field("delivery_pct", FLOAT),
    ]
)
MACRO_SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False)] + [pa.field(n, FLOAT) for n in MACRO_SERIES])
FUNDAMENTALS_SCHEMA = pa.schema(
    [pa.field("date", pa.date32(), nullable=False), pa.field("ticker", pa.string(), nullable=False)]
    + [pa.field(n, FLOAT) for n in FUNDAMENTAL_FIELDS]
)
INDEX_SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False), pa.field("close", FLOAT)])
SENTIMENT_SCHEMA = pa.schema(
    [pa.field("date", pa.date32(), nullable=False), pa.field("ticker", pa.string(), nullable=False), pa.field("score", FLOAT)]
)
REGIMES_SCHEMA = pa.schema([pa.field("date", pa.date32(), nullable=False), pa.field("regime", pa.int8())])

SCHEMAS = {
    PRICES_FILE: PRICES_SCHEMA,
    MACRO_FILE: MACRO_SCHEMA,
    FUNDAMENTALS_FILE: FUNDAMENTALS_SCHEMA,
    INDEX_FILE: INDEX_SCHEMA,
    SENTIMENT_FILE: SENTIMENT_SCHEMA,
    REGIMES_FILE: REGIMES_SCHEMA,
}
REQUIRED_FILES = (PRICES_FILE, MACRO_FILE)
