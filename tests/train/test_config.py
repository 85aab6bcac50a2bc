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


@pytest.mark.parametrize("override,message", [
    ("model.T=0", "model.T must be >= 1, a whole number of time steps, got 0"),
    ("model.T=2.5", "model.T must be >= 1, a whole number of time steps, got 2.5"),
    ("model.num_classes=-3", "model.num_classes must be >= 1, a whole number of classes, got -3"),
    ("optim.lr=.nan", "optim.lr must be a finite number, got nan"),
    ("optim.lr=.inf", "optim.lr must be a finite number, got inf"),
    ("optim.lr=-0.1", "optim.lr must be > 0, got -0.1"),
    ("optim.betas=[0.9,.nan]", "optim.betas must be a finite number, got [0.9, nan]"),
    ("sched.min_lr=-.inf", "sched.min_lr must be a finite number, got -inf"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.epochs=-2", "train.epochs must be >= 1, got -2"),
    ("data.batch_size=0", "batch_size"),
    ("data.batch_size=-8", "batch_size"),
    ("data.mixup_alpha=.nan", "data.mixup_alpha must be a finite number, got nan"),
    ("data.cutmix_alpha=.inf", "data.cutmix_alpha must be a finite number, got inf"),
    ("data.frames=0", "frames must be a positive int"),
    ("run.progress_every_s=0", "run.progress_every_s must be > 0, got 0"),
])
def test_values_that_would_fail_at_run_time_fail_at_load_time(tmp_path, override, message):
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: tiny_snn_test}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, [override])
    assert any(message in line for line in e.value.errors), e.value.errors


def test_empty_and_malformed_recipes_name_the_file(tmp_path):
    for text in ("", "\n", "# only a comment\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(ConfigError, match=r"empty.yaml is empty: .*write \{\} to train on all defaults"):
            load_config(tmp_path / "empty.yaml")
    (tmp_path / "defaults.yaml").write_text("{}\n")  # all defaults, asked for explicitly
    assert load_config(tmp_path / "defaults.yaml").train.epochs == 10
    (tmp_path / "bad.yaml").write_text("model: {name: tiny_snn_test}\ntrain: [epochs: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 3, column 1: not valid YAML \(while parsing"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- model\n- train\n")
    with pytest.raises(ConfigError, match=r"list.yaml: a recipe must be a mapping of sections .* got list"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\x80\x81model:")
    with pytest.raises(ConfigError, match=r"binary.yaml: not a text file"):
        load_config(tmp_path / "binary.yaml")


def test_quickstart_recipe_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[2] / "configs" / "quickstart.yaml")
    assert cfg.model.name == "spiking_cnn_mini" and cfg.data.name == "fashion_mnist"
