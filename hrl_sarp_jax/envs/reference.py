"""NumPy reference implementation of the three envs, written independently for parity tests.

# HOST ONLY (not jittable)
Plain float64 NumPy loops: its own cost arithmetic, circuit-lock execution, drift, risk
exposure, window metrics, rewards and observations. The one shared piece is the constraint
projection (``risk.constraints``), called on host through a jitted wrapper: it is an iterative
solver tested in tests/risk, and re-deriving it here would test nothing about the envs.
Episodes are driven from a given start day; goals are fixed or come from macro actions.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import numpy as np

from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.risk.constraints import project_sector_weights, project_weights

PE_Z, VALUE_THR, EVENT, DD_COL = 9, -0.5, 14, 17


def _np(x) -> np.ndarray:
    return np.asarray(x, np.float64)


# ------------------------------------------------------------------ projection (shared, on host)
@lru_cache(maxsize=8)
def _jit_project(num_sectors: int):
    return jax.jit(lambda w, ids, valid, cp, e, h: project_weights(w, ids, valid, num_sectors, cp,
                                                                   e, held=h))


_jit_sector = jax.jit(project_sector_weights)


def project_stocks(w, ids, valid, num_sectors, cparams, expo, held=None) -> np.ndarray:
    """The JAX projection on host arrays; ``held`` [N]: the drifted book (None: nothing held)."""
    f = _jit_project(num_sectors)
    held = np.zeros(np.shape(w), np.float32) if held is None else np.float32(held)
    return _np(f(np.float32(w), ids, valid, cparams, np.float32(expo), held))


def project_sectors(w, valid, cparams) -> np.ndarray:
    return _np(_jit_sector(np.float32(w), valid, cparams))


# ------------------------------------------------------------------ accounting
def scalars(tree) -> dict[str, float]:
    """A struct of scalar leaves (CostParams, RiskParams, RewardParams) as python floats."""
    return {k: (v if isinstance(v, str) else float(np.asarray(v)))
            for k in tree.__dataclass_fields__ for v in [getattr(tree, k)]}


def costs(buy: np.ndarray, sell: np.ndarray, adv: np.ndarray, cp: dict) -> dict[str, float]:
    """Itemised currency costs of buying ``buy`` / selling ``sell`` per asset (cp: scalars)."""
    traded = buy + sell
    broker = lambda v: (np.minimum(cp["brokerage_pct"] * v, cp["brokerage_cap"])  # noqa: E731
                        if cp["brokerage_cap"] > 0 else cp["brokerage_pct"] * v)
    part = np.where(adv > 0, traded / np.where(adv > 0, adv, 1.0), 0.0)
    out = {
        "stt": float(np.sum(cp["stt_buy"] * buy + cp["stt_sell"] * sell)),
        "stamp": float(np.sum(cp["stamp_buy"] * buy)),
        "exchange": float(np.sum(cp["exchange"] * traded)),
        "sebi": float(np.sum(cp["sebi"] * traded)),
        "brokerage": float(np.sum(broker(buy) + broker(sell))),
        "slippage": float(np.sum(cp["slippage_bps"] * 1e-4 * traded)),
        "impact": float(np.sum(cp["impact_coef"] * np.sqrt(part) * traded)),
    }
    out["gst"] = cp["gst"] * (out["brokerage"] + out["exchange"] + cp["gst_on_sebi"] * out["sebi"])
    out["total"] = sum(out.values())
    return out


def execute(drifted: np.ndarray, target: np.ndarray, lock: np.ndarray) -> np.ndarray:
    """Executed weights: locked buys (lock +1) / sells (lock -1) stay put; buys never borrow."""
    want = target - drifted
    blocked = ((lock == 1) & (want > 0)) | ((lock == -1) & (want < 0))
    buys = np.where(~blocked & (want > 0), want, 0.0)
    sells = np.where(~blocked & (want < 0), -want, 0.0)
    if buys.sum() > 0:
        # money available for buys = sells done + cash left by the target - cash it assumed
        room = buys.sum() + np.where(blocked, np.maximum(want, 0), 0).sum() \
            - np.where(blocked, np.maximum(-want, 0), 0).sum()
        buys = buys * min(max(room / buys.sum(), 0.0), 1.0)
    return drifted + buys - sells


def hold_within_band(drifted: np.ndarray, target: np.ndarray, threshold,
                     residual=0.0) -> np.ndarray:
    """No-trade band: the drifted book if ½Σ|target - drifted| < threshold, else the target,
    or with ``residual`` > 0 the point residual·threshold short of it on the line from the
    drifted book (names the target does not hold sold whole)."""
    gap = 0.5 * np.abs(target - drifted).sum()
    threshold, residual = float(np.asarray(threshold)), float(np.asarray(residual))
    if gap < threshold:
        return drifted.copy()
    if residual <= 0:
        return target
    k = residual * threshold / max(gap, 1e-12)
    return np.where(target > 0, target + k * (drifted - target), 0.0).astype(target.dtype)


class Book:
    """Drifted weights, value and peak; ``trade`` = one close-to-close day."""

    def __init__(self, n: int, value: float):
        self.w, self.value, self.peak = np.zeros(n), float(value), float(value)

    def trade(self, target, r, lock, adv, cp) -> dict:
        v0 = self.value
        w_exec = execute(self.w, target, lock)
        delta = w_exec - self.w
        c = costs(v0 * np.maximum(delta, 0), v0 * np.maximum(-delta, 0), adv, cp)
        holdings = v0 * w_exec * (1.0 + r)
        v2 = holdings.sum() + v0 * (1.0 - w_exec.sum()) - c["total"]
        self.w = holdings / v2 if v2 > 0 else np.zeros_like(holdings)
        self.value, self.peak = v2, max(self.peak, v2)
        return {"exec": w_exec, "cost": c, "cost_frac": c["total"] / v0,
                "net": v2 / v0 - 1.0, "gross": float(w_exec @ r),
                "turnover": 0.5 * np.abs(delta).sum(), "drawdown": self.drawdown}

    @property
    def drawdown(self) -> float:
        return (self.peak - self.value) / self.peak

    @property
    def cash(self) -> float:
        return 1.0 - self.w.sum()


# ------------------------------------------------------------------ metrics on the window
def w_sharpe(x: np.ndarray, ppy: float) -> float:
    if x.size < 2:
        return 0.0
    mean, std = x.mean(), x.std(ddof=1)
    if not std > 1e-5 * abs(mean) or std <= 1e-12:
        return 0.0
    return mean / std * math.sqrt(ppy)


def w_max_drawdown(x: np.ndarray) -> float:
    wealth, peak, worst = 1.0, 1.0, 0.0
    for r in x:
        wealth *= 1.0 + r
        peak = max(peak, wealth)
        worst = max(worst, 1.0 - wealth / peak)
    return worst


def w_cvar(x: np.ndarray, alpha: float) -> float:
    if x.size == 0:
        return 0.0
    k = min(max(math.ceil((1.0 - alpha) * x.size - 1e-4), 1), x.size)
    return -float(np.sort(x)[:k].mean())


def risk_exposure(gate: tuple, dd: float, window: np.ndarray, event: bool, rp: dict,
                  day: int = 0) -> tuple:
    """gate = (derisked, base, since) of ``risk.manager.RiskState``; returns (gate, level)."""
    g = rp.__getitem__
    was, base, since = gate
    dd32, base32 = np.float32(dd), np.float32(base)
    gate_dd = np.float32(dd32 - base32)
    timed_out = was and g("rerisk_days") > 0 and day - since >= g("rerisk_days")
    if was:
        derisked = bool(gate_dd > g("rerisk_drawdown")) and not timed_out
    else:
        derisked = bool(gate_dd >= g("derisk_drawdown"))
    if timed_out and gate_dd > g("rerisk_drawdown"):
        base = float(dd32)
    elif dd32 <= g("rerisk_drawdown"):
        base = 0.0
    since = day if derisked and not was else since
    level = g("derisked_exposure") if derisked else 1.0
    tail = w_cvar(window, g("cvar_alpha"))
    if g("cvar_budget") > 0 and tail > g("cvar_budget"):
        level *= g("cvar_budget") / tail
    if event:
        level *= 1.0 - g("event_reduction")
    return (derisked, base, since), min(max(level, 0.0), 1.0)


# ------------------------------------------------------------------ rewards
def portfolio_term(window: np.ndarray, cost_frac: float, w: dict) -> float:
    total = float(np.prod(1.0 + window) - 1.0)
    calmar = total / max(w_max_drawdown(window), 0.01)
    tail = w_cvar(window, w["cvar_alpha"])
    return math.tanh(calmar) * (1.0 - min(max(tail, 0.0), 1.0)) - min(max(cost_frac, 0.0), 1.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return min(max(float(a @ b) / den, 0.0), 1.0) if den > 1e-12 else 0.0


def running_vol(window: np.ndarray, floor: float) -> float:
    return max(float(window.std(ddof=1)) if window.size >= 2 else 0.0, floor)


def micro_reward(window, achieved_sw, goal, dd, cost_frac, value_ret, w, gross=0.0,
                 sector_ew=0.0, turnover=0.0) -> float:
    charge = w["micro_turnover_cost"] * turnover
    if w["kind"] == "excess":
        return ((gross - sector_ew - cost_frac) / running_vol(window, w["micro_vol_floor"])
                + w["micro_w_micro"] * w["goal_w"] * cosine(achieved_sw, goal[: achieved_sw.size])
                - charge)
    s = math.tanh(w_sharpe(window, 252) / 2.0)
    g = cosine(achieved_sw, goal[: achieved_sw.size])
    d = -max(dd - w["drawdown_free"], 0.0) ** 2
    r_micro = w["sharpe_w"] * s + w["goal_w"] * g + w["drawdown_w"] * d
    return (w["micro_w_micro"] * r_micro
            + w["micro_w_portfolio"] * portfolio_term(window, cost_frac, w)
            + w["micro_w_value"] * min(max(value_ret, -1.0), 1.0) - charge)


def macro_reward(window, call, prev_sw, growth, bench, regime_call, label, cost_frac, value_ret,
                 w) -> float:
    if w["kind"] in ("excess", "macro_excess"):
        excess = math.log1p(max(float(window[-1]), -0.99)) - math.log(max(bench, 0.01))
        turn = 0.5 * float(np.abs(call - prev_sw).sum())
        return ((excess - w["excess_turnover_cost"] * turn)
                / running_vol(window, w["macro_vol_floor"]))
    alpha = float(call @ (growth - 1.0)) - (bench - 1.0)
    r_macro = (min(max(alpha, -1.0), 1.0) - w["concentration_penalty"] * float(call @ call)
               - w["turnover_penalty"] * float(np.abs(call - prev_sw).sum()))
    r_regime = 0.0 if label < 0 else (w["regime_correct"] if regime_call == label
                                      else w["regime_wrong"])
    return (w["macro_w_macro"] * r_macro
            + w["macro_w_portfolio"] * portfolio_term(window, cost_frac, w)
            + w["macro_w_regime"] * r_regime + w["macro_w_value"] * min(max(value_ret, -1.0), 1.0))


# ------------------------------------------------------------------ envs
class _Base:
    def __init__(self, params: EnvParams, window: int = 20):
        p = params
        self.p, self.window, self.w = p, window, scalars(p.reward)
        self.cp, self.rp = scalars(p.cost), scalars(p.risk)
        self.ret, self.lock, self.adv = _np(p.returns), np.asarray(p.circuit_lock), _np(p.adv_value)
        self.tradable, self.sector = np.asarray(p.tradable), np.asarray(p.stock_sector)
        self.sector_valid = np.asarray(p.sector_valid)
        self.n, self.s = self.ret.shape[1], p.num_sectors
        self.stock_f, self.macro_f = _np(p.stock_features), _np(p.macro_features)
        self.sector_f, self.sector_mask = _np(p.sector_features), np.asarray(p.sector_mask)
        self.adj, self.label = _np(p.adjacency), np.asarray(p.regime_label)
        self.week_end, self.sec_ret = np.asarray(p.week_end), _np(p.sector_returns)
        self.bench = _np(p.benchmark_returns)
        self.t_hi, self.max_steps = int(p.t_hi), int(p.max_steps_in_episode)
        self.init_value = float(np.asarray(p.initial_value))

    def _reset_book(self, t: int):
        self.t, self.time, self.book = t, 0, Book(self.n, self.init_value)
        self.gate = (False, 0.0, 0)
        self.buf: list[float] = []

    def sector_ew(self, sector_w: np.ndarray, t: int) -> float:
        """sum_s sw_s x (mean return over t + 1 of sector s's stocks tradable at t)."""
        trad = self.tradable[t]
        out = 0.0
        for j in range(self.s):
            members = trad & (self.sector == j)
            if members.any():
                out += float(sector_w[j]) * float(self.ret[t + 1][members].mean())
        return out

    def sector_sums(self, w: np.ndarray) -> np.ndarray:
        return np.bincount(self.sector, weights=w, minlength=self.s)[: self.s]

    def goal_from_action(self, a: np.ndarray) -> np.ndarray:
        """The goal from the book now held (``envs.common.macro_action_to_goal``)."""
        sw = project_sectors(a[: self.s], self.sector_valid, self.p.constraints)
        step = np.float32(np.asarray(self.p.goal_step))
        book = self.sector_sums(np.float32(self.book.w)).astype(np.float32)
        if step < 1.0 and book.sum() > 1e-6:   # float32 like the env: the mix feeds a projection
            call = sw.astype(np.float32)
            cur = book * (call.sum(dtype=np.float32) / book.sum(dtype=np.float32))
            sw = project_sectors(cur + step * (call - cur), self.sector_valid, self.p.constraints)
        return np.concatenate([sw, np.eye(3)[int(np.argmax(a[self.s: self.s + 3]))]])

    def exposure(self, t: int) -> float:
        self.gate, e = risk_exposure(self.gate, self.book.drawdown,
                                     np.array(self.buf[-self.window:]),
                                     self.macro_f[t, EVENT] > 0.5, self.rp, t)
        return e

    def day(self, target: np.ndarray, t: int) -> tuple[dict, float]:
        c = self.p.constraints
        target = hold_within_band(self.book.w, target, c.rebalance_threshold,
                                  c.rebalance_residual)
        info = self.book.trade(target, self.ret[t + 1], self.lock[t], self.adv[t], self.cp)
        value = self.stock_f[t, :, PE_Z] < VALUE_THR
        value_ret = float(np.sum(info["exec"] * self.ret[t + 1] * value))
        return info, value_ret

    def lock_to_goal(self, w: np.ndarray, goal: np.ndarray, t: int) -> np.ndarray:
        """(1 - lock) w + lock w_locked: w rescaled within each sector to goal[:S], a sector
        w leaves empty split equally over its stocks tradable at t (``common.lock_to_goal``)."""
        lock = float(self.p.goal_lock)
        w = _np(w)
        if lock == 0.0:
            return w
        held, locked = self.sector_sums(w), np.zeros_like(w)
        for j in range(self.s):
            members = self.sector == j
            trad = members & self.tradable[t]
            if held[j] > 1e-6:
                locked[members] = w[members] * goal[j] / held[j]
            elif trad.any():
                locked[trad] = goal[j] / trad.sum()
        return lock * locked + (1.0 - lock) * w

    def project(self, raw: np.ndarray, t: int, expo: float) -> np.ndarray:
        return project_stocks(raw, self.sector, self.tradable[t], self.s, self.p.constraints, expo,
                              self.book.w)

    def ruined(self) -> bool:
        stop = float(np.asarray(self.p.drawdown_stop))
        return (self.book.value < float(np.asarray(self.p.ruin_value)) * self.init_value
                or (stop > 0 and self.book.drawdown >= stop))

    def micro_obs(self, goal: np.ndarray) -> np.ndarray:
        t, b = self.t, self.book
        return np.concatenate([self.stock_f[t].ravel(), self.tradable[t], b.w,
                               [b.cash, b.drawdown], goal])

    def macro_obs(self) -> np.ndarray:
        t, b = self.t, self.book
        macro = self.macro_f[t].copy()
        macro[DD_COL] = b.drawdown
        return np.concatenate([macro, self.sector_f[t].ravel(), self.sector_mask[t],
                               self.adj[t].ravel(), self.sector_sums(b.w), [b.cash, b.drawdown]])


class RefMicroEnv(_Base):
    """Daily steps with a fixed goal (the 'fixed' goal source)."""

    def reset(self, t: int, goal: np.ndarray) -> np.ndarray:
        self._reset_book(t)
        self.goal = _np(goal)
        return self.micro_obs(self.goal)

    def step(self, action: np.ndarray):
        t = self.t
        target = self.project(self.lock_to_goal(action, self.goal, t), t, self.exposure(t))
        info, value_ret = self.day(target, t)
        self.buf.append(info["net"])
        achieved = self.sector_sums(info["exec"])
        reward = micro_reward(np.array(self.buf[-self.window:]), achieved, self.goal,
                              info["drawdown"], info["cost_frac"], value_ret, self.w,
                              info["gross"], self.sector_ew(achieved, t), info["turnover"])
        self.t, self.time = t + 1, self.time + 1
        truncated = self.time >= self.max_steps or self.t >= self.t_hi
        return self.micro_obs(self.goal), reward, self.ruined(), truncated, info


class RefMacroEnv(_Base):
    """Weekly steps; equal weight within sectors at the week end, then the holdings drift.
    The risk manager reads the daily net returns (``buf``), the reward the weekly (``mbuf``)."""

    def reset(self, t: int) -> np.ndarray:
        assert self.week_end[t], "macro episodes start at a week end"
        self._reset_book(t)
        self.ends = np.flatnonzero(self.week_end)
        self.mbuf: list[float] = []
        return self.macro_obs()

    def step(self, action: np.ndarray):
        d = self.t
        nxt = self.ends[self.ends > d]
        d_next = int(nxt[0])
        goal = self.goal_from_action(_np(action))
        call = goal[: self.s]
        prev_sw = self.sector_sums(self.book.w)
        v0 = self.book.value
        expo = self.exposure(d)
        valid = self.tradable[d].astype(float)
        counts = self.sector_sums(valid)
        per = np.where(counts > 0, call * expo / np.maximum(counts, 1), 0.0)
        target = self.project(per[self.sector] * valid, d, expo)
        cost = value_ret = 0.0
        growth, bench = np.ones(self.s), 1.0
        for day in range(d, d_next):
            if day > d:
                self.exposure(day)  # the gate steps every day; the days between hold
            info, v = self.day(target if day == d else self.book.w.copy(), day)
            self.buf.append(info["net"])
            cost += info["cost"]["total"]
            value_ret += v
            growth = growth * (1.0 + self.sec_ret[day + 1])
            bench *= 1.0 + self.bench[day + 1]
        self.mbuf.append(self.book.value / v0 - 1.0)
        reward = macro_reward(np.array(self.mbuf[-self.window:]), call, prev_sw, growth, bench,
                              int(np.argmax(action[self.s:])), int(self.label[d]), cost / v0,
                              value_ret, self.w)
        self.t, self.time = d_next, self.time + 1
        later = self.ends[self.ends > d_next]
        truncated = self.time >= self.max_steps or later.size == 0 or later[0] > self.t_hi
        info = {"cost": cost, "value": self.book.value}
        return self.macro_obs(), reward, self.ruined(), truncated, info


class RefHierarchicalEnv(_Base):
    """Daily Micro steps; the Macro sets the goal at week ends; macro reward when a week closes."""

    def reset(self, t: int) -> dict:
        self._reset_book(t)
        self.goal = _np(self.p.fixed_goal)
        self.mbuf: list[float] = []
        return {"macro": self.macro_obs(), "micro": self.micro_obs(self.goal)}

    def step(self, macro_action: np.ndarray, micro_action: np.ndarray):
        t = self.t
        if self.week_end[t]:
            self.goal = self.goal_from_action(_np(macro_action))
            self.m = {"call": self.goal[: self.s], "regime": int(np.argmax(macro_action[self.s:])),
                      "label": int(self.label[t]), "prev": self.sector_sums(self.book.w),
                      "v0": self.book.value, "cost": 0.0, "value": 0.0, "growth": np.ones(self.s),
                      "bench": 1.0}
        target = self.project(self.lock_to_goal(micro_action, self.goal, t), t,
                              self.exposure(t))
        info, value_ret = self.day(target, t)
        self.buf.append(info["net"])
        achieved = self.sector_sums(info["exec"])
        r_micro = micro_reward(np.array(self.buf[-self.window:]), achieved, self.goal,
                               info["drawdown"], info["cost_frac"], value_ret, self.w,
                               info["gross"], self.sector_ew(achieved, t), info["turnover"])
        m = self.m
        m["cost"] += info["cost"]["total"]
        m["value"] += value_ret
        m["growth"] = m["growth"] * (1.0 + self.sec_ret[t + 1])
        m["bench"] *= 1.0 + self.bench[t + 1]
        self.t, self.time = t + 1, self.time + 1
        terminated = self.ruined()
        truncated = self.time >= self.max_steps or self.t >= self.t_hi
        r_macro = None
        if self.week_end[self.t] or terminated or truncated:
            self.mbuf.append(self.book.value / m["v0"] - 1.0)
            r_macro = macro_reward(np.array(self.mbuf[-self.window:]), m["call"], m["prev"],
                                   m["growth"], m["bench"], m["regime"], m["label"],
                                   m["cost"] / m["v0"], m["value"], self.w)
        obs = {"macro": self.macro_obs(), "micro": self.micro_obs(self.goal)}
        return obs, r_micro, r_macro, terminated, truncated, info
