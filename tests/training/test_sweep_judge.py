"""A sweep's settings judged on the many-market instrument (hrl_sarp_jax.sweep_judge)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import open_run
from hrl_sarp_jax.config import PRESETS_DIR
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.sweep_judge import check_tuning_seeds


def test_a_sweep_is_judged_on_tuning_seeds_only():
    assert check_tuning_seeds(3, 1000) == [1000, 1001, 1002]
    assert check_tuning_seeds(1, 8999) == [8999]
    with pytest.raises(ConfigError, match=r"seeds 9000\.\.9001 are the instrument's judgement"):
        check_tuning_seeds(3, 8999)
    with pytest.raises(ConfigError, match="judgement range"):
        check_tuning_seeds(1, 9999)
    with pytest.raises(ConfigError, match="at least 1 market"):
        check_tuning_seeds(0, 1000)


def test_cli_refuses_judgement_seeds_before_training(tmp_path, capsys):
    from hrl_sarp_jax.cli import main

    rc = main(["sweep", "--config", "sweep_smoke", "--run", "x", "--checkpoints",
               str(tmp_path), "--markets", "2", "--market-seed", "9000"])
    assert rc != 0 and "judgement range" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_sweep_judged_on_markets_ranks_and_keeps_the_first(tmp_path, smoke_market, capsys):
    """A Phase-3 sweep of 4 settings judged on 2 generated markets: instrument.json ranks the
    settings by their agent's mean net Sharpe, each figure is its own setting folder's
    many-market report, the paired differences to the first are those of the per-market
    Sharpes (NumPy), and best/ holds the first setting."""
    from hrl_sarp_jax.cli import main

    preset, data = str(PRESETS_DIR / "sweep_smoke.yaml"), str(smoke_market[0])
    sweep = ["sweep", "--config", preset, "--data", data, "--run", "j", "--checkpoints",
             str(tmp_path), "--markets", "2", "--market-seed", "1000"]
    assert main(sweep) != 0  # no Phase-2 Micro to backtest the settings with: refused first
    assert "needs its Phase-2 Micro in run j" in capsys.readouterr().err
    assert not (tmp_path / "j" / "phase3").exists()
    for phase in ("1", "2"):  # train takes the sweep preset (its sweep: section left out)
        assert main(["train", "--config", preset, "--data", data, "--phase", phase, "--run",
                     "j", "--checkpoints", str(tmp_path)] + (["--resume"] if phase == "2"
                                                             else [])) == 0
    capsys.readouterr()
    assert main([*sweep, "--resume"]) == 0
    printed = capsys.readouterr().out
    sweep_dir = tmp_path / "j" / "sweep"
    doc = json.loads((sweep_dir / "instrument.json").read_text())
    assert doc["markets"] == [1000, 1001] and "| rank | setting | ppo.lr |" in printed
    ranking = doc["ranking"]
    assert sorted(r["setting"] for r in ranking) == [0, 1, 2, 3]
    sharpe = [r["agent"]["sharpe"] for r in ranking]
    assert sharpe == sorted(sharpe, reverse=True)
    per_market = {}
    for r in ranking:
        report = json.loads((sweep_dir / f"setting{r['setting']}" / "report-markets" /
                             "metrics.json").read_text())
        assert [m["seed"] for m in report["markets"]] == [1000, 1001]
        per_market[r["setting"]] = np.array([m["strategies"]["hrl_sarp"]["sharpe"]
                                             for m in report["markets"]])
        assert r["agent"]["sharpe"] == pytest.approx(per_market[r["setting"]].mean(), abs=1e-9)
        assert r["agent_vs_equal_weight"] == report["paired"]["equal_weight"]
    first = ranking[0]["setting"]
    assert ranking[0]["agent_vs_first"] is None
    for r in ranking[1:]:
        d = per_market[r["setting"]] - per_market[first]
        assert r["agent_vs_first"]["mean"] == pytest.approx(d.mean(), abs=1e-12)
        assert r["agent_vs_first"]["wins"] == int((d > 0).sum())
    best = open_run(sweep_dir / "best")
    assert doc["best_setting"] == first
    assert {"ppo.lr": best.config.train.ppo.lr,
            "ppo.entropy_coef": best.config.train.ppo.entropy_coef} == ranking[0]["params"]


def test_cli_refuses_markets_for_a_real_market_without_a_preset(tmp_path, smoke_market,
                                                                 capsys):
    """A market without a generator (meta.json not synthetic) has no instrument markets of
    its own: --markets without --preset is refused before any training."""
    import shutil

    from hrl_sarp_jax.cli import main

    real = tmp_path / "real"
    shutil.copytree(smoke_market[0], real)
    meta = json.loads((real / "meta.json").read_text())
    (real / "meta.json").write_text(json.dumps({**meta, "synthetic": False}))
    (tmp_path / "ck" / "r" / "phase2" / "ckpt").mkdir(parents=True)  # the partner is there
    rc = main(["sweep", "--config", str(PRESETS_DIR / "sweep_smoke.yaml"), "--data", str(real),
               "--run", "r", "--checkpoints", str(tmp_path / "ck"), "--markets", "2"])
    assert rc != 0 and "is not a generated market" in capsys.readouterr().err
    assert not (tmp_path / "ck" / "r" / "run.json").exists()
