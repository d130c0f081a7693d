"""Per-stock layer options (networks.stocks): NumPy references, checkpoint layout, config
errors."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.networks.flat import FlatActorCritic
from hrl_sarp_jax.networks.micro import MicroActor, MicroCritics
from hrl_sarp_jax.networks.stocks import (
    check_network_config,
    mix_stocks,
    stock_mlp,
    stock_mlp_shared,
)

MASK = np.array([True, False, True, True, False])


class _StockLayers(nn.Module):
    cfg: object

    @nn.compact
    def __call__(self, x, mask):
        return mix_stocks(self.cfg, stock_mlp(self.cfg, x), mask, True)


def _lean(tiny, **kw):
    return dataclasses.replace(tiny, stock_activation="relu", stock_norm=False,
                               stock_mixer="deepsets", **kw)


def test_lean_stock_layers_match_a_numpy_reference(tiny_config):
    cfg = _lean(tiny_config, micro_stock_hidden=(6, 4))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    net = _StockLayers(cfg)
    params = net.init(jax.random.key(0), x, MASK)
    # non-zero biases, so a dropped or misplaced bias shows
    params = jax.tree.map(lambda p: p + 0.05 if p.ndim == 1 else p, params)
    got = np.asarray(net.apply(params, x, MASK))
    p = jax.tree.map(np.asarray, params["params"])
    mlp = p["stock_mlp"]
    h = np.maximum(x @ mlp["Dense_0"]["kernel"] + mlp["Dense_0"]["bias"], 0.0)
    h = np.maximum(h @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"], 0.0)
    mean = h[MASK].mean(axis=0)  # masked mean over the 3 valid stocks
    z = np.concatenate([h, np.broadcast_to(mean, h.shape)], axis=1)
    z = np.maximum(z @ p["deepsets"]["kernel"] + p["deepsets"]["bias"], 0.0)
    want = h + np.where(MASK[:, None], z, 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert set(mlp) == {"Dense_0", "Dense_1"}  # no LayerNorm params


class _Shared(nn.Module):
    cfg: object

    @nn.compact
    def __call__(self, x, e, mask):
        return stock_mlp_shared(self.cfg, x, e, mask)


@pytest.mark.parametrize("norm", [False, True])
def test_the_shared_input_once_matches_a_numpy_reference_and_the_row_by_row_layer(
        tiny_config, norm):
    """stock_shared_once: x W[:F] + e W[F:] (masked rows: the bias alone), then the MLP's
    activations, equal to the [N, F + E] rows multiplied as they are, with one parameter set."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    e = rng.normal(size=4).astype(np.float32)
    rows = dataclasses.replace(_lean(tiny_config, micro_stock_hidden=(6, 4)), stock_norm=norm)
    once = dataclasses.replace(rows, stock_shared_once=True)
    params = _Shared(rows).init(jax.random.key(0), x, e, MASK)
    params_once = _Shared(once).init(jax.random.key(0), x, e, MASK)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 params, params_once)  # the same names, shapes and initial values
    params = jax.tree.map(lambda q: q + 0.05 if q.ndim == 1 else q, params)
    got_once = np.asarray(_Shared(once).apply(params, x, e, MASK))
    got_rows = np.asarray(_Shared(rows).apply(params, x, e, MASK))
    mlp = jax.tree.map(np.asarray, params["params"]["stock_mlp"])
    k0 = mlp["Dense_0"]["kernel"]
    h = np.where(MASK[:, None], x @ k0[:3] + e @ k0[3:], 0.0) + mlp["Dense_0"]["bias"]
    for k in range(2):
        if k:
            h = h @ mlp[f"Dense_{k}"]["kernel"] + mlp[f"Dense_{k}"]["bias"]
        if norm:
            ln = mlp[f"LayerNorm_{k}"]
            h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
            h = h * ln["scale"] + ln["bias"]
        h = np.maximum(h, 0.0)
    np.testing.assert_allclose(got_once, h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_rows, h, rtol=1e-5, atol=1e-5)
    assert not np.allclose(h[~MASK], 0.0)  # masked rows carry the bias, as the rows layer's


