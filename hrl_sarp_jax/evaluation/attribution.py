"""Attribution by decision level (host side, NumPy): who earned the excess return, who traded.

Timing: row t of a weight array [T, N] is the book held over day t (after that day's trade)
and row t of ``r`` [T, N] is the simple return it earns (the backtest's ``weights[i]`` with
``returns[t[i] + 1]``); ``active`` [T, N] marks the stocks tradable when row t was chosen.

- ``equal_weight_benchmark``: each sector with >= 1 active stock gets 1 / S_active, split
  equally among its active stocks (a day with no active stock is all cash). It earns the
  returns without costs.
- ``brinson_fachler_daily``: Brinson & Fachler (1985) per day and sector against that
  benchmark. Sector weights W_s = sum_{i in s} w_i, sector returns R_s = sum w_i r_i / W_s.
  Cash is one more sector (the last column) with return 0 in both portfolios and weight
  1 - sum_i w_i, so rows that sum to < 1 need no special case. Where one side holds nothing in
  a sector it takes the other side's sector return (both 0 when neither holds it), so a
  sector the portfolio skips has selection = interaction = 0 and only allocation, and a
  sector the benchmark lacks (a held stock that is not active) is pure allocation.
  allocation A_s = (Wp_s - Wb_s)(Rb_s - Rb) (Macro), selection S_s = Wb_s (Rp_s - Rb_s)
  (Micro, within sector), interaction I_s = (Wp_s - Wb_s)(Rp_s - Rb_s); each day
  sum_s (A_s + S_s + I_s) = Rp - Rb exactly (float rounding aside).
- ``carino_link``: Carino (1999) log-linking of daily effects into window effects:
  k_t = (ln(1 + rp_t) - ln(1 + rb_t)) / (rp_t - rb_t) (-> 1 / (1 + rp_t) when equal),
  K = (ln(1 + Rp) - ln(1 + Rb)) / (Rp - Rb) with Rp = prod(1 + rp_t) - 1; linked effect =
  sum_t effect_t k_t / K. Effects that add up to rp_t - rb_t each day add up to Rp - Rb.
  Computed stably as k = log1p(x) / x / (1 + rb), x = (rp - rb) / (1 + rb).
- ``decision_attribution``: the report's window attribution, in layers that each link one
  pair of daily series (the Carino link of a - b with the pair (a, b) is exactly the wealth
  difference prod(1 + a) - prod(1 + b), written G(a) - G(b) below):
  allocation + selection + interaction = G(w_exec . r) - G(r_b) (BF, Carino-linked);
  residual = G(gross) - G(w_exec . r) (the caller's gross against the one the weights imply:
  0 when they agree, reported, never hidden); costs = G(net) - G(gross) (<= 0);
  so allocation + selection + interaction + residual + costs = G(net) - G(r_b), the net
  excess return. risk_manager = G(net) - G(net_norisk) is a counterfactual beside the sum
  (the executed weights already contain the risk manager's cuts), not a term of it.
- ``turnover_split_daily`` / ``turnover_by_source``: the one-way turnover
  tau = 1/2 sum_i |w_new,i - w_drift,i| split exactly into exposure (risk manager), macro
  (sector), support (names entering / leaving the book) and micro (within sector) parts;
  the formula is in ``turnover_split_daily``.
- ``regime_scores``: accuracy, balanced accuracy (mean recall over the classes present in
  the labels, as ``sklearn.metrics.balanced_accuracy_score``) and the multi-class Brier score
  (Brier 1950) mean_w sum_c (p_wc - 1[y_w = c])^2 of the regime call against realised labels.

Shapes: T days, N stocks, S sectors, W regime calls, C regime classes.
"""

from __future__ import annotations

import numpy as np

PERIODS = 252
RULE = ("Brinson-Fachler vs equal weight (equal sectors, equal within sector), daily, "
        "Carino-linked")
TURNOVER_RULE = ("one-way 1/2 sum|w_new - w_drift| split by level: exposure 1/2|dE|, macro = "
                 "matched sector flows, support/micro = matched within-sector flows of names "
                 "entering or leaving / kept")
