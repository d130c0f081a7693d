"""The valid range of every numeric config key, in one table, checked when a Config is built.

``RANGES`` maps each dotted key (``train.ppo.lr``) to a ``Bound``; ``check_config`` walks a
whole Config and raises one ConfigError naming the first key outside its range, its value and
what it must be, and then the rules that tie two keys together (``CROSS_RULES``). Every float
must also be finite. ``Config.__post_init__`` calls it, so every way a config comes into being
(a preset, ``--set``, a run folder's config.yaml, ``dataclasses.replace`` in a sweep) is
checked before any data is read or any phase trains. A test proves the table covers every
numeric key, so a new key cannot skip it. Checks that need more than numbers (enumerated
strings, data, the network's shapes) stay with the module that owns them and run at start
through ``training.phases.check_training_config``.

# HOST ONLY
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from hrl_sarp_jax.errors import ConfigError


@dataclass(frozen=True)
class Bound:
    """lo <= x <= hi, or strict at an open end; ``note`` says what the value means."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""

    def holds(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def text(self) -> str:
        """'> 0', '>= 1', 'in [0, 1)', or 'finite'."""
        if math.isinf(self.lo) and math.isinf(self.hi):
            return "a finite number"
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if math.isinf(self.lo):
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {left}{self.lo:g}, {self.hi:g}{right}"


def ge(lo: float, note: str = "") -> Bound:
    return Bound(lo=lo, note=note)


def gt(lo: float, note: str = "") -> Bound:
    return Bound(lo=lo, lo_open=True, note=note)


def within(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False,
           note: str = "") -> Bound:
    return Bound(lo, hi, lo_open, hi_open, note)


FINITE = Bound()
COUNT = ge(1)
NONNEG = ge(0)
POSITIVE = gt(0)
FRACTION = within(0, 1)
DISCOUNT = within(0, 1, lo_open=True, note="a discount factor")
WIDTH = ge(1, "a layer width")


def _pretrain(prefix: str) -> dict[str, Bound]:
    return {
        f"{prefix}.epochs": COUNT, f"{prefix}.batch_size": COUNT, f"{prefix}.lr": POSITIVE,
        f"{prefix}.weight_decay": NONNEG, f"{prefix}.grad_clip": POSITIVE,
        f"{prefix}.patience": COUNT, f"{prefix}.w_regime": NONNEG, f"{prefix}.w_alloc": NONNEG,
        f"{prefix}.alloc_temperature": POSITIVE,
        f"{prefix}.target_horizon": ge(1, "trading days"), f"{prefix}.chunk_epochs": COUNT,
        f"{prefix}.ema_decay": Bound(0.0, 1.0, hi_open=True, note="0: the raw weights"),
    }


_REWARD_WEIGHTS = ("macro_w_macro", "macro_w_portfolio", "macro_w_regime", "macro_w_value",
                   "micro_w_micro", "micro_w_portfolio", "micro_w_value",
                   "concentration_penalty", "turnover_penalty", "sharpe_w", "goal_w",
                   "drawdown_w")
"""Weights of the ``original`` composite's terms (each subtracted or added with its own sign);
the regime call's two payoffs are signed values instead."""

RANGES: dict[str, Bound] = {
    "seed": NONNEG,
    "synth.seed": NONNEG,
    "synth.stocks_per_sector": COUNT,
    "synth.alpha_jitter": ge(0, "a standard deviation; 0: the preset's drift table"),
    "data.ffill_limit": ge(0, "days; 0: no forward fill"),
    "data.min_history_days": COUNT,
    "data.max_stocks": ge(0, "0: exactly the market's tickers"),
    "data.max_sectors": ge(0, "0: exactly the market's sectors"),
    "features.norm_window": ge(2, "trading days"),
    "features.norm_min_periods": ge(2, "trading days"),
    "features.clip": POSITIVE,
    "features.regime_threshold": ge(0, "a weekly return"),
    "features.corr_window": ge(3, "trading days"),
    "features.corr_threshold": within(0, 1, note="an absolute correlation"),
    "env.initial_value": POSITIVE,
    "env.micro_episode_days": COUNT,
    "env.macro_episode_weeks": COUNT,
    "env.return_window": ge(2, "returns"),
    "env.ruin_value": within(0, 1, hi_open=True, note="a fraction of the initial value"),
    "env.drawdown_stop": within(0, 1, hi_open=True, note="a drawdown; 0: off"),
    "env.goal_step": within(0, 1, lo_open=True, note="1: the Macro's call is the goal"),
    "env.goal_lock": within(0, 1, note="0: the Micro sets its sector mix; 1: the goal's"),
    "env.goal_change": within(0, 1, note="a one-way share of sector weight"),
    **{f"env.cost.{k}": ge(0, "a fraction of traded value")
       for k in ("stt_buy", "stt_sell", "stamp_buy", "exchange", "sebi", "brokerage_pct")},
    "env.cost.gst": within(0, 1, note="a tax rate"),
    "env.cost.brokerage_cap": ge(0, "rupees an order; 0: no cap"),
    "env.cost.slippage_bps": ge(0, "basis points"),
    "env.cost.impact_coef": NONNEG,
    "env.cost.adv_window": ge(1, "trading days"),
    "env.constraints.max_stock_weight": within(0, 1, lo_open=True),
    "env.constraints.max_sector_weight": within(0, 1, lo_open=True),
    "env.constraints.min_cash": within(0, 1, hi_open=True),
    "env.constraints.max_positions": ge(0, "names held at most; 0: no limit"),
    "env.constraints.support_margin": within(0, 1, hi_open=True),
    "env.constraints.rebalance_threshold": within(0, 0.5, hi_open=True,
                                                  note="a one-way turnover; 0: always trade"),
    "env.constraints.rebalance_residual": within(
        0, 1, note="a fraction of the band; 0: trade to the target"),
    "env.risk.derisk_drawdown": within(0, 1, lo_open=True, note="a drawdown"),
    "env.risk.rerisk_drawdown": within(0, 1, hi_open=True, note="a drawdown"),
    "env.risk.derisked_exposure": FRACTION,
    "env.risk.rerisk_days": ge(0, "trading days; 0: re-risk only on recovery"),
    "env.risk.cvar_alpha": within(0, 1, lo_open=True, hi_open=True),
    "env.risk.cvar_budget": ge(0, "a daily CVaR; 0: off"),
    "env.risk.event_reduction": FRACTION,
    **{f"env.reward.{k}": ge(0, "a term's weight; 0: the term off") for k in _REWARD_WEIGHTS},
    "env.reward.regime_correct": FINITE,
    "env.reward.regime_wrong": FINITE,
    "env.reward.drawdown_free": within(0, 1, hi_open=True, note="a drawdown"),
    "env.reward.macro_vol_floor": POSITIVE,
    "env.reward.micro_vol_floor": POSITIVE,
    "env.reward.excess_turnover_cost": ge(0, "0: no charge"),
    "env.reward.micro_turnover_cost": ge(0, "0: no charge"),
    "networks.gnn.hidden": WIDTH,
    "networks.gnn.embedding": WIDTH,
    "networks.gnn.layers": COUNT,
    "networks.gnn.heads": COUNT,
    "networks.macro_hidden": WIDTH,
    "networks.attention_heads": COUNT,
    "networks.attention_dim": WIDTH,
    "networks.goal_embedding": WIDTH,
    "networks.micro_stock_hidden": WIDTH,
    "networks.critic_hidden": WIDTH,
    "networks.dropout": within(0, 1, hi_open=True, note="a drop probability"),
    "networks.sector_embedding": ge(0, "a width; 0: off"),
    "train.seeds": COUNT,
    **_pretrain("train.macro_pretrain"),
    **_pretrain("train.micro_pretrain"),
    "train.ppo.lr": POSITIVE,
    "train.ppo.gamma": DISCOUNT,
    "train.ppo.gae_lambda": FRACTION,
    "train.ppo.clip_eps": POSITIVE,
    "train.ppo.entropy_coef": NONNEG,
    "train.ppo.value_coef": NONNEG,
    "train.ppo.max_grad_norm": POSITIVE,
    "train.ppo.epochs": COUNT,
    "train.ppo.minibatch_size": COUNT,
    "train.ppo.rollout_steps": COUNT,
    "train.ppo.num_envs": COUNT,
    "train.ppo.warmup_updates": NONNEG,
    "train.ppo.total_env_steps": COUNT,
    "train.ppo.concentration": ge(0, "0: the actor's own"),
    "train.ppo.critic_warmup_updates": NONNEG,
    "train.ppo.regime_aux_coef": ge(0, "0: no auxiliary loss"),
    "train.ppo.anchor_kl_coef": ge(0, "0: no trust region"),
    "train.td3.actor_lr": POSITIVE,
    "train.td3.critic_lr": POSITIVE,
    "train.td3.gamma": DISCOUNT,
    "train.td3.tau": within(0, 1, lo_open=True, note="a target-network step"),
    "train.td3.target_noise": NONNEG,
    "train.td3.noise_clip": NONNEG,
    "train.td3.policy_delay": COUNT,
    "train.td3.max_grad_norm": POSITIVE,
    "train.td3.explore_noise_start": NONNEG,
    "train.td3.explore_noise_end": NONNEG,
    "train.td3.batch_size": COUNT,
    "train.td3.buffer_episodes": COUNT,
    "train.td3.her_k": ge(0, "relabelled goals per transition; 0: no HER"),
    "train.td3.actor_warmup_updates": NONNEG,
    "train.td3.goal_tolerance": POSITIVE,
    "train.td3.num_envs": COUNT,
    "train.td3.total_env_steps": COUNT,
    "train.td3.updates_per_step": COUNT,
    "train.td3.warmup_transitions": NONNEG,
    "train.td3.anchor_kl_coef": ge(0, "0: no trust region"),
    "train.joint.rounds": COUNT,
    "train.joint.macro_env_steps": COUNT,
    "train.joint.micro_env_steps": COUNT,
    "train.joint.lr_scale": within(0, 10, lo_open=True, note="times Phases 3-4's rates"),
    "train.pool.markets": ge(0, "0: no pool"),
    "train.pool.first_seed": NONNEG,
    "train.pool.block_days": ge(1, "a mean block length in days"),
    "train.pool.phases": within(1, 3, note="phases 1, 2 or 3"),
    "train.pool.phase3_markets": ge(1, "or null: every pool market"),
    "train.eval_interval": COUNT,
    "train.keep_latest": COUNT,
    "train.checkpoint_margin": ge(0, "standard errors; 0: the plain maximum"),
}
"""Every numeric key (a tuple's elements each; None allowed where the type says so)."""

DATE_KEYS = ("synth.start", "synth.end", "data.val_start", "data.test_start")


def _value(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _date(cfg: Any, key: str) -> np.datetime64:
    text = _value(cfg, key)
    try:
        return np.datetime64(text, "D")
    except (ValueError, TypeError):
        raise ConfigError(f"config key '{key}' = {text!r} is not a date; write it as "
                          f"YYYY-MM-DD") from None


def _order(cfg: Any, first: str, second: str, strict: bool, why: str) -> None:
    a, b = _value(cfg, first), _value(cfg, second)
    if not (a < b if strict else a <= b):
        raise ConfigError(f"config key '{first}' = {a!r} must be {'below' if strict else 'at most'}"
                          f" '{second}' = {b!r} ({why})")


def check_value(key: str, value: Any, where: str | None = None) -> None:
    """ConfigError unless ``value`` (a number, a tuple of numbers, or None where allowed) is in
    ``RANGES[key]``; ``where`` names it in the message (default: the key)."""
    bound = RANGES[key]
    items = value if isinstance(value, tuple) else (value,)
    for x in items:
        if x is None:
            continue
        if not bound.holds(float(x)):
            note = f" ({bound.note})" if bound.note else ""
            raise ConfigError(f"config key '{where or key}' = {value!r} must be "
                              f"{bound.text()}{note}")


def check_config(cfg: Any) -> None:
    """Every key of ``RANGES``, then the dates and the rules between keys, of a whole Config."""
    for key in RANGES:
        check_value(key, _value(cfg, key))
    dates = {key: _date(cfg, key) for key in DATE_KEYS}
    if not dates["synth.start"] < dates["synth.end"]:
        raise ConfigError(f"config key 'synth.start' = {cfg.synth.start!r} must be before "
                          f"'synth.end' = {cfg.synth.end!r}")
    if not dates["data.val_start"] < dates["data.test_start"]:
        raise ConfigError(f"config key 'data.val_start' = {cfg.data.val_start!r} must be before "
                          f"'data.test_start' = {cfg.data.test_start!r} (validation comes "
                          f"before the test split)")
    _order(cfg, "features.norm_min_periods", "features.norm_window", False,
           "a z-score needs at most the window's days")
    _order(cfg, "env.risk.rerisk_drawdown", "env.risk.derisk_drawdown", False,
           "the gate re-risks at a smaller drawdown than it de-risks at")


def numeric_keys(cls: type, prefix: str = "") -> list[str]:
    """The dotted names of every int/float (or tuple/optional of them) field under ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            out += numeric_keys(hint, name + ".")
            continue
        args = set(typing.get_args(hint)) - {type(None), Ellipsis}
        if hint in (int, float) or (args and args <= {int, float}):
            out.append(name)
    return out
