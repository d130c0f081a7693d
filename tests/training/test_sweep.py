"""Vectorized sweeps (training.sweep): parsing, settings × seeds members, ranking maths, and one
tiny end-to-end sweep (one compiled program) checked against what run_phase3 logged."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from hrl_sarp_jax.agents.ppo import PPOHParams
from hrl_sarp_jax.checkpointing import (
    PhaseCheckpointer,
    create_run,
    describe_origin,
    open_run,
    read_phase_summary,
)
from hrl_sarp_jax.config import PRESETS_DIR, Config, PPOConfig, load_config_sections
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.evaluation import overfitting as of
from hrl_sarp_jax.pipeline import selection_trials
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training import sweep as sw


def grid(params, seeds=2, **extra):
    return sw.parse_sweep({"phase": 3, "method": "grid", "seeds": seeds, "params": params,
                           **extra})


# --------------------------------------------------------------------------- parsing


def test_grid_is_the_product_in_key_order_with_the_last_key_fastest():
    spec = grid({"ppo.lr": [1e-3, "3e-4"], "train.ppo.entropy_coef": [0.0, 0.01, 0.02]})
    assert spec.names == ("ppo.lr", "ppo.entropy_coef")     # train.ppo.x is the same as ppo.x
    settings = sw.sweep_settings(spec, seed=0)
    assert settings == [{"ppo.lr": lr, "ppo.entropy_coef": e}
                        for lr in (1e-3, 3e-4) for e in (0.0, 0.01, 0.02)]
    assert sw.sweep_settings(spec, seed=7) == settings       # a grid ignores the seed


def test_random_search_is_keyed_reproducible_and_within_bounds():
    section = {"method": "random", "samples": 24, "seeds": 3, "params": {
        "ppo.lr": {"log_uniform": [1e-5, 1e-2]},
        "ppo.gamma": {"uniform": [0.9, 0.999]},
        "ppo.clip_eps": {"choice": [0.1, 0.2, 0.3]}}}
    spec = sw.parse_sweep(section)
    a, b = sw.sweep_settings(spec, 0), sw.sweep_settings(spec, 0)
    assert a == b and len(a) == 24
    other = sw.sweep_settings(spec, 1)
    assert [s["ppo.lr"] for s in other] != [s["ppo.lr"] for s in a]
    lrs = np.array([s["ppo.lr"] for s in a])
    gammas = np.array([s["ppo.gamma"] for s in a])
    assert np.all((lrs >= 1e-5) & (lrs <= 1e-2)) and np.all((gammas >= 0.9) & (gammas <= 0.999))
    # log-uniform: the draws spread over the decades, not piled up near the top
    assert np.sum(lrs < 1e-4) >= 3 and np.sum(lrs > 1e-3) >= 3
    assert {s["ppo.clip_eps"] for s in a} == {0.1, 0.2, 0.3}
    assert all(float(f"{x:.6g}") == x for x in lrs)           # six significant digits
    # a setting does not depend on how many are drawn (more samples extend the list)
    fewer = sw.sweep_settings(dataclasses.replace(spec, samples=5), 0)
    assert fewer == a[:5]


@pytest.mark.parametrize(("name", "static"), [
    ("ppo.num_envs", True), ("ppo.rollout_steps", True), ("train.ppo.epochs", True),
    ("networks.macro_hidden", True), ("networks.gnn.hidden", True),
    ("td3.actor_lr", False), ("env.cost.stt_buy", False)])
def test_static_or_foreign_settings_are_rejected_with_the_reason(name, static):
    with pytest.raises(ConfigError) as err:
        grid({name: [1, 2]})
    msg = str(err.value)
    assert f"'sweep.params.{name}'" in msg and "ppo.lr" in msg and "--set" in msg
    if static:
        assert "static setting" in msg and "its own compile" in msg
    else:
        assert "not a Phase-3 PPO hyperparameter" in msg


@pytest.mark.parametrize(("section", "match"), [
    ({"params": {"ppo.lr": [1e-3]}, "trials": 3}, r"unknown config key 'sweep\.trials'"),
    ({"params": {"ppo.learning_rate": [1e-3]}}, r"unknown hyperparameter 'ppo\.learning_rate'"),
    ({"params": {"ppo.gamma": [1.5]}},
     r"sweep\.params\.ppo\.gamma\[0\]' = 1\.5 must be in \(0, 1\]"),
    ({"params": {"ppo.lr": [0.0]}}, r"'sweep\.params\.ppo\.lr\[0\]' = 0\.0 must be > 0"),
    ({"params": {"ppo.lr": {"uniform": [1e-4, 1e-3]}}}, "needs a list of values"),
    ({"method": "random", "params": {"ppo.lr": [1e-3]}}, r"'sweep\.samples' is missing"),
    ({"method": "random", "samples": 2, "params": {"ppo.lr": {"normal": [0, 1]}}},
     "unknown distribution"),
    ({"method": "random", "samples": 2, "params": {"ppo.lr": {"log_uniform": [0.0, 1.0]}}},
     r"log_uniform\[0\]' = 0\.0 must be > 0"),
    ({"method": "random", "samples": 2, "params": {"ppo.lr": {"uniform": [1e-3, 1e-4]}}},
     "must be below"),
    ({"method": "bayes", "params": {"ppo.lr": [1e-3]}}, r"'sweep\.method'"),
    ({"phase": 5, "params": {"ppo.lr": [1e-3]}}, r"phase 3 \(Macro PPO\) or 4"),
    ({"phase": 4, "params": {"ppo.lr": [1e-3]}}, "not a Phase-4 TD3 hyperparameter"),
    ({"phase": 4, "params": {"td3.batch_size": [64]}}, "static setting"),
    ({"phase": 4, "params": {"td3.her_k": [2.5]}}, "whole numbers"),
    ({"phase": 4, "method": "random", "samples": 2,
      "params": {"td3.her_k": {"uniform": [1, 4]}}}, "whole numbers"),
    ({"phase": 4, "curriculum": "off", "params": {"td3.tau": [0.01]}}, "phase 3 only"),
    ({"phase": 3, "params": {"td3.tau": [0.01]}}, "not a Phase-3 PPO hyperparameter"),
    ({"seeds": 0, "params": {"ppo.lr": [1e-3]}}, r"'sweep\.seeds'.*>= 1"),
    ({"params": {}}, r"'sweep\.params'.*non-empty"),
    ({"params": {"ppo.lr": [1e-3], "train.ppo.lr": [1e-4]}}, "given twice"),
    ({"curriculum": "shared", "params": {"ppo.lr": [1e-3]}}, r"'sweep\.curriculum'"),
])
def test_bad_sections_name_the_key(section, match):
    with pytest.raises(ConfigError, match=match):
        sw.parse_sweep(section)


def test_the_anchor_weight_is_swept_per_member_on_one_anchored_program():
    """``ppo.anchor_kl_coef`` is a member leaf like the lr; the program is anchored when any
    setting needs it (the base's weight raised to the largest swept one), else left alone."""
    spec = grid({"ppo.anchor_kl_coef": [0.0, 2.0, 0.5]}, seeds=2)
    settings = sw.sweep_settings(spec, 0)
    hp = sw.member_hparams(PPOHParams.from_config(PPOConfig()), settings, 2)
    np.testing.assert_array_equal(hp.anchor_kl_coef, [0, 0, 2, 2, 0.5, 0.5])
    cfg = Config()
    assert sw.anchored_config(cfg, settings).train.ppo.anchor_kl_coef == 2.0
    assert sw.anchored_config(cfg, [{"ppo.anchor_kl_coef": 0.0}]) is cfg
    assert sw.anchored_config(cfg, [{"ppo.lr": 1e-3}]) is cfg
    own = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ppo=dataclasses.replace(
        cfg.train.ppo, anchor_kl_coef=0.3)))
    assert sw.anchored_config(own, settings) is own
    with pytest.raises(ConfigError, match=r"anchor_kl_coef\[0\]' = -1\.0 must be >= 0"):
        grid({"ppo.anchor_kl_coef": [-1.0]})


