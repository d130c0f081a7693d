"""FeatureSet: every causal model input for a market, precomputed over the whole panel.

Row t of every input uses only data indexed <= t (see ``data/market.py``); the labels are
targets and look forward by design. Unavailable inputs are 0 with their mask False, never noise.
Shapes: T days, N stocks, S sectors, F_s sector features.
"""

from __future__ import annotations

import jax
from flax import struct

STOCK_FEATURES = (
    "ret_1d", "ret_5d", "ret_20d",           # log returns
    "vol_20d",                               # annualised std of 20 daily log returns
    "rsi_14",                                # Wilder RSI, scaled (RSI - 50) / 50
    "macd_hist",                             # MACD(12, 26, 9) histogram / close
    "bb_pctb",                               # Bollinger %B (20, 2), clipped [-0.5, 1.5]
    "volume_ratio",                          # volume / trailing 20-day mean, capped at 5
    "delivery_pct",                          # delivery %, / 100
    "pe_z", "pb_z", "ev_ebitda_z",           # within-sector z-scores (median-centred)
    "roe", "roce", "leverage", "earnings_growth", "promoter_pledge",
    "rel_strength_sector",                   # 20-day log return minus its sector's
    "log_mcap",                              # cross-sectional z-score of log market cap
    "free_float", "inst_holding_change",
    "sentiment",
)
MACRO_FEATURES = (
    "vix_z", "vix_chg_1w", "fii_flow_z", "dii_flow_z", "pcr", "usdinr_mom", "crude_regime",
    "policy_rate", "credit_spread", "yield_slope", "index_ret_4w", "index_vol_4w", "breadth",
    "fno_oi_chg", "event_flag", "days_to_event", "regime_prev",
    "portfolio_drawdown",                    # filled by the environment from its own state (0 here)
)
SECTOR_FEATURES = (
    # the original's 8 node statistics over the trailing corr_window daily log returns
    "mean_ret", "std_ret", "cum_ret", "sharpe", "min_ret", "max_ret", "frac_pos", "median_ret",
    "rel_strength_13w", "rotation_score", "ret_1w", "ret_4w", "vol_20d", "breadth",
)  # definitions: features/build.py
# Levels kept beside the z-scores (``features.macro_levels``): trailing 20-day means, standardised
# over the long ``norm_window`` (252 days, longer than a regime) so a persistent regime level stays
# visible, and the index's 13-week return. Appended after MACRO_FEATURES when enabled.
MACRO_LEVEL_FEATURES = (
    "vix_ma20_z", "fii_flow_ma20_z", "dii_flow_ma20_z", "credit_spread_ma20_z", "pcr_ma20",
    "index_ret_13w",
)
# Causal regime probabilities (``features.hmm``: a 3-state Gaussian HMM on the index's daily log
# returns, refitted yearly on the days so far), calm state first. Appended last when enabled.
MACRO_HMM_FEATURES = ("hmm_p_calm", "hmm_p_mid", "hmm_p_volatile")
NUM_STOCK_FEATURES = len(STOCK_FEATURES)   # 22
NUM_MACRO_FEATURES = len(MACRO_FEATURES)   # 18
NUM_SECTOR_FEATURES = len(SECTOR_FEATURES)  # 14


def macro_feature_names(levels: bool, hmm: bool = False) -> tuple[str, ...]:
    """The Macro's input columns: MACRO_FEATURES, then MACRO_LEVEL_FEATURES with ``levels``
    (``features.macro_levels``), then MACRO_HMM_FEATURES with ``hmm``
    (``features.regime_hmm``)."""
    return (MACRO_FEATURES + (MACRO_LEVEL_FEATURES if levels else ())
            + (MACRO_HMM_FEATURES if hmm else ()))


def macro_width(levels: bool, hmm: bool = False) -> int:
    """F_m, the Macro's input columns: 18, + 6 with ``features.macro_levels``, + 3 with
    ``features.regime_hmm``."""
    return len(macro_feature_names(levels, hmm))


MACRO_WIDTHS = (18, 21, 24, 27)
"""Every F_m: the options' four combinations (each width names one)."""


def macro_names_for_width(width: int) -> tuple[str, ...]:
    """The Macro's input columns of a run whose inputs are ``width`` wide."""
    for levels in (False, True):
        for hmm in (False, True):
            if macro_width(levels, hmm) == int(width):
                return macro_feature_names(levels, hmm)
    raise ValueError(f"no macro feature layout is {width} wide (one of {MACRO_WIDTHS})")


@struct.dataclass
class FeatureSet:
    stock: jax.Array          # [T, N, 22] float32, normalised and clipped
    stock_mask: jax.Array     # [T, N, 22] bool: input available at t
    macro: jax.Array          # [T, F_m] float32, F_m = 18 (24 with features.macro_levels)
    macro_mask: jax.Array     # [T, F_m] bool
    sector: jax.Array         # [T, S, F_s] float32: GNN node inputs / sector statistics
    sector_mask: jax.Array    # [T, S] bool
    adjacency: jax.Array      # [T, S, S] float32: trailing-window |corr| >= threshold, self loops 1
    regime_label: jax.Array   # [T] int32: regime of the period after t (target), -1 if unknown
    regime_rule: jax.Array    # [T] int32: realised regime of the week ending at t by the rule, -1 if unknown