TURNOVER_SOURCES = ("exposure", "macro", "support", "micro")


# ---------------------------------------------------------------------------- input checks

def _float2d(x, name: str, shape: tuple | None = None) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a [T, N] array, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape} but must match {shape}; align it with "
                         "the weights")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or inf; set untradable or missing entries to 0")
    return a


def _float1d(x, name: str, length: int) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.shape != (length,):
        raise ValueError(f"{name} must be a [T] array of {length} days, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or inf; pass finite daily returns")
    return a


def _sectors(sector_of, n: int, num_sectors: int | None = None) -> tuple[np.ndarray, int]:
    """sector_of as int [N] in [0, S) and S (max + 1 unless given)."""
    s = np.asarray(sector_of)
    if s.shape != (n,):
        raise ValueError(f"sector_of must be an int [N] array of {n} stocks, got shape {s.shape}")
    if s.size and not np.all(s == np.round(s)):
        raise ValueError("sector_of must hold integer sector indices 0..S-1")
    s = s.astype(np.int64)
    if s.size and s.min() < 0:
        raise ValueError("sector_of has negative entries; give every stock (padding too) a "
                         "sector index in 0..S-1 and mark it inactive")
    top = int(s.max()) + 1 if s.size else 0
    if num_sectors is None:
        return s, top
    if num_sectors < top:
        raise ValueError(f"num_sectors={num_sectors} but sector_of holds index {top - 1}; "
                         f"pass num_sectors >= {top}")
    return s, int(num_sectors)


def _onehot(sector_of: np.ndarray, num_sectors: int) -> np.ndarray:
    """float [N, S] sector membership."""
    return (sector_of[:, None] == np.arange(num_sectors)[None, :]).astype(np.float64)


def _growth(r: np.ndarray) -> float:
    """Compounded return prod(1 + r) - 1 of daily returns [T]."""
    return float(np.prod(1.0 + r) - 1.0)


# ---------------------------------------------------------------------------- benchmark

def equal_weight_benchmark(sector_of, active) -> np.ndarray:
    """Equal-sector, equal-within-sector benchmark weights, same shape as ``active``.

    sector_of int [N]; active bool [T, N] (or [N]: one day). On each day every sector with at
    least one active stock weighs 1 / S_active, shared equally by its active stocks; inactive
    stocks weigh 0; a day with no active stock is all cash (a zero row).
    """
    act = np.asarray(active)
    if act.ndim not in (1, 2):
        raise ValueError(f"active must be a bool [T, N] or [N] array, got shape {act.shape}")
    if act.dtype != bool:
        if not np.all((act == 0) | (act == 1)):
            raise ValueError("active must be boolean (or 0/1); pass the tradable mask")
        act = act.astype(bool)
    one_day = act.ndim == 1
    a2 = act[None] if one_day else act
    sec, s = _sectors(sector_of, a2.shape[1])
    counts = a2.astype(np.float64) @ _onehot(sec, s)              # [T, S] active per sector
    s_active = (counts > 0).sum(axis=1, keepdims=True)            # [T, 1]
    denom = counts * s_active
    per_stock = np.where(denom > 0, 1.0 / np.where(denom > 0, denom, 1.0), 0.0)   # [T, S]
    w = np.where(a2, per_stock[:, sec], 0.0)
    return w[0] if one_day else w


# ---------------------------------------------------------------------------- Brinson-Fachler