def test_sweep_presets_load_and_the_sweep_section_is_kept_out_of_the_run_config():
    cfg, spec = sw.load_sweep_config(PRESETS_DIR / "sweep_smoke.yaml")
    assert spec.method == "grid" and spec.seeds == 2 and spec.curriculum == "schedule"
    assert sw.sweep_settings(spec, cfg.seed) == [
        {"ppo.lr": 1e-3, "ppo.entropy_coef": 0.0}, {"ppo.lr": 1e-3, "ppo.entropy_coef": 0.02},
        {"ppo.lr": 3e-4, "ppo.entropy_coef": 0.0}, {"ppo.lr": 3e-4, "ppo.entropy_coef": 0.02}]
    assert cfg.synth.preset == "small" and cfg.networks.macro_hidden == (16, 8)  # base: chain
    _, more = sw.load_sweep_config(PRESETS_DIR / "sweep_smoke.yaml", ["sweep.seeds=3"])
    assert more.seeds == 3
    gpu_cfg, gpu = sw.load_sweep_config(PRESETS_DIR / "sweep_ppo.yaml")
    assert len(sw.sweep_settings(gpu, 0)) == 18 and gpu.seeds == 4
    assert gpu_cfg.train.ppo == PPOConfig()
    with pytest.raises(ConfigError, match="no 'sweep:' section"):
        sw.load_sweep_config(PRESETS_DIR / "smoke.yaml")
    plain, extra = load_config_sections(PRESETS_DIR / "smoke.yaml", (), ("sweep",))
    assert extra == {} and plain.synth.preset == "small"


