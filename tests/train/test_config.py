"""Config: typed sections, overrides, every error at once with the nearest valid key."""

import pytest
import yaml

from spikevision.train.config import ConfigError, apply_overrides, config_from_dict, load_config, parse_overrides


def test_sections_map_to_dataclasses_and_model_kwargs():
    cfg = config_from_dict({"model": {"name": "tiny_snn_test", "T": 3, "hidden": 8},
                            "optim": {"name": "adamw", "lr": 0.01, "betas": [0.8, 0.9]},
                            "train": {"epochs": 2, "loss": "tet"}, "data": {"batch_size": 16}})
    assert cfg.model.name == "tiny_snn_test" and cfg.model.kwargs == {"T": 3, "hidden": 8}
    assert cfg.optim.betas == (0.8, 0.9) and cfg.optim.lr == 0.01
    assert cfg.train.loss == "tet" and cfg.data.batch_size == 16
    d = cfg.to_dict()
    assert d["model"] == {"name": "tiny_snn_test", "T": 3, "hidden": 8}
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(d))).to_dict() == d  # the saved config round-trips


def test_unknown_key_names_nearest_and_all_errors_reported_together():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"train": {"epoch": 3, "label_smoothing": 2.0}, "optim": {"name": "adam", "lr": -1},
                          "sched": {"warmup_epoch": 1}, "model": {"name": "tiny_snn_test", "hiden": 4}})
    msg = str(e.value)
    assert "train.epoch (did you mean 'epochs'?)" in msg
    assert "sched.warmup_epoch (did you mean 'warmup_epochs'?)" in msg
    assert "model.hiden" in msg and "'hidden'" in msg
    assert "optim.name must be 'sgd' | 'adamw', got 'adam'" in msg
    assert "optim.lr must be > 0" in msg and "train.label_smoothing" in msg
    assert len(e.value.errors) == 6


def test_key_of_another_section_is_pointed_to():
    with pytest.raises(ConfigError, match=r"train.batch_size \(did you mean data.batch_size\?\)"):
        config_from_dict({"train": {"batch_size": 32}})


def test_unknown_section_model_and_data_set():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"trian": {}, "model": {"name": "mlp_spe_minni"}, "data": {"name": "fashion_mnst"}})
    msg = str(e.value)
    assert "unknown section 'trian' (did you mean 'train'?)" in msg
    assert "mlp_spe_mini" in msg and "fashion_mnist" in msg


def test_type_errors():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"train": {"epochs": "ten", "amp": 1, "clip_grad": "x"}, "run": {"progress": "maybe"}})
    assert len(e.value.errors) == 4
    assert "train.epochs must be int, got 'ten'" in str(e.value)


def test_parse_overrides_yaml_values_and_nesting():
    assert parse_overrides(["train.epochs=3", "optim.lr=1e-3", "data.mean=[0.5]", "run.name=a=b"]) == [
        (["train", "epochs"], 3), (["optim", "lr"], 1e-3), (["data", "mean"], [0.5]), (["run", "name"], "a=b")]
    raw = apply_overrides({"model": {"name": "x"}}, ["model.neuron_params.v_th=0.5", "train.amp=true"])
    assert raw == {"model": {"name": "x", "neuron_params": {"v_th": 0.5}}, "train": {"amp": True}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["epochs=3", "train.epochs"])


def test_load_config_file_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: tiny_snn_test}\ntrain: {epochs: 5}\n")
    cfg = load_config(path, ["train.epochs=2", "sched.name=step", "sched.milestones=[1]"])
    assert cfg.train.epochs == 2 and cfg.sched.milestones == [1]
    with pytest.raises(ConfigError, match="needs sched.milestones"):
        load_config(path, ["sched.name=step"])
    with pytest.raises(FileNotFoundError, match="configs/quickstart.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_quickstart_recipe_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[2] / "configs" / "quickstart.yaml")
    assert cfg.model.name == "spiking_cnn_mini" and cfg.data.name == "fashion_mnist"