def brinson_fachler_daily(w_p, w_b, r, sector_of, num_sectors: int | None = None) -> dict:
    """Daily Brinson-Fachler effects per sector (module docstring for the conventions).

    w_p, w_b float [T, N] start-of-day stock weights of the portfolio and the benchmark (rows
    may sum to < 1: the rest is cash earning 0); r float [T, N] the stock returns of the day;
    sector_of int [N]; num_sectors S (default max(sector_of) + 1).

    Returns float64 arrays; the last of the S + 1 sector columns is cash:
    ``allocation``, ``selection``, ``interaction`` [T, S + 1] and their sums
    ``allocation_total``, ``selection_total``, ``interaction_total`` [T];
    ``weight_p``, ``weight_b``, ``return_p``, ``return_b`` [T, S + 1] sector weights and
    returns; ``r_p``, ``r_b`` [T] portfolio and benchmark returns sum_i w_i r_i;
    ``excess`` [T] = r_p - r_b (= the three totals summed).
    """
    wp = _float2d(w_p, "w_p")
    wb = _float2d(w_b, "w_b", wp.shape)
    rr = _float2d(r, "r", wp.shape)
    sec, s = _sectors(sector_of, wp.shape[1], num_sectors)
    oh = _onehot(sec, s)
    Wp = np.concatenate([wp @ oh, 1.0 - wp.sum(1, keepdims=True)], axis=1)       # [T, S+1]
    Wb = np.concatenate([wb @ oh, 1.0 - wb.sum(1, keepdims=True)], axis=1)
    cp = np.concatenate([(wp * rr) @ oh, np.zeros((wp.shape[0], 1))], axis=1)    # W_s R_s
    cb = np.concatenate([(wb * rr) @ oh, np.zeros((wb.shape[0], 1))], axis=1)
    hp, hb = Wp != 0, Wb != 0
    own_p = cp / np.where(hp, Wp, 1.0)
    own_b = cb / np.where(hb, Wb, 1.0)
    # a side without the sector borrows the other side's sector return (0 when neither has it)
    Rp_s = np.where(hp, own_p, np.where(hb, own_b, 0.0))
    Rb_s = np.where(hb, own_b, np.where(hp, own_p, 0.0))
    Rp = (wp * rr).sum(1)
    Rb = (wb * rr).sum(1)
    alloc = (Wp - Wb) * (Rb_s - Rb[:, None])
    sel = Wb * (Rp_s - Rb_s)
    inter = (Wp - Wb) * (Rp_s - Rb_s)
    return {"allocation": alloc, "selection": sel, "interaction": inter,
            "allocation_total": alloc.sum(1), "selection_total": sel.sum(1),
            "interaction_total": inter.sum(1),
            "weight_p": Wp, "weight_b": Wb, "return_p": Rp_s, "return_b": Rb_s,
            "r_p": Rp, "r_b": Rb, "excess": Rp - Rb}


# ---------------------------------------------------------------------------- Carino linking