# --------------------------------------------------------------------------- members


def test_members_are_settings_major_with_the_same_seed_keys_for_every_setting():
    base = PPOHParams.from_config(PPOConfig())
    settings = [{"ppo.lr": 1e-3, "ppo.gamma": 0.9}, {"ppo.lr": 2e-4, "ppo.gamma": 0.97}]
    hp = sw.member_hparams(base, settings, seeds=3)
    # member m = setting m // 3, seed m % 3
    np.testing.assert_array_equal(hp.lr, np.float32([1e-3] * 3 + [2e-4] * 3))
    np.testing.assert_array_equal(hp.gamma, np.float32([0.9] * 3 + [0.97] * 3))
    np.testing.assert_array_equal(hp.clip_eps, np.full(6, np.float32(0.15)))  # base values
    np.testing.assert_array_equal(hp.max_grad_norm, np.full(6, np.float32(0.5)))
    assert all(x.dtype == np.float32 and x.shape == (6,) for x in jax.tree.leaves(hp))
    keys = jax.random.key_data(sw.member_keys(5, 2, 3))
    seed_keys = jax.random.key_data(rm.phase3_keys(5, 3))
    np.testing.assert_array_equal(keys, np.concatenate([seed_keys, seed_keys]))
    cfg = sw.settings_config(load_config_sections(None)[0], settings[1], 3)
    assert cfg.train.ppo.lr == 2e-4 and cfg.train.ppo.gamma == 0.97 and cfg.train.seeds == 3


def test_curriculum_rule_promotes_on_the_schedule_only():
    rule = sw.curriculum_rule(grid({"ppo.lr": [1e-3]}))
    # a huge validation Sharpe does not promote; the update schedule does
    assert not cur.promote(0, 1e9, 1000, 1, 100, rule)
    assert cur.promote(0, -1.0, 1, 20, 100, rule)
    off = sw.curriculum_rule(grid({"ppo.lr": [1e-3]}, curriculum="off"))
    assert cur.initial_stage(off) == 1 and not cur.promote(1, 1e9, 1000, 99, 100, off)


# --------------------------------------------------------------------------- ranking


def test_ranking_statistics_and_order_match_numpy():
    rng = np.random.default_rng(0)
    m, k = 5, 3
    sharpe = rng.normal(size=(m, k))
    sharpe[3, 1] = np.nan                                   # one failed seed
    sharpe[4] = np.nan                                      # a setting with no finite seed
    ret = rng.normal(size=(m, k))
    settings = [{"ppo.lr": float(i)} for i in range(m)]
    ranking = sw.rank_settings(settings, {"val_sharpe": sharpe.ravel(),
                                          "val_return": ret.ravel()}, k)
    means = np.nanmean(sharpe[:4], axis=1)
    expected = [int(i) for i in np.argsort(-means, kind="stable")] + [4]
    assert [r["setting"] for r in ranking] == expected
    assert [r["rank"] for r in ranking] == [1, 2, 3, 4, 5]
    for r in ranking[:4]:
        row = sharpe[r["setting"]]
        ok = row[np.isfinite(row)]
        assert r["val_sharpe_mean"] == pytest.approx(ok.mean(), abs=1e-12)
        assert r["val_sharpe_std"] == pytest.approx(np.std(ok), abs=1e-12)
        assert (r["val_sharpe_min"], r["val_sharpe_max"]) == (ok.min(), ok.max())
        assert r["val_return_mean"] == pytest.approx(ret[r["setting"]].mean(), abs=1e-12)
        assert r["params"] == settings[r["setting"]]
    three = next(r for r in ranking if r["setting"] == 3)
    assert three["finite_seeds"] == 2 and three["val_sharpe_per_seed"][1] is None
    assert ranking[-1]["val_sharpe_mean"] is None and ranking[-1]["finite_seeds"] == 0
    md = sw.ranking_markdown(ranking, ["ppo.lr"], seeds=k)
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == m and rows[0].startswith(f"| 1 | {expected[0]} |")
    assert f"{ranking[0]['val_sharpe_mean']:.4f}" in rows[0] and "n/a" in rows[-1]


