"""Typed, frozen configuration loaded from YAML presets with dotted overrides.

A preset is a YAML mapping whose keys mirror the dataclasses below. ``smoke.yaml`` may name a
``base:`` preset it overrides. The presets ship inside the package (``hrl_sarp_jax/configs/``),
so ``--config quick`` works from any folder after any install (``resolve_config_path``).
Unknown keys and wrongly typed values are errors naming the dotted key (the original silently
ignored its YAML). Nothing is ever written back into a
config: derived quantities are computed where they are needed.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hrl_sarp_jax.config_ranges import check_config
from hrl_sarp_jax.errors import ConfigError

REGIME_NAMES = ("bull", "bear", "sideways")  # one id convention everywhere: 0 Bull, 1 Bear, 2 Sideways


@dataclass(frozen=True)
class SynthConfig:
    """The embedded synthetic market (``hrl-sarp data synth``)."""

    preset: str = "nse"
    """'nse' (11 NSE sectors, real-looking tickers), 'small' (3 sectors, for tests) or the path
    of a calibration file ending in .yaml (``hrl-sarp data calibrate``: a real market's
    universe and fitted regimes; ``stocks_per_sector`` is then the file's universe, unused)."""
    seed: int = 0
    start: str = "2012-01-02"
    end: str = "2024-12-31"
    stocks_per_sector: int = 5
    alpha_jitter: float = 0.0
    """Standard deviation of a per-market perturbation of every sector's annual excess drift in
    every regime, drawn from the market's seed (``data.synthetic_presets.sector_alpha_annual``;
    the preset's drifts span about -0.18 .. +0.24). 0: every market of a preset shares the
    preset's regime -> sector drift table, so a policy can learn that one table; > 0: each
    market has its own, and only what the markets share transfers."""


@dataclass(frozen=True)
class DataConfig:
    """How a market folder becomes date-aligned arrays."""

    sector_weighting: str = "cap"
    """Sector panels from member stocks: 'cap' (previous-day market cap) or 'equal'."""
    ffill_limit: int = 5
    """Forward-fill at most this many consecutive missing closes (reported), mask the rest."""
    min_history_days: int = 260
    """A market with fewer trading days is rejected by validation."""
    max_stocks: int = 0
    """Pad the stock axis to this static N_max (0: exactly the number of tickers)."""
    max_sectors: int = 0
    """Pad the sector axis to this static S_max (0: exactly the number of sectors)."""
    val_start: str = "2021-01-01"
    """First day of the validation split (train is everything before)."""
    test_start: str = "2023-01-01"
    """First day of the test split (validation ends the day before)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Causal feature construction (DESIGN §4)."""

    norm_window: int = 252
    """Rolling window for z-score normalisation (trailing, includes day t)."""
    norm_min_periods: int = 20
    clip: float = 5.0
    """Normalised features are clipped to [-clip, clip]."""
    regime_threshold: float = 0.02
    """Weekly benchmark return above +thr is Bull, below -thr Bear, else Sideways."""
    regime_source: str = "auto"
    """'auto' (latent regime when the market has one, else the rule), 'rule' or 'latent'."""
    corr_window: int = 60
    corr_threshold: float = 0.3
    macro_levels: bool = False
    """Six more Macro inputs after the 18 (``features.featureset.MACRO_LEVEL_FEATURES``): 20-day
    means of VIX, the flows and the credit spread standardised over ``norm_window``, the mean
    put/call ratio and the index's 13-week return, levels a short z-score removes. Tuning
    markets: the regime call's balanced accuracy +0.034, net Sharpe no better (docs/status.md)."""
    regime_hmm: bool = False
    """Three more Macro inputs, last (``features.featureset.MACRO_HMM_FEATURES``): the filtered
    state probabilities of a 3-state Gaussian HMM on the index's daily log returns, refitted
    by EM every year on the days so far (``features.hmm``; row t reads days <= t, so it is
    safe in walk-forward folds)."""


@dataclass(frozen=True)
class CostConfig:
    """Indian delivery-equity costs, as fractions of traded value (defaults: the original's)."""

    stt_buy: float = 0.001
    stt_sell: float = 0.001
    stamp_buy: float = 0.00015
    exchange: float = 0.0000325
    sebi: float = 0.000001
    gst: float = 0.18
    """GST rate applied to brokerage + exchange charge (+ SEBI fee when ``gst_on_sebi``)."""
    gst_on_sebi: bool = False
    """Also levy GST on the SEBI fee (current Indian rules). False reproduces the original's
    effective rates 0.00168935 buy / 0.00153935 sell."""
    brokerage_pct: float = 0.0
    brokerage_cap: float = 20.0
    """Cap in rupees per order on percentage brokerage (0 disables the cap)."""
    slippage_bps: float = 5.0
    impact_coef: float = 0.0
    """Square-root impact: impact = coef * sqrt(trade value / 20-day ADV value)."""
    adv_window: int = 20


@dataclass(frozen=True)
class ConstraintConfig:
    max_stock_weight: float = 0.10
    max_sector_weight: float = 0.35
    min_cash: float = 0.02
    max_positions: int = 30
    support_rule: str = "hysteresis"
    """How the support is cut to ``max_positions`` names: ``hysteresis`` (a name in the book
    stays while its target >= (1 - support_margin) x the max_positions-th largest;
    ``risk.constraints.sticky_top_k_mask``) or ``top_k`` (the original: the largest targets,
    ties by index, so a nearly uniform target swaps names on noise). Measured over 40 tuning
    markets on one trained run: agent turnover 23.9 -> 9.5 /yr, net Sharpe 0.15 -> 0.55
    (docs/status.md)."""
    support_margin: float = 0.25
    rebalance_threshold: float = 0.05
    """No-trade band: a rebalance whose turnover ½Σ|target - drifted| is below this is skipped
    and the drifted book is held (the original's ``rebalance_threshold`` 0.05, whose check
    raised AttributeError). Applies to every strategy alike; 0 trades on every decision."""
    rebalance_residual: float = 0.0
    """Where a rebalance outside the no-trade band lands: at most this fraction of the band
    away from the target, on the line from the drifted book to it (names the target does not
    hold are sold whole). 0: trade to the target (the original); 1: to the band's edge (the
    no-trade region of proportional costs, Davis & Norman 1990). Every strategy alike."""


@dataclass(frozen=True)
class RiskConfig:
    derisk_drawdown: float = 0.07
    rerisk_drawdown: float = 0.03
    derisked_exposure: float = 0.5
    """Gross exposure while de-risked. Not 0 (the original's 'flatten to cash'): an all-cash
    book's drawdown can never recover to ``rerisk_drawdown``, so the gate would hold cash for
    ever after the first 7% drawdown (every strategy in a backtest, and the rest of every
    training episode)."""
    rerisk_days: int = 21
    """Re-risk after this many trading days de-risked even without recovery (the gate then
    re-arms from the drawdown it stands at; ``risk.manager``). 0: re-risk only when the
    drawdown is back within ``rerisk_drawdown`` (the original's rule, near-absorbing at half
    exposure: 86-92% of a 2-year test at 0.5)."""
    cvar_alpha: float = 0.95
    cvar_budget: float = 0.0
    """Daily CVaR budget (0 disables CVaR scaling)."""
    event_reduction: float = 0.5


@dataclass(frozen=True)
class RewardConfig:
    """Reward weights (original coefficients, DESIGN §5)."""

    macro_w_macro: float = 0.4
    macro_w_portfolio: float = 0.3
    macro_w_regime: float = 0.2
    macro_w_value: float = 0.1
    micro_w_micro: float = 0.5
    micro_w_portfolio: float = 0.3
    micro_w_value: float = 0.2
    concentration_penalty: float = 0.1
    turnover_penalty: float = 0.001
    regime_correct: float = 0.3
    regime_wrong: float = -0.1
    sharpe_w: float = 0.5
    goal_w: float = 0.3
    drawdown_w: float = 0.2
    drawdown_free: float = 0.05
    kind: str = "original"
    """``original``: the composite above (allocation alpha, concentration, regime call, Calmar x
    CVaR, value tilt, Sharpe and goal terms). ``excess`` (``envs.rewards``): the Macro earns the
    week's net log return in excess of the benchmark, the Micro its within-sector selection
    net of costs over sector equal weight, each divided by a causal running volatility (the
    level's recent net returns, floored), plus the Micro's goal term that HER relabels.
    ``macro_excess``: the Macro's ``excess`` reward, the Micro's ``original`` one."""
    macro_vol_floor: float = 0.01
    """Floor of the weekly volatility that scales the ``excess`` Macro reward."""
    micro_vol_floor: float = 0.005
    """Floor of the daily volatility that scales the ``excess`` Micro reward."""
    excess_turnover_cost: float = 0.0
    """``excess`` Macro reward: minus this times the call's one-way turnover ½Σ|call − book's
    sector mix| before the division by the volatility. A shaping charge on top of the costs the
    accounting already takes (which weekly return noise drowns); 0: none."""
    micro_turnover_cost: float = 0.0
    """Micro reward (every kind): minus this times the day's executed one-way turnover
    ½Σ|executed − drifted| (``finance.portfolio``), after the volatility scaling. A shaping
    charge against the Micro's trading between the Macro's decisions, which the accounting's
    costs (~1e-4 a day) do not deter; 0: none (the original)."""


@dataclass(frozen=True)
class EnvConfig:
    initial_value: float = 1.0e7
    micro_episode_days: int = 126
    macro_episode_weeks: int = 26
    return_window: int = 20
    """Ring buffer of recent returns used by Sharpe/CVaR reward terms."""
    ruin_value: float = 0.5
    """Terminate when value falls below this fraction of the initial value."""
    drawdown_stop: float = 0.0
    """Terminate at this drawdown (0 disables; the end of data is a truncation)."""
    goal_step: float = 0.5
    """Partial adjustment of the Macro's goal: on a decision the sector goal moves this fraction
    of the way from the book's sector mix (at the goal's budget) to the Macro's projected call
    (Garleanu-Pedersen: trade part of the way to the aim). 1 = the call itself (the original);
    smaller values damp week-to-week noise in the call, and the sector turnover it causes, in
    training, validation and backtests alike (``envs.common.macro_action_to_goal``). 0.5 chosen
    on tuning markets (Macro-day turnover 5.9 -> 0.9 /yr; docs/status.md)."""
    goal_lock: float = 0.0
    """Share of the Micro's sector mix pulled onto the goal's: the executed target is
    ``(1 - lock) * w + lock * w_locked``, where ``w_locked`` rescales the Micro's names within
    each sector to the goal's sector weight (equal weight in a sector it left empty). 0 = the
    Micro sets its own sector weights (the original); 1 = it only selects names inside the
    Macro's sector mix. In training, validation and backtests alike
    (``envs.common.lock_to_goal``)."""
    micro_frequency: str = "daily"
    """When the trained hierarchy re-allocates in a backtest: ``daily`` (the Micro acts every
    day, the original), ``weekly`` (on the Macro's decision days only; the book drifts in
    between) or ``on_goal_change`` (on a Macro decision day only when its goal's sector
    weights moved by at least ``goal_change`` since the last re-allocation; else the book
    drifts on). Every evaluation path (evaluate, many markets, walk-forward, decide) reads
    it."""
    goal_change: float = 0.1
    """Under ``micro_frequency: on_goal_change``: the one-way share of sector weight,
    0.5 * sum_s |g_s - g_last_s|, by which the goal must have moved since the hierarchy last
    re-allocated for it to re-allocate (``evaluation.agent.HierarchicalStrategy``)."""
    cost: CostConfig = field(default_factory=CostConfig)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass(frozen=True)
class GNNConfig:
    kind: str = "gcn"
    """'gcn' or 'gat'."""
    hidden: int = 32
    embedding: int = 64
    layers: int = 2
    heads: int = 4
    impl: str = "dense"
    """'dense' (fast for small S) or 'segment' (message passing, large or sparse graphs)."""


@dataclass(frozen=True)
class NetworkConfig:
    gnn: GNNConfig = field(default_factory=GNNConfig)
    macro_hidden: tuple[int, ...] = (256, 128, 64)
    attention_heads: int = 4
    attention_dim: int = 64
    goal_embedding: int = 64
    micro_stock_hidden: tuple[int, ...] = (128, 64)
    critic_hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.0
    stock_activation: str = "relu"
    """Activation of the per-stock layers (Micro actor and critics, flat baseline): 'relu' or
    'gelu' (the original's exact GELU). Those layers run over [batch, N, hidden] and bound the
    TD3 update's speed on CPU (memory-bound elementwise work; docs/benchmarks.md)."""
    stock_norm: bool = False
    """LayerNorm in the per-stock layers (after each per-stock Dense and after the stock mixer's
    residual), as the original: true. false: none there (the per-sample goal/context encoders
    and the critics' heads keep theirs)."""
    stock_mixer: str = "deepsets"
    """How stocks see each other in the Micro actor and the flat actor: 'deepsets' (an
    equivariant layer: each stock's hidden state ⊕ the masked mean over stocks -> Dense ->
    activation, added as a residual; O(N), no QKV projections) or 'attention' (masked
    multi-head self-attention, the original). The three stock_* defaults (the "lean" per-stock
    layers) were chosen on tuning markets 1000-1039 against the original's layers: agent Sharpe
    -0.006 [-0.07, +0.06], the whole main job 3x faster (docs/status.md)."""
    stock_shared_once: bool = True
    """How the per-stock MLP (Micro actor and critics, flat baseline) takes the example's goal
    (or context) embedding, which every stock's row repeats: false multiplies the [N, F + E]
    rows as they are (the original; runs saved before this key keep it); true computes the
    embedding's share of the first layer once per example, x W[:F] + e W[F:], with the same
    parameters (checkpoints move between the two): the same function up to float rounding,
    a third fewer flops in a TD3 update at the quick sizes (1.47 -> 0.99 GFLOP; Phase 4 with
    actor updates 1.3-1.5x the env steps a second). Tuning markets 1000-1039, Phases 2-5
    retrained: agent -0.010 Sharpe (-0.041 ... +0.021), ensemble +0.000 (docs/status.md)."""
    macro_allocation: str = "head"
    """What sets the Macro's sector shares: 'head' (its sector head, the original's) or
    'regime_table' (its regime head: sum_r p_r softmax(tau T_r), T the run's Phase-1 table of
    mean next-week sector returns per regime, tau = train.macro_pretrain.alloc_temperature,
    frozen after Phase 1; needs train.macro_pretrain.alloc_target: regime_table). The executed
    allocation then follows the regime call, and PPO trains the regime head through it."""
    sector_embedding: int = 8
    """Width of a learnable per-sector embedding appended to the Macro networks' sector node
    features (0: off, a fully permutation-equivariant network). Without it the Macro policy can
    tell sectors apart only through their features, so it cannot learn sector-specific behaviour
    such as "Realty leads in bulls" (the original's flat sector head could). Phase 1 on the
    default market, 16 seeds: next-week allocation return beats 1/N for 16/16 seeds with 8, 13/16
    without (docs/status.md)."""


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1.0e-3
    weight_decay: float = 1.0e-5
    grad_clip: float = 1.0
    patience: int = 15
    w_regime: float = 0.3
    w_alloc: float = 0.7
    alloc_temperature: float = 50.0
    """τ of the oracle allocation target softmax(τ · next-period returns). Phase 1: at τ = 10
    the target was almost uniform (weekly sector returns are ~1%) and the head learned 1/N;
    at τ = 50 the allocation beats 1/N on validation (docs/status.md)."""
    alloc_target: str = "returns"
    """The allocation target. ``returns`` (both phases): softmax(τ · the next period's realised
    returns), the original's. Phase 1 ``regime_table``: softmax(τ · the mean next-week
    return of each sector over the training samples with the same next-period regime label
    (pooled markets included)), the same target with the week's noise averaged out, so the
    head learns which sectors each regime favours rather than one week's winners. Phase 2
    ``fitted``: inside each sector, softmax(τ · s / sd(s)) with s a ridge forecast of each
    name's ``target_horizon``-day return in excess of its sector's from its features, fitted
    on the training samples (pooled markets included; ``datasets.fit_within_forecast``), so τ
    is logits per SD of the forecast: the next day's winner is mostly noise (what a softmax of
    realised returns asks for), an expected edge is not."""
    forecast_features: tuple[str, ...] = ()
    """Phase 2 with ``alloc_target: fitted``: the stock features (``STOCK_FEATURES`` names) the
    forecast may use; empty: all of them. Slow features (valuation, quality) give a ranking
    that lasts; fast ones (returns, oscillators) re-rank the names every day."""
    target_horizon: int = 1
    """Phase 2 only: the target ranks stocks inside each sector by their compound return over
    the next H trading days (1: next day, the original's). Phase 1's target is the next week.
    H = 5 did not reduce the main job's turnover (docs/status.md)."""
    class_weights: str = "balanced"
    """Regime cross-entropy class weights (Phase 1): 'balanced' (n / (3 n_c) from the train
    split's labels, so a minority regime counts as much as the majority) or 'none'."""
    chunk_epochs: int = 5
    """Epochs per compiled call; metrics are logged and a checkpoint is saved after each."""
    ema_decay: float = 0.0
    """Exponential moving average of the weights, updated after every minibatch step (Polyak &
    Juditsky 1992): validation, early stopping and the phase's ``best_params`` then use the
    average instead of the raw weights. 0: the raw weights (the original)."""


@dataclass(frozen=True)
class PPOConfig:
    lr: float = 1.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.15
    entropy_coef: float = 0.02
    value_coef: float = 0.3
    max_grad_norm: float = 0.5
    epochs: int = 8
    minibatch_size: int = 64
    rollout_steps: int = 128
    num_envs: int = 8
    warmup_updates: int = 50
    total_env_steps: int = 70_000
    concentration: float = 0.0
    """The Macro policy's Dirichlet total concentration at the start of Phase 3 (before the
    per-sector floor of 0.1); 0 keeps the actor's own (Phase 1's, or the network's initial 10).
    At 10 over 11 sectors a sampled sector weight has an SD of ~0.08 around a mean of ~0.09:
    PPO then learns the reward of noisy samples, not of the mean action it executes."""
    critic_warmup_updates: int = 0
    """PPO updates at the start of Phases 3 and 5 (and the flat baseline) that train the value
    function alone: the policy, entropy and auxiliary terms are off, so a pre-trained actor is
    not moved by the advantages of a critic that starts untrained. 0: none (the original)."""
    regime_aux_coef: float = 0.0
    """Weight of an auxiliary supervised loss in Phases 3 and 5's PPO loss: the Macro's regime
    head's −log p(label) of the regime after each decision day (``features`` regime label,
    weeks with a known label only). The regime call is then learned as a prediction rather
    than from reward (useful with ``env.reward.kind: macro_excess``, which does not reward the
    call); 0: none (the original)."""
    anchor_kl_coef: float = 0.0
    """Weight of a trust region around the policy Phase 3 starts from (Phase 1's actor, the
    pre-trained Macro): PPO's loss adds this × KL(π_start(·|s) ‖ π(·|s)) over the rollout's
    states, so the RL phase can move the policy only where its reward pays for the distance.
    Phase 5's Macro block keeps Phase 3's anchor. The flat baseline has no starting policy and
    no anchor. 0: none (the original)."""


@dataclass(frozen=True)
class TD3Config:
    actor_lr: float = 1.0e-3
    critic_lr: float = 1.0e-3
    gamma: float = 0.99
    tau: float = 0.005
    target_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    max_grad_norm: float = 1.0
    explore_noise_start: float = 0.3
    explore_noise_end: float = 0.05
    batch_size: int = 256
    buffer_episodes: int = 512
    """Replay capacity in whole-length episodes: buffer_episodes x episode days transitions
    per seed, a ring of vector steps (rounded up to a multiple of num_envs); it does not grow
    with num_envs."""
    her_k: int = 4
    actor_warmup_updates: int = 0
    """Updates during which only the critics learn (the actor, e.g. Phase 2's, stays as is)."""
    goal_tolerance: float = 0.1
    num_envs: int = 8
    total_env_steps: int = 200_000
    updates_per_step: int = 1
    """TD3 updates after each vector env step (of num_envs transitions) once warm: the replay
    ratio, in gradient samples per env step, is updates_per_step x batch_size / num_envs."""
    warmup_transitions: int = 2_000
    """Transitions collected (per seed) before the first update."""
    anchor_kl_coef: float = 0.0
    """A trust region around the actor Phase 4 starts from (Phase 2's): the actor's loss becomes
    −Q / mean|Q| + this × KL(π_start(s) ‖ π(s)), the stock weights read as probabilities
    (TD3+BC's normalised Q with a KL behaviour term); Phase 5's Micro block keeps the anchor.
    0: none (the original loss)."""
    checkpoint_metric: str = "val_sharpe"
    """Phase 4's 'best' checkpoint (``train.checkpoint: best``): by the validation net Sharpe of
    the Micro executing the frozen Macro's goals (``val_sharpe``: the hierarchy's decisions,
    costs included) or by validation goal alignment (``val_goal_alignment``, the skill Phase 4
    trains; the default before 2026-12-02, which picked churning actors whenever alignment rose
    while the Sharpe fell, docs/status.md). Step 0, the Phase-2 actor, is a candidate either
    way."""


@dataclass(frozen=True)
class JointConfig:
    """Phase 5: alternating fine-tuning of both agents (per round: Macro PPO updates with the
    current Micro as allocator, then Micro TD3+HER with the current Macro setting goals)."""

    rounds: int = 4
    macro_env_steps: int = 8_192
    """Macro (weekly) env steps per seed per round."""
    micro_env_steps: int = 16_384
    """Micro (daily) env steps per seed per round."""
    lr_scale: float = 0.1
    """Every learning rate of Phases 3-4 times this (the original's intended 0.1)."""


@dataclass(frozen=True)
class PoolConfig:
    """More markets the supervised phases learn from besides the run's own (``train.pool``;
    ``training/market_pool.py``): on a generated market each is the run's generator (preset,
    stocks per sector, dates) with another seed, its samples split by the same dates; with
    ``source: bootstrap`` each is a stationary block bootstrap of the run's training days
    (training samples only)."""

    markets: int = 0
    """How many extra markets (0: the run's market only, the original's behaviour)."""
    first_seed: int = 100
    """Their seeds: first_seed, first_seed + 1, ... (the run's own seed skipped). They must stay
    below 1000, the first seed of the many-market instrument's tuning range. For a bootstrap
    pool they seed the resampling."""
    source: str = "auto"
    """'generator' (more markets of the run's generator), 'bootstrap' (resampled histories of
    the run's training window: ``data/resample.py``), 'calibration' (markets of
    ``synth.preset``, a calibration file fitted to the run's market: ``data/calibrate.py``;
    Phases 1-2) or 'auto' (the generator for a generated market; no pool for a real one,
    where the bootstrap measured no gain: docs/status.md)."""
    block_days: float = 63.0
    """The bootstrap's mean block length in trading days (geometric lengths; 63: a quarter, so
    that most regime episodes survive in one piece)."""
    phases: tuple[int, ...] = (1, 2)
    """The phases that pool them: 1 (Macro) and/or 2 (Micro) pre-training, 3 (Macro PPO: env i
    trains on market i mod M, validation walks every market's validation window)."""
    phase3_markets: int | None = None
    """How many of the pool markets Phase 3 uses, the first ones (None: all ``markets``); with
    the run's own that makes M markets, and M must divide ``train.ppo.num_envs``."""


@dataclass(frozen=True)
class TrainConfig:
    seeds: int = 1
    macro_pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(lr=3.0e-4))
    """Phase 1 at lr 3e-4 (the original's 1e-3 early-stopped by epoch 4-8 and left 2 of 16 seeds'
    allocations below 1/N; docs/status.md)."""
    micro_pretrain: PretrainConfig = field(
        default_factory=lambda: PretrainConfig(epochs=30, lr=5.0e-4, patience=10, alloc_temperature=20.0)
    )
    ppo: PPOConfig = field(default_factory=PPOConfig)
    td3: TD3Config = field(default_factory=TD3Config)
    joint: JointConfig = field(default_factory=JointConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    eval_interval: int = 10
    keep_latest: int = 3
    checkpoint: str = "best"
    """Which checkpoint of each RL phase (3, 4, 5, flat) the next phase and evaluation use:
    ``best`` (the highest validation metric over every evaluation of the run: a maximum over
    many noisy evaluations) or ``latest`` (the end of training: a rule fixed in advance)."""
    checkpoint_margin: float = 0.0
    """With ``checkpoint: best``, Phases 3, 5 and 4 (with ``td3.checkpoint_metric: val_sharpe``,
    on its episodes' daily Sharpes) rank their checkpoints by the
    validation Sharpe minus this many standard errors of its paired per-episode improvement over
    the starting policy (``training/selection.py``): a trained checkpoint replaces the start only
    when it beats it by more than the margin. 0: the plain maximum (the original's rule)."""
    validation: str = "continuous"
    """How the RL phases (3, 4, 5, flat) validate while they train. ``episodes``: the policy on
    up to 16 episodes started across the validation window (Macro and flat: 26 weeks each,
    ``env.macro_episode_weeks``; Micro: 126 days), each from cash with a fresh risk gate, the
    validation Sharpe their mean. ``continuous``: as the test is run, one walk from the
    window's first week end (Micro: its first day) to its end, one book and one gate
    throughout, the validation Sharpe that walk's; its consecutive quarters (13 weeks, 63
    days; a window shorter than two quarters is halved) stand in for episodes in the selection
    margin's standard error (``training/validation.py``)."""


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    seed: int = 0
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    networks: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_config(self)  # every numeric key's range, the dates, the rules between keys


# --------------------------------------------------------------------------- loading


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Coerce a YAML scalar to ``annotation`` or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1.0e7" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{where}': expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{where}': expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{where}': expected true/false, got {value!r}")
        return value
    if annotation is str:
        if isinstance(value, datetime.date):  # YAML reads 2021-01-01 unquoted as a date
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"config key '{where}': expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        (elem, _ellipsis) = typing.get_args(annotation)
        return tuple(_check_type(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def _from_dict(cls: type, data: Any, prefix: str, base: Any = None) -> Any:
    """``base`` (default ``cls()``) with the keys of ``data`` replaced. A nested section starts
    from its parent's default for it, not from its class's: ``train.micro_pretrain`` given one
    key keeps the other values of ``TrainConfig``'s own ``micro_pretrain`` default."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {data!r}")
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}' (valid keys here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        dotted = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _from_dict(annotation, value, dotted, getattr(base, name))
        else:
            kwargs[name] = _check_type(value, annotation, dotted)
    return dataclasses.replace(base, **kwargs)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``'env.cost.stt_buy=0.001'`` -> ``('env.cost.stt_buy', 0.001)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    return key, value


PRESETS_DIR = Path(__file__).resolve().with_name("configs")
"""The presets shipped with the package (package data: ``hrl_sarp_jax/configs/*.yaml``)."""


def list_presets() -> list[str]:
    """Names of the shipped presets (``quick``, ``smoke``, ...), sorted."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _preset_file(name: str) -> Path | None:
    stem = name[:-len(".yaml")] if name.endswith(".yaml") else name
    path = PRESETS_DIR / f"{stem}.yaml"
    return path if stem and "/" not in stem and "\\" not in stem and path.is_file() else None


def resolve_config_path(spec: str | Path) -> Path:
    """The YAML file ``--config spec`` means.

    An existing file wins; else a shipped preset by name (``quick``, ``quick.yaml``), or by its
    old source-tree path (``configs/quick.yaml``, so commands written for a checkout keep
    working from any folder). Anything else is a ConfigError listing the presets.
    """
    path = Path(spec)
    if path.is_file():
        return path
    if path.parent in (Path("."), Path("configs")):
        found = _preset_file(path.name)
        if found is not None:
            return found
    raise ConfigError(f"config '{spec}' not found: not a file and not a preset (presets: "
                      f"{', '.join(list_presets())}; `hrl-sarp config show` lists them)")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found (presets: {', '.join(list_presets())})")
    if path.resolve() in seen:
        raise ConfigError(f"config file '{path}': 'base:' chain loops back on itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    base = data.pop("base", None)
    if base is not None:
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.is_file():  # a user's preset may build on a shipped one by name
            base_path = _preset_file(str(base)) or base_path
        data = _deep_merge(_read_yaml(base_path, (*seen, path.resolve())), data)
    return data


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML/JSON-serialisable data (tuples become lists)."""

    def conv(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        return x

    return conv(cfg)


def dotted_items(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping (e.g. ``to_dict(cfg)``) as {dotted key ('train.ppo.lr'): leaf value}."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(dotted_items(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (a file or a preset name, see ``resolve_config_path``; None: the built-in
    defaults) and apply ``key=value`` overrides in order."""
    data = _read_yaml(resolve_config_path(path)) if path is not None else {}
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    return _from_dict(Config, data, "")


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from ``to_dict`` output (e.g. a run folder's config.yaml)."""
    return _from_dict(Config, data, "")


SAVED_RUN_DEFAULTS: dict[str, Any] = {
    "networks.stock_activation": "gelu",
    "networks.stock_norm": True,
    "networks.stock_mixer": "attention",
    "networks.stock_shared_once": False,
    "train.td3.checkpoint_metric": "val_goal_alignment",
}
"""Keys added with a default that differs from the behaviour before them: a run folder's
config.yaml written before the key existed meant this value (its checkpoints have that
layout). ``upgrade_saved_config`` fills them in; user configs get the current defaults."""


def upgrade_saved_config(data: dict) -> dict:
    """A saved run config (``to_dict`` output of any version) with every absent
    ``SAVED_RUN_DEFAULTS`` key set to the value the run was trained with."""
    out = copy.deepcopy(data)
    for dotted, value in SAVED_RUN_DEFAULTS.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return out


def load_run_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """``load_config`` for a run folder's saved config.yaml (``upgrade_saved_config`` first)."""
    data = upgrade_saved_config(_read_yaml(Path(path)))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    return _from_dict(Config, data, "")


def load_config_sections(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    sections: tuple[str, ...] = (),
) -> tuple[Config, dict[str, Any]]:
    """``load_config`` for presets that carry extra top-level sections (e.g. ``sweep:``).

    The preset is resolved (``base:`` chain), the ``key=value`` overrides are applied (so
    ``sweep.seeds=3`` works too), then each top-level key named in ``sections`` is taken out
    and returned raw in a dict (absent sections are left out); the rest must be a valid Config.
    """
    data = _read_yaml(resolve_config_path(path)) if path is not None else {}
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    extra = {name: data.pop(name) for name in sections if name in data}
    return _from_dict(Config, data, ""), extra