@pytest.mark.parametrize("which", ["actor", "critics", "flat"])
def test_the_micro_and_flat_networks_give_the_same_outputs_with_the_shared_input_once(
        tiny_config, which):
    """One parameter set (initialised either way) serves both settings; outputs agree to
    float rounding."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    goal = rng.dirichlet(np.ones(6)).astype(np.float32)
    w = rng.dirichlet(np.ones(5)).astype(np.float32)
    make, args = {"actor": (MicroActor, (x, goal, MASK)),
                  "critics": (MicroCritics, (x, goal, w, MASK)),
                  "flat": (FlatActorCritic, (x, MASK, w, goal))}[which]
    rows, once = tiny_config, dataclasses.replace(tiny_config, stock_shared_once=True)
    params = make(rows).init(jax.random.key(3), *args)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 params, make(once).init(jax.random.key(3), *args))
    out_rows, out_once = (jax.tree.map(np.asarray, make(c).apply(params, *args))
                          for c in (rows, once))
    flat = jax.tree.leaves(out_rows)
    assert any(np.abs(leaf).max() > 1e-3 for leaf in flat)  # not a trivially zero output
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 out_rows, out_once)


def test_the_original_layout_keeps_its_parameter_names(tiny_config):
    """Checkpoints written before the stock_* options restore: same tree, same shapes."""
    x = np.ones((5, 4), np.float32)
    goal = np.full(6, 1 / 6, np.float32)
    original = dataclasses.replace(tiny_config, stock_activation="gelu", stock_norm=True,
                                   stock_mixer="attention")
    tree = jax.eval_shape(MicroActor(original).init, jax.random.key(0), x, goal, MASK)
    assert set(tree["params"]) == {"goal_encoder", "stock_mlp", "attention", "norm",
                                   "logit_head"}
    assert set(tree["params"]["stock_mlp"]) == {"Dense_0", "LayerNorm_0", "Dense_1",
                                                "LayerNorm_1"}
    lean = jax.eval_shape(MicroActor(_lean(tiny_config)).init, jax.random.key(0), x, goal, MASK)
    assert set(lean["params"]) == {"goal_encoder", "stock_mlp", "deepsets", "logit_head"}


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("stock_activation", "tanh", "networks.stock_activation = 'tanh' is not one of gelu, relu"),
    ("stock_mixer", "mlp", "networks.stock_mixer = 'mlp' is not one of attention, deepsets"),
    ("attention_dim", 7, "networks.attention_dim = 7 must be divisible by"),
])
def test_bad_stock_options_name_the_key(tiny_config, key, value, needle):
    with pytest.raises(ConfigError, match="^" + needle.replace("(", r"\(")):
        check_network_config(dataclasses.replace(tiny_config, **{key: value}))
    check_network_config(tiny_config)  # the defaults pass


def test_a_run_saved_before_the_stock_options_keeps_the_original_layers(tmp_path):
    """Saved run configs lack the stock_* keys: they mean the original layers (their
    checkpoints have that layout); a user's config without them gets the current defaults."""
    import yaml

    from hrl_sarp_jax.checkpointing import create_run, open_run
    from hrl_sarp_jax.config import Config, load_config, load_run_config, to_dict

    saved = to_dict(Config())
    for key in ("stock_activation", "stock_norm", "stock_mixer", "stock_shared_once"):
        del saved["networks"][key]
    run = create_run(tmp_path, "old", saved, "fp", resume=False)
    (run.root / "config.yaml").write_text(yaml.safe_dump(saved))  # as an old version wrote it
    for cfg in (open_run(run.root).config, load_run_config(run.root / "config.yaml")):
        assert (cfg.networks.stock_activation, cfg.networks.stock_norm,
                cfg.networks.stock_mixer, cfg.networks.stock_shared_once) == (
                    "gelu", True, "attention", False)
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"networks": {"goal_embedding": 16}}))
    assert (load_config(user).networks.stock_mixer, Config().networks.stock_norm,
            load_config(user).networks.stock_shared_once) == ("deepsets", False, True)
    again = load_run_config(run.root / "config.yaml", ["networks.stock_mixer=deepsets"])
    assert again.networks.stock_mixer == "deepsets"  # an explicit override still wins