def _weekly_results(m, k, weeks, seed=0):
    """Hand-made results.json records: member i = setting i // k, seed i % k, with weekly
    validation returns; setting 1 has a real edge."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(m * k):
        r = rng.normal(0.002 if i // k == 1 else 0.0, 0.02, weeks)
        out.append({"member": i, "setting": i // k, "seed": i % k,
                    "params": {"ppo.lr": float(i // k)}, sw.WEEKLY: r.tolist()})
    return out


def test_overfitting_block_is_computed_from_the_members_weekly_records():
    m, k, weeks = 5, 3, 40
    results = _weekly_results(m, k, weeks)
    # the seed-mean series of each setting, straight from the records
    series = np.stack([np.mean([results[s * k + j][sw.WEEKLY] for j in range(k)], axis=0)
                       for s in range(m)], axis=1)
    np.testing.assert_allclose(sw.seed_mean_weekly(results[::-1], m, k), series, rtol=1e-15)
    block = sw.overfitting_block(results, 1, m, k, of.selection_overfitting,
                                 walk={"start": "2021-01-08", "end": "2021-10-08"})
    pbo = of.pbo_cscv(series, splits=16)                      # 40 weeks -> 16 blocks of 2
    assert block["pbo"] == pbo["pbo"] and block["pbo_detail"]["splits"] == 16
    assert block["pbo_detail"]["block_rows"] == 2 and block["pbo_detail"]["rows_used"] == 32
    assert block["pbo_detail"]["logit_median"] == np.median(pbo["logits"])
    sharpes = series.mean(0) / series.std(0, ddof=1)
    dsr = of.deflated_sharpe(series[:, 1], trials=m, sr_variance=np.var(sharpes, ddof=1),
                             periods=52)
    assert block["dsr"] == pytest.approx(dsr["dsr"], rel=1e-12)
    assert block["dsr_detail"]["sharpe_annual"] == pytest.approx(sharpes[1] * np.sqrt(52))
    assert (block["trials"], block["selected_setting"], block["weeks"]) == (m, 1, weeks)
    assert "2021-01-08 to 2021-10-08" in block["rows"] and block["notes"] == []
    line = sw.overfitting_line(block)
    assert line.startswith(f"PBO {pbo['pbo']:.2f} over 5 settings (CSCV, 16 blocks of 2 "
                           f"week(s)); deflated Sharpe of the best {dsr['dsr']:.2f} (trials 5;")
    ranking = sw.rank_settings([r["params"] for r in results[::k]],
                               {"val_sharpe": np.arange(m * k, dtype=float)}, k)
    md = sw.ranking_markdown(ranking, ["ppo.lr"], seeds=k, overfitting=block)
    assert line in md.splitlines()
    # without the callback (training cannot import evaluation) only the bookkeeping is there
    bare = sw.overfitting_block(results, 1, m, k, None)
    assert bare["trials"] == m and bare["pbo"] is None and bare["dsr"] is None
    assert "no overfitting callback" in bare["notes"][0]
    assert "not computed (no overfitting callback" in sw.overfitting_line(bare)
    results[4][sw.WEEKLY][3] = float("nan")                   # member 4 = setting 1
    assert sw.overfitting_block(results, 1, m, k, of.selection_overfitting)["notes"] == [
        "settings [1] have non-finite weekly returns"]
    with pytest.raises(ValueError, match="same weeks"):
        sw.seed_mean_weekly([*results[:-1], {**results[-1], sw.WEEKLY: [0.0]}], m, k)
    with pytest.raises(ValueError, match=r"members 0\.\.14"):
        sw.seed_mean_weekly(results[:-1], m, k)


def test_run_phase3_rejects_member_arrays_of_the_wrong_size(tmp_path):
    from tests.training.test_rl_macro import host_inputs

    cfg, market, meta, feats = host_inputs()
    run = create_run(tmp_path, "bad", cfg, "fp", resume=False)
    hp = sw.member_hparams(PPOHParams.from_config(cfg.train.ppo), [{"ppo.lr": 1e-3}], 3)
    with pytest.raises(ConfigError, match=r"hparams must have a leading axis of 2 members"):
        rm.run_phase3(run, cfg, market, meta, feats, seeds=2, hparams=hp)
    with pytest.raises(ConfigError, match="member_keys must have a leading axis of 4"):
        rm.run_phase3(run, cfg, market, meta, feats, seeds=4, member_keys=rm.phase3_keys(0, 2))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """3 settings × 2 seeds in one program on the probe market: settings 0 and 2 are equal."""
    from tests.training.test_rl_macro import host_inputs

    cfg, market, meta, feats = host_inputs()
    ppo = dataclasses.replace(cfg.train.ppo, total_env_steps=32, epochs=1)   # 2 updates
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ppo=ppo,
                                                             eval_interval=2))
    spec = grid({"ppo.lr": [3e-3, 1e-5, 3e-3]}, seeds=2)
    run = create_run(tmp_path_factory.mktemp("sweep"), "tiny", cfg, "fp", resume=False)
    lines: list[str] = []
    out = sw.run_sweep(run, cfg, spec, market, meta, feats, log=lines.append,
                       overfitting=of.selection_overfitting)
    return out, run, cfg, spec, (market, meta, feats), lines


def test_an_anchor_sweep_saves_a_best_run_that_restores_under_its_own_config(tmp_path):
    """Settings anchor 0 and 1 (1 seed each) share one anchored program; the members differ;
    the best setting's folder holds a config and a checkpoint that fit each other (an
    unanchored best drops the anchor, an anchored one keeps it)."""
    from tests.training.test_rl_macro import host_inputs

    cfg, market, meta, feats = host_inputs()
    ppo = dataclasses.replace(cfg.train.ppo, total_env_steps=32, epochs=1)   # 2 updates
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ppo=ppo,
                                                             eval_interval=2))
    spec = grid({"ppo.anchor_kl_coef": [0.0, 1.0]}, seeds=1)
    run = create_run(tmp_path, "anchor", cfg, "fp", resume=False)
    out = sw.run_sweep(run, cfg, spec, market, meta, feats)
    assert out["phase3"]["spec"]["anchored"] and "anchor" in out["phase3"]
    a, b = (r["val_sharpe"] for r in out["results"])
    assert a != b                                  # the anchor weight changed the training
    kl = [r["per_seed"]["anchor_kl"] for r in run.read_metrics()
          if r["phase"] == 3 and "anchor_kl" in r.get("per_seed", {})]
    assert kl and all(k[0] >= 0 and k[1] >= 0 for k in kl) and max(k[1] for k in kl) > 0
    settings = sw.sweep_settings(spec, 0)
    best = open_run(out["paths"]["best_run"]).config.train.ppo.anchor_kl_coef
    assert best == settings[out["best"]["setting"]]["ppo.anchor_kl_coef"]
    for setting in (0, 1):  # each setting saved as the best one: config and state fit
        path = sw.save_best_setting(run, sw.anchored_config(cfg, settings), spec, settings,
                                    setting, out["phase3"], market, meta, feats)
        best_run = open_run(path)
        weight = float(best_run.config.train.ppo.anchor_kl_coef)
        assert weight == settings[setting]["ppo.anchor_kl_coef"]
        setup = rm.setup_phase3(best_run.config, market, meta, feats)
        assert setup.program.spec.anchored == (weight > 0)
        abstract = jax.eval_shape(jax.vmap(setup.program.init, in_axes=(0, 0, None, None)),
                                  rm.phase3_keys(cfg.seed, 1), rm.stack_hparams(setup.hp, 1),
                                  setup.train_params, cur.stage_starts(0, setup.windows))
        with PhaseCheckpointer(best_run, 3, read_only=True) as ck:
            kept, _, _ = ck.restore(abstract, "latest")
        assert (kept.anchor is None) == (weight == 0)


@pytest.mark.slow  # one compiled sweep / K-seed program (~1-2 min cold)
def test_sweep_writes_one_record_per_member_equal_to_what_phase3_logged(tiny_sweep):
    out, run, _cfg, _spec, _, lines = tiny_sweep
    paths = out["paths"]
    assert paths["results"] == run.root / "sweep" / "results.json"
    results = json.loads(paths["results"].read_text())
    assert len(results) == 6 == out["phase3"]["seeds"]
    assert [(r["setting"], r["seed"]) for r in results] == [(s, j) for s in range(3)
                                                           for j in range(2)]
    assert [r["params"]["ppo.lr"] for r in results] == [3e-3, 3e-3, 1e-5, 1e-5, 3e-3, 3e-3]
    assert all(r["env_steps"] == 32 for r in results)
    # the metrics line of the last evaluation and the Phase-3 summary, member by member
    last_eval = [r for r in run.read_metrics() if r["phase"] == 3 and r.get("eval")][-1]
    per_seed = read_phase_summary(run, 3)["per_seed"]
    for r in results:
        m = r["member"]
        assert r["val_sharpe"] == pytest.approx(last_eval["val_sharpe_per_seed"][m], abs=0)
        for key in sw.METRICS:
            assert r[key] == per_seed[key][m]
    assert np.isfinite([r["val_sharpe"] for r in results]).all()
    assert any("6 members in one program" in ln for ln in lines)


@pytest.mark.slow  # one compiled sweep / K-seed program (~1-2 min cold)
def test_identical_settings_give_identical_per_seed_results(tiny_sweep):
    out, *_ = tiny_sweep
    res = {(r["setting"], r["seed"]): r for r in out["results"]}
    for j in range(2):
        for key in sw.METRICS:
            assert res[(0, j)][key] == res[(2, j)][key]      # bit-equal: same seed keys
    # ... while another learning rate on the same seed learns something else, and the two
    # seeds of one setting differ
    assert res[(0, 0)]["val_sharpe"] != res[(1, 0)]["val_sharpe"]
    assert res[(0, 0)]["val_sharpe"] != res[(0, 1)]["val_sharpe"]


@pytest.mark.slow  # one compiled sweep / K-seed program (~1-2 min cold)
def test_ranking_files_and_the_best_settings_checkpoint(tiny_sweep):
    out, run, cfg, spec, (market, meta, feats), _ = tiny_sweep
    doc = json.loads(out["paths"]["ranking_json"].read_text())
    assert (doc["trials"], doc["seeds"], doc["members"]) == (3, 2, 6)
    ranking = doc["ranking"]
    sharpe = np.array([r["val_sharpe"] for r in out["results"]]).reshape(3, 2)
    assert [r["setting"] for r in ranking] == list(np.argsort(-sharpe.mean(1), kind="stable"))
    assert ranking[0]["val_sharpe_mean"] == pytest.approx(sharpe.mean(1).max(), abs=1e-9)
    assert ranking[0]["val_sharpe_std"] == pytest.approx(sharpe[ranking[0]["setting"]].std(),
                                                         abs=1e-9)
    md = out["paths"]["ranking_md"].read_text()
    assert "| rank | setting | ppo.lr |" in md and md.count("\n| ") == 1 + 3
    assert sw.overfitting_line(doc["overfitting"]) in md.splitlines()
    # best/: a run folder whose config holds the best values and whose Phase 3 holds that
    # setting's two seeds, equal to those members of the sweep's final state
    best = ranking[0]["setting"]
    best_run = open_run(out["paths"]["best_run"])
    assert best_run.config.train.ppo.lr == sw.sweep_settings(spec, 0)[best]["ppo.lr"]
    assert best_run.config.train.seeds == 2
    summary = read_phase_summary(best_run, 3)
    assert summary["seeds"] == 2 and summary["sweep"]["setting"] == best
    assert summary["per_seed"]["val_sharpe"] == [r["val_sharpe"] for r in out["results"]
                                                 if r["setting"] == best]
    assert summary["val_sharpe"] == pytest.approx(ranking[0]["val_sharpe_mean"], abs=1e-9)
    setup = rm.setup_phase3(cfg, market, meta, feats)
    init = jax.vmap(setup.program.init, in_axes=(0, 0, None, None))
    starts = cur.stage_starts(0, setup.windows)

    def latest(r, members):
        abstract = jax.eval_shape(init, sw.member_keys(cfg.seed, members // 2, 2),
                                  rm.stack_hparams(setup.hp, members), setup.train_params,
                                  starts)
        with PhaseCheckpointer(r, 3, read_only=True) as ck:
            return ck.restore(abstract, "latest")

    full, _, step = latest(run, 6)
    kept, meta_b, step_b = latest(best_run, 2)
    assert step == step_b == 2 and meta_b["user"]["sweep"]["members"] == [2 * best, 2 * best + 1]
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(kept), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[2 * best: 2 * best + 2], b)
    # Phase 4 of the best run finds its Macro actor
    from hrl_sarp_jax.training.rl_micro import load_phase3_macro

    actor, info = load_phase3_macro(best_run, best_run.config, market, meta, feats, 3)
    assert actor is not None and info["phase3"].startswith("phase 3: MacroActor of all 2 seed")
    assert "seed k from seed k mod 2" in info["phase3"]
    kernels = np.asarray(jax.tree.leaves(actor)[0])
    assert kernels.shape[0] == 3 and np.array_equal(kernels[0], kernels[2])


@pytest.mark.slow  # one compiled sweep / K-seed program (~1-2 min cold)
def test_overfitting_block_of_a_sweep_walks_the_whole_validation_split(tiny_sweep):
    out, run, cfg, spec, (market, meta, feats), _ = tiny_sweep
    doc = json.loads(out["paths"]["ranking_json"].read_text())
    block = doc["overfitting"]
    results = json.loads(out["paths"]["results"].read_text())
    weekly = np.array([r[sw.WEEKLY] for r in results])                  # [6, W]
    walk = block["walk"]
    # the walk runs from the first evaluation start day to the split's last week end, every
    # week live (no member is ruined on the probe market) and the episode ends in the window
    setup = rm.setup_phase3(cfg, market, meta, feats)
    assert walk["start"] == setup.info["eval_start_days"][0] and walk["ended_in_window"]
    week_end = np.asarray(market.week_end, bool)
    day0, t_hi = int(setup.eval_days[0]), int(setup.val_params.t_hi)
    assert weekly.shape == (6, walk["weeks"]) == (6, week_end[day0 + 1:t_hi + 1].sum())
    assert all(r["val_walk_live_weeks"] == walk["weeks"] for r in results)
    # the block is the callback on the records' seed-mean series, the best setting selected
    series = weekly.reshape(3, 2, -1).mean(1).T
    expected = of.selection_overfitting(series, doc["ranking"][0]["setting"], periods=52)
    assert block["pbo"] == expected["pbo"]["pbo"] and block["trials"] == 3
    assert block["dsr"] == expected["dsr"]["dsr"]
    assert block["selected_setting"] == doc["ranking"][0]["setting"]
    # settings 0 and 2 are the same setting on the same seeds: the same weekly returns
    np.testing.assert_array_equal(series[:, 0], series[:, 2])
    # its first episode-length weeks are the first validation episode: the same Sharpe as
    # rl_macro.evaluate's episode 0 on the final params (two XLA programs: float32 rounding)
    state, _, _ = sw._latest_state(run, cfg, setup, sw.sweep_settings(spec, cfg.seed), 2)
    evaluate = jax.jit(jax.vmap(setup.program.evaluate, in_axes=(0, None, None, None)))
    ev = evaluate(state.train.params, setup.val_params, setup.eval_days, jax.random.key(0))
    w = setup.val_params.max_steps_in_episode
    first = weekly[:, :w]
    ours = first.mean(1) / first.std(1, ddof=1) * np.sqrt(52)
    np.testing.assert_allclose(ours, np.asarray(ev["episode_sharpe"])[:, 0], rtol=2e-4,
                               atol=1e-5)


@pytest.mark.slow  # one compiled sweep / K-seed program (~1-2 min cold)
def test_a_finished_sweep_is_not_overwritten(tiny_sweep):
    out, run, cfg, spec, (market, meta, feats), _ = tiny_sweep
    before = out["paths"]["results"].read_text()
    with pytest.raises(CheckpointError, match="--resume"):
        sw.run_sweep(run, cfg, spec, market, meta, feats)
    other = grid({"ppo.lr": [1e-3, 1e-4]}, seeds=2)
    with pytest.raises(ConfigError, match="differs from the sweep saved"):
        sw.run_sweep(run, cfg, other, market, meta, feats, resume=True)
    assert out["paths"]["results"].read_text() == before
    saved = json.loads((run.root / "sweep" / "sweep.json").read_text())
    assert saved["settings"] == [{"ppo.lr": 3e-3}, {"ppo.lr": 1e-5}, {"ppo.lr": 3e-3}]
    assert math.isclose(saved["spec"]["params"][0]["values"][1], 1e-5)


def test_cli_registers_the_sweep_command():
    from hrl_sarp_jax.cli import build_parser, cmd_sweep

    args = build_parser().parse_args(["sweep", "--config", "sweep_smoke",
                                      "--run", "s", "--data", "d", "--set", "sweep.seeds=1"])
    assert args.func is cmd_sweep and args.run == "s" and args.overrides == ["sweep.seeds=1"]
    assert args.checkpoints == "checkpoints" and not args.resume


@pytest.mark.slow
def test_cli_sweep_on_the_smoke_market(tmp_path, smoke_market, capsys):
    from hrl_sarp_jax.cli import main

    market_dir = smoke_market[0]
    rc = main(["sweep", "--config", str(PRESETS_DIR / "sweep_smoke.yaml"), "--data",
               str(market_dir), "--run", "cli", "--checkpoints", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "cli" / "sweep" / "results.json").read_text())
    assert len(results) == 8 and "| rank | setting | ppo.lr | ppo.entropy_coef |" in printed
    # the CLI hands the sweep the overfitting statistics (training cannot import evaluation)
    block = json.loads((tmp_path / "cli" / "sweep" / "ranking.json").read_text())["overfitting"]
    assert block["trials"] == 4 and block["pbo"] is not None and block["dsr"] is not None
    assert f"PBO {block['pbo']:.2f} over 4 settings (CSCV, " in printed
    assert (tmp_path / "cli" / "sweep" / "best" / "phase3" / "summary.json").is_file()


def test_the_best_run_folder_copies_the_earlier_phases_and_replaces_an_older_best(tmp_path):
    """best/ holds the sweep run's earlier phases it has (their files byte for byte, so the
    next phase and evaluate start from the same pre-trained agents) and their metrics lines,
    not the later ones; a second best/ replaces the first whole (an interrupted build's
    leftover removed); and its report's deflated Sharpe counts the same trials as the sweep
    run's (Phase 1's 3 validation rows + the 6 settings), a setting<i>/ folder only its own."""
    cfg = Config()
    run = create_run(tmp_path, "sweep_run", cfg, "fp", resume=False, tensorboard=False)
    for phase, text in ((1, "one"), (3, "three")):
        (run.phase_dir(phase) / "ckpt").mkdir(parents=True)
        (run.phase_dir(phase) / "ckpt" / "data").write_text(text)
    for step in range(3):
        run.log_metrics(1, step, {"val_loss": 1.0 - step / 10})
    run.log_metrics(3, 0, {"val_sharpe": 0.5})
    (run.root / sw.SECTION).mkdir()
    (run.root / sw.SECTION / "ranking.json").write_text(json.dumps({"trials": 6}))
    first = sw.best_run_folder(run, cfg, (1, 2), trials=6)
    assert (first.phase_dir(1) / "ckpt" / "data").read_text() == "one"
    assert not first.phase_dir(2).exists() and not first.phase_dir(3).exists()
    assert [r["phase"] for r in open_run(first.root).read_metrics()] == [1, 1, 1]
    assert selection_trials(open_run(run.root))["trials"] == 3 + 1 + 6
    assert selection_trials(open_run(first.root)) == {"trials": 3 + 6, "by_phase": {"1": 3},
                                                      "sweep": 6}
    assert describe_origin(open_run(first.root).info) == (
        "chosen by the sweep of run sweep_run among 6 settings; its deflated Sharpe counts "
        "them as trials")
    (first.phase_dir(1) / "stale").write_text("x")
    (first.root.parent / "best.staging" / "phase9").mkdir(parents=True)  # an interrupted build
    tau = dataclasses.replace(cfg.train.td3, tau=0.01)
    again = sw.best_run_folder(run, dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, td3=tau)), (1, 2, 3), trials=6)
    assert again.root == first.root and not (again.phase_dir(1) / "stale").exists()
    assert (again.phase_dir(3) / "ckpt" / "data").read_text() == "three"
    assert open_run(again.root).config.train.td3.tau == 0.01
    assert sorted(p.name for p in again.root.parent.iterdir()) == ["best", "ranking.json"]
    one = sw.best_run_folder(run, cfg, (1, 2), name="setting0")
    assert selection_trials(open_run(one.root))["trials"] == 3
    assert describe_origin(open_run(one.root).info) == ("one setting of the sweep of run "
                                                        "sweep_run (not a selection)")