def _carino_k(a, b) -> np.ndarray:
    """(ln(1 + a) - ln(1 + b)) / (a - b), -> 1 / (1 + b) at a = b; stable for a ~ b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x = (a - b) / (1.0 + b)
    ratio = np.where(x == 0, 1.0, np.log1p(x) / np.where(x == 0, 1.0, x))
    return ratio / (1.0 + b)


def carino_factors(r_p, r_b) -> tuple[np.ndarray, float]:
    """Carino (1999) daily factors k [T] and window factor K of the returns r_p, r_b [T]."""
    rp = np.asarray(r_p, np.float64)
    rb = np.asarray(r_b, np.float64)
    if rp.ndim != 1 or rp.size == 0:
        raise ValueError(f"r_p must be a non-empty [T] array of daily returns, got shape "
                         f"{rp.shape}")
    rb = _float1d(rb, "r_b", rp.size)
    rp = _float1d(rp, "r_p", rp.size)
    for name, x in (("r_p", rp), ("r_b", rb)):
        if np.any(x <= -1.0):
            raise ValueError(f"{name} has a daily return <= -1; a day that loses everything "
                             "cannot be log-linked, attribute the window before it")
    k = _carino_k(rp, rb)
    K = float(_carino_k(_growth(rp), _growth(rb)))
    return k, K


def carino_link(effects, r_p, r_b) -> np.ndarray:
    """Window effects [...] of daily effects [T, ...]: sum_t effect_t k_t / K (Carino 1999).

    r_p, r_b [T] are the daily returns whose difference the effects explain; when
    sum(effects[t]) = r_p[t] - r_b[t] on every day the linked effects sum to
    prod(1 + r_p) - prod(1 + r_b). A [T] input gives a 0-d array.
    """
    e = np.asarray(effects, np.float64)
    k, K = carino_factors(r_p, r_b)
    if e.ndim == 0 or e.shape[0] != k.size:
        raise ValueError(f"effects must have the days first, [T={k.size}, ...], got shape "
                         f"{e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("effects has NaN or inf; pass finite daily effects")
    return np.tensordot(k, e, axes=(0, 0)) / K


# ---------------------------------------------------------------------------- report entry

def decision_attribution(w_exec, r, sector_of, active, gross, net, *, w_norisk=None,
                         net_norisk=None, num_sectors: int | None = None,
                         tol: float = 1e-6) -> dict:
    """Window attribution by decision level against the equal-weight benchmark (JSON-ready).

    w_exec float [T, N] the executed book held over each day (after its trade); r [T, N] the
    returns it earns; sector_of int [N]; active bool [T, N] (the benchmark's universe);
    gross, net float [T] the backtest's daily portfolio returns before and after costs.
    Optional: net_norisk [T], the same targets replayed without the risk manager (open loop),
    and its executed book w_norisk [T, N]; tol: the largest daily |gross - w_exec . r| still
    reported as agreeing (``gross_matches_weights``).

    Layers (module docstring): allocation (Macro) + selection (Micro, within sector) +
    interaction = G(w_exec . r) - G(benchmark), each Carino-linked; residual = what those and
    costs leave unexplained of total_excess_net (= G(gross) - G(w_exec . r), float rounding
    aside); costs = G(net) - G(gross); risk_manager = G(net) - G(net_norisk) or None.
    ``per_sector`` maps "0".."S-1" and "cash" to their linked allocation / selection /
    interaction; ``without_risk_manager`` (only with w_norisk) is the same split of the
    no-risk-manager run, its costs and gross gap in one number.
    """
    w = _float2d(w_exec, "w_exec")
    t, n = w.shape
    if t == 0:
        raise ValueError("w_exec has no days; pass a window of >= 1 day")
    rr = _float2d(r, "r", w.shape)
    act = np.asarray(active)
    if act.shape != w.shape:
        raise ValueError(f"active has shape {act.shape} but must match w_exec {w.shape}")
    g = _float1d(gross, "gross", t)
    nt = _float1d(net, "net", t)
    sec, s = _sectors(sector_of, n, num_sectors)
    if w_norisk is not None and net_norisk is None:
        raise ValueError("w_norisk needs net_norisk (the replay's daily net returns); pass both")

    wb = equal_weight_benchmark(sec, act)
    bf = brinson_fachler_daily(w, wb, rr, sec, s)
    g_w, rb = bf["r_p"], bf["r_b"]
    k, K = carino_factors(g_w, rb)
    linked = {name: np.tensordot(k, bf[name], axes=(0, 0)) / K
              for name in ("allocation", "selection", "interaction")}   # [S + 1] each
    alloc, sel, inter = (float(linked[x].sum()) for x in ("allocation", "selection",
                                                          "interaction"))
    G_net, G_gross, G_b = _growth(nt), _growth(g), _growth(rb)
    costs = G_net - G_gross
    excess_net = G_net - G_b
    gap = np.abs(g - g_w)

    out = {
        "rule": RULE,
        "linking": ("allocation/selection/interaction Carino-linked on (w_exec . r, "
                    "benchmark); residual, costs and risk_manager are differences of "
                    "compounded returns (the Carino link of a two-series gap)"),
        "days": int(t),
        "allocation": alloc,
        "selection": sel,
        "interaction": inter,
        "costs": costs,
        "risk_manager": None,
        "total_excess_gross": G_gross - G_b,
        "total_excess_net": excess_net,
        "residual": excess_net - (alloc + sel + inter + costs),
        "portfolio_gross": G_gross,
        "portfolio_net": G_net,
        "benchmark": G_b,
        "gross_gap_max_daily": float(gap.max()),
        "gross_matches_weights": bool(gap.max() <= tol),
        "per_sector": {("cash" if j == s else str(j)): {
            "allocation": float(linked["allocation"][j]),
            "selection": float(linked["selection"][j]),
            "interaction": float(linked["interaction"][j])} for j in range(s + 1)},
    }
    if net_norisk is not None:
        nn = _float1d(net_norisk, "net_norisk", t)
        out["risk_manager"] = G_net - _growth(nn)
        if w_norisk is not None:
            w0 = _float2d(w_norisk, "w_norisk", w.shape)
            bf0 = brinson_fachler_daily(w0, wb, rr, sec, s)
            k0, K0 = carino_factors(bf0["r_p"], rb)
            parts = {x: float(k0 @ bf0[x + "_total"] / K0)
                     for x in ("allocation", "selection", "interaction")}
            out["without_risk_manager"] = {
                **parts,
                "costs_and_residual": _growth(nn) - _growth(bf0["r_p"]),
                "total_excess_net": _growth(nn) - G_b}
    return out


# ---------------------------------------------------------------------------- turnover

def turnover_split_daily(w_drift, w_new, sector_of, *, num_sectors: int | None = None,
                         held_tol: float = 0.0) -> dict:
    """Daily one-way turnover [T] split exactly by decision level.

    w_drift, w_new float [T, N] the book before (drifted) and after each day's trade (cash is
    1 - the row sum); sector_of int [N]. With d = w_new - w_drift, per sector s the bought
    B_s = sum_{i in s} max(d_i, 0) and sold S_s = sum_{i in s} max(-d_i, 0), dW_s = B_s - S_s,
    dE = sum_s dW_s (invested-fraction change), m_s = min(B_s, S_s):

      exposure = 1/2 |dE|                 (risk manager: the cash level; its budget is
                                           exposure x (1 - min_cash); includes putting the
                                           day-0 cash to work and undoing drift)
      macro    = min(sum_s max(dW_s, 0), sum_s max(-dW_s, 0))      (matched sector flows)
      support  = sum_s 1/2 m_s (B^E_s / B_s + S^L_s / S_s)        (matched within-sector
                                           flows of names entering, B^E, or leaving, S^L,
                                           the book: held means w > held_tol)
      micro    = sum_s m_s - support      (matched within-sector flows of names kept)

    and exposure + macro + support + micro = total = 1/2 sum_i |d_i| (since
    1/2 (B_s + S_s) = m_s + 1/2 |dW_s| and 1/2 sum_s |dW_s| = macro + 1/2 |dE|). The
    unmatched part of a sector's flow goes up a level, so a sector exit or a new sector is
    macro, and names that carry a sector's net flow stay with macro; each side of a sector's
    matched flow is shared between new/leaving and kept names in proportion to its volume.
    Returns float64 [T] arrays under ``exposure``, ``macro``, ``support``, ``micro``,
    ``total``.
    """
    wd = _float2d(w_drift, "w_drift")
    wn = _float2d(w_new, "w_new", wd.shape)
    if held_tol < 0:
        raise ValueError(f"held_tol must be >= 0, got {held_tol}")
    sec, s = _sectors(sector_of, wd.shape[1], num_sectors)
    oh = _onehot(sec, s)
    d = wn - wd
    buy, sell = np.maximum(d, 0.0), np.maximum(-d, 0.0)
    B, S = buy @ oh, sell @ oh                                   # [T, S]
    before, after = wd > held_tol, wn > held_tol
    BE = np.where(after & ~before, buy, 0.0) @ oh                # bought by entering names
    SL = np.where(before & ~after, sell, 0.0) @ oh               # sold by leaving names
    m = np.minimum(B, S)
    frac_b = np.where(B > 0, BE / np.where(B > 0, B, 1.0), 0.0)
    frac_s = np.where(S > 0, SL / np.where(S > 0, S, 1.0), 0.0)
    support = (0.5 * m * (frac_b + frac_s)).sum(1)
    micro = m.sum(1) - support
    dW = B - S
    macro = np.minimum(np.maximum(dW, 0.0).sum(1), np.maximum(-dW, 0.0).sum(1))
    exposure = 0.5 * np.abs(dW.sum(1))
    return {"exposure": exposure, "macro": macro, "support": support, "micro": micro,
            "total": 0.5 * np.abs(d).sum(1)}


def turnover_by_source(w_drift, w_new, sector_of, *, num_sectors: int | None = None,
                       held_tol: float = 0.0, periods: int = PERIODS) -> dict:
    """Annualised one-way turnover by source (``turnover_split_daily``): mean daily x periods.

    Returns {"rule", "days", "exposure", "macro", "support", "micro", "total" (floats, per
    year), "share": {source: fraction of total (None when total is 0)}}.
    """
    daily = turnover_split_daily(w_drift, w_new, sector_of, num_sectors=num_sectors,
                                 held_tol=held_tol)
    days = int(daily["total"].size)
    if days == 0:
        raise ValueError("w_drift has no days; pass a window of >= 1 day")
    ann = {k: float(v.mean() * periods) for k, v in daily.items()}
    total = ann["total"]
    return {"rule": TURNOVER_RULE, "days": days, **ann,
            "share": {k: (ann[k] / total if total > 0 else None) for k in TURNOVER_SOURCES}}


# ---------------------------------------------------------------------------- regime call

def regime_scores(calls, labels, probs=None, num_classes: int = 3) -> dict:
    """Scores of the regime call against realised labels.

    calls int [W] the predicted regime of each call, labels int [W] the realised regime
    (-1 = unknown: that call is left out), probs float [W, C] optional call probabilities
    (rows sum to 1). Returns {"n" (scored calls), "n_unlabelled", "accuracy",
    "balanced_accuracy" (mean recall over the classes present in the scored labels),
    "brier" (mean_w sum_c (p_wc - 1[y_w = c])^2, in [0, 2]; None without probs),
    "recall" [C] (None for a class absent from the labels), "confusion" [C][C] (row: label,
    column: call)}; the scores are None when no call has a label.
    """
    c = np.asarray(calls)
    y = np.asarray(labels)
    if c.ndim != 1:
        raise ValueError(f"calls must be an int [W] array, got shape {c.shape}")
    if y.shape != c.shape:
        raise ValueError(f"labels has shape {y.shape} but must match calls {c.shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    for name, x, lo in (("calls", c, 0), ("labels", y, -1)):
        if x.size and (not np.all(x == np.round(x)) or x.min() < lo or x.max() >= num_classes):
            raise ValueError(f"{name} must hold integer regimes in {lo}..{num_classes - 1}"
                             + (" (-1 = unknown)" if lo < 0 else "")
                             + "; pass num_classes if there are more regimes")
    c, y = c.astype(np.int64), y.astype(np.int64)
    p = None
    if probs is not None:
        p = np.asarray(probs, np.float64)
        if p.shape != (c.size, num_classes):
            raise ValueError(f"probs must be a [W={c.size}, C={num_classes}] array, got shape "
                             f"{p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(
                np.abs(p.sum(1) - 1.0) > 1e-6):
            raise ValueError("probs rows must be finite, >= 0 and sum to 1; pass the call's "
                             "class probabilities")
    keep = y >= 0
    c, y = c[keep], y[keep]
    n = int(y.size)
    conf = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(conf, (y, c), 1)
    counts = conf.sum(1)
    recall = [float(conf[j, j] / counts[j]) if counts[j] else None for j in range(num_classes)]
    present = [x for x in recall if x is not None]
    out = {"n": n, "n_unlabelled": int((~keep).sum()),
           "accuracy": float(np.mean(c == y)) if n else None,
           "balanced_accuracy": float(np.mean(present)) if n else None,
           "brier": None, "recall": recall, "confusion": conf.tolist()}
    if p is not None and n:
        onehot = np.eye(num_classes)[y]
        out["brier"] = float(np.mean(np.sum((p[keep] - onehot) ** 2, axis=1)))
    return out


# ---------------------------------------------------------------------------- from a backtest

def backtest_attribution(res, returns, tradable, stock_sector, num_sectors: int, *,
                         res_norisk=None, goal_days=None, periods: int = PERIODS) -> dict:
    """The report's attribution block of one backtest path (``evaluation.backtest``'s
    BacktestResult with [L] leaves, host arrays): ``decision_attribution`` of its executed
    book (decision day t earns ``returns[t + 1]``, the benchmark's universe is
    ``tradable[t]``), the risk-manager effect when ``res_norisk`` (the same raw targets
    replayed without the risk manager, open loop: ``ReplayTargets``) is given, the turnover by
    source without day 0 (the first buy from cash), and gross vs net Sharpe. ``goal_days``
    bool [L] (the days the Macro set a goal) splits the sector-level turnover into the part
    traded on those days (``macro``) and the part traded between goals
    (``sector_between_goals``: the Micro moving sector weights while the goal stands).
    returns / tradable [T, N] and stock_sector [N] are the market's (EnvParams)."""
    from hrl_sarp_jax.finance import metrics as fm

    t = np.asarray(res.t, np.int64)
    r = np.asarray(returns, np.float64)[t + 1]
    active = np.asarray(tradable, bool)[t]
    out = decision_attribution(
        np.asarray(res.weights, np.float64), r, stock_sector, active,
        np.asarray(res.gross_return, np.float64), np.asarray(res.net_return, np.float64),
        w_norisk=None if res_norisk is None else np.asarray(res_norisk.weights, np.float64),
        net_norisk=None if res_norisk is None else np.asarray(res_norisk.net_return,
                                                               np.float64),
        num_sectors=num_sectors)
    out["turnover_by_source"] = None
    if t.size > 1:
        daily = turnover_split_daily(np.asarray(res.drifted, np.float64)[1:],
                                     np.asarray(res.weights, np.float64)[1:], stock_sector,
                                     num_sectors=num_sectors)
        if goal_days is not None:
            on_goal = np.asarray(goal_days, bool)[1:]
            daily["sector_between_goals"] = np.where(on_goal, 0.0, daily["macro"])
            daily["macro"] = np.where(on_goal, daily["macro"], 0.0)
        ann = {k: float(v.mean() * periods) for k, v in daily.items()}
        out["turnover_by_source"] = {"rule": TURNOVER_RULE, "days": int(t.size - 1), **ann}
    out["sharpe_gross"] = float(fm.sharpe(np.asarray(res.gross_return, np.float32), periods))
    out["sharpe_net"] = float(fm.sharpe(np.asarray(res.net_return, np.float32), periods))
    expo = np.asarray(res.exposure, np.float64)
    gate = {"days_reduced": float(np.mean(expo < 1.0 - 1e-6)), "mean_exposure": float(expo.mean()),
            "max_drawdown": float(fm.max_drawdown(np.asarray(res.net_return, np.float32)))}
    if res_norisk is not None:
        free = np.asarray(res_norisk.net_return, np.float32)
        gate.update(sharpe_without=float(fm.sharpe(free, periods)),
                    max_drawdown_without=float(fm.max_drawdown(free)))
    out["risk_gate"] = gate
    return out


ATTRIBUTION_KEYS = ("allocation", "selection", "interaction", "costs", "risk_manager",
                    "residual", "total_excess_net", "sharpe_gross", "sharpe_net")


def mean_attribution(blocks: list[dict]) -> dict:
    """The mean over seeds (or markets) of the headline numbers of ``backtest_attribution``
    blocks, the turnover by source averaged the same way; ``n`` blocks."""
    out: dict = {"n": len(blocks), "rule": blocks[0]["rule"]}
    for k in ATTRIBUTION_KEYS:
        vals = [b[k] for b in blocks if b.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    gates = [b["risk_gate"] for b in blocks if b.get("risk_gate")]
    out["risk_gate"] = None if not gates else {
        k: float(np.mean([g[k] for g in gates])) for k in gates[0]
        if all(k in g for g in gates)}
    tov = [b["turnover_by_source"] for b in blocks if b.get("turnover_by_source")]
    keys = [k for k in tov[0] if k not in ("rule", "days", "share")] if tov else []
    out["turnover_by_source"] = None if not tov else {
        "rule": tov[0]["rule"], **{k: float(np.mean([x[k] for x in tov])) for k in keys}}
    return out
