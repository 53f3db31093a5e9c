"""Tier configs: values, overrides, validation, YAML round trip, device resolution."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spinenet_lite.config import TIER_NAMES, TIERS, TrainConfig, get_tier, resolve_device
from spinenet_lite.errors import ConfigError, SpineNetError


def test_every_tier_is_defined_and_named():
    assert set(TIERS) == set(TIER_NAMES) == {"ci", "teaching", "paper"}
    for name, cfg in TIERS.items():
        assert cfg.tier == name


def test_one_tier_table():
    """Every tier's sizes live in config.TIER_TABLE; the experiments' tables are views of it."""
    from spinenet_lite.config import TIER_TABLE
    from spinenet_lite.experiments import hotspot_quality, paper, spider_cv

    assert set(TIER_TABLE) == set(TIER_NAMES)
    for name, t in TIER_TABLE.items():
        assert set(t) == {"train", "experiments", "spider_cv", "hotspot_quality"}, name
        assert TIERS[name] == TrainConfig(tier=name, **t["train"])
        assert paper.EXPERIMENT_TIERS[name] is t["experiments"]
        assert spider_cv.SPIDER_TIERS[name] is t["spider_cv"]
        assert hotspot_quality._TIER_SIZES[name] == t["hotspot_quality"]
    # the values the committed results were made with
    assert TIERS["teaching"].replace(**TIER_TABLE["teaching"]["experiments"]).width == 0.125
    assert TIER_TABLE["paper"]["spider_cv"]["finetune"] == {"max_epochs": 60, "batch_size": 64, "lr": 1e-3}


def test_tier_sizes_are_ordered():
    ci, teaching, paper = TIERS["ci"], TIERS["teaching"], TIERS["paper"]
    assert ci.width <= 0.125 and ci.n_patients <= 12 and ci.max_epochs <= 2
    assert ci.width < teaching.width < paper.width == 1.0
    assert ci.n_patients < teaching.n_patients < paper.n_patients
    assert paper.batch_size == 256  # the paper's mini-batch


def test_paper_hyperparameters_are_the_defaults():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.lr_factor) == (1e-3, 0.9, 5e-4, 0.1)
    assert cfg.class_balance and cfg.train_augment


def test_get_tier_overrides_and_ignores_none():
    cfg = get_tier("ci", max_epochs=None, width=0.5, seed=3)
    assert cfg.max_epochs == TIERS["ci"].max_epochs
    assert cfg.width == 0.5 and cfg.seed == 3
    assert TIERS["ci"].width == 0.125  # the tier itself is untouched


def test_replace_returns_a_new_config():
    cfg = get_tier("teaching")
    new = cfg.replace(branch_point="none")
    assert new.branch_point == "none" and cfg.branch_point == "conv5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.width = 2.0  # type: ignore[misc]


def test_unknown_tier_and_field():
    with pytest.raises(ConfigError, match="unknown tier 'huge'.*ci, teaching, paper"):
        get_tier("huge")
    with pytest.raises(ConfigError, match="unknown TrainConfig field.*max_epoch"):
        get_tier("ci", max_epoch=3)


@pytest.mark.parametrize("field,value", [
    ("width", 0.0), ("width", -1.0), ("lr", 0.0), ("batch_size", 0), ("max_epochs", 1.5),
    ("momentum", 1.0), ("dropout", -0.1), ("lr_factor", 1.0), ("branch_point", "conv9"),
    ("plateau_metric", "auc"), ("device", "tpu"), ("seed", -1), ("class_balance", "yes"),
    ("num_threads", 0), ("tier", "big"),
])
def test_invalid_values_raise_config_error(field, value):
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}="):
        TrainConfig(**{field: value})
    assert issubclass(ConfigError, SpineNetError)


def test_yaml_round_trip(tmp_path):
    cfg = get_tier("teaching", seed=7, branch_point="fc6", num_threads=2)
    path = cfg.save_yaml(tmp_path / "sub" / "config.yaml")
    assert TrainConfig.load_yaml(path) == cfg


def test_partial_yaml_takes_the_tier_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tier: ci\nmax_epochs: 1\n")
    cfg = TrainConfig.load_yaml(path)
    assert cfg == TIERS["ci"].replace(max_epochs=1)


@pytest.mark.parametrize("text,match", [
    ("tier: ci\nbogus: 1\n", "unknown field"),
    ("- 1\n- 2\n", "mapping"),
    ("tier: [ci\n", "not valid YAML"),
    ("tier: ci\nwidth: -2\n", "width"),
])
def test_bad_yaml_raises_config_error(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        TrainConfig.load_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.load_yaml(tmp_path / "nope.yaml")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expect
    with pytest.raises(ConfigError):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(torch.device("cuda"))


def test_resolve_device_of_a_model():
    """None / "auto" with a model: the model's device; a torch.device passes through."""
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None, torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert resolve_device("auto", torch.nn.Identity()) == torch.device("cpu")  # no parameters
    assert resolve_device("cpu", torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
