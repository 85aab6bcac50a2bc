"""Builder arguments are checked against the builder's signature, types, ranges and memory before anything runs."""

import pytest

from spikevision.models.arguments import MAX_TRAINING_BYTES, check_model_kwargs, estimate_training_bytes
from spikevision.train.config import ConfigError, config_from_dict


@pytest.mark.parametrize("name, kwargs, message", [
    ("spiking_cnn_mini", {"img_size": "abc"}, "model.img_size must be int, got 'abc'"),
    ("spiking_cnn_mini", {"in_chans": "abc"}, "model.in_chans must be int, got 'abc'"),
    ("spiking_cnn_mini", {"dropout": "abc"}, "model.dropout must be a number, got 'abc'"),
    ("spiking_cnn_mini", {"dropout": 5}, "model.dropout is a probability in [0, 1), got 5"),
    ("spiking_cnn_mini", {"neuron_params": {"nosuch": 1}}, "unknown key model.neuron_params.nosuch"),
    ("spiking_cnn_mini", {"neuron_params": {"v_th": "x"}}, "model.neuron_params.v_th must be a number"),
    ("spiking_cnn_mini", {"widths": [-1, 4]}, "model.widths must be whole numbers >= 1, got [-1, 4]"),
    ("spiking_cnn_mini", {"pool": "median"}, "model.pool must be 'avg' | 'max', got 'median'"),
    ("spiking_cnn_mini", {"neuron": "izhikevich"}, "model.neuron: unknown neuron 'izhikevich'"),
    ("spiking_cnn_mini", {"neuron": "pif"}, "(did you mean 'plif'?)"),
    ("spiking_cnn_mini", {"T": None}, "model.T has no value; give int"),
    ("spiking_cnn_mini", {"img_size": 0}, "model.img_size must be a whole number >= 1, got 0"),
    ("spiking_cnn_mini", {"widht": [4]}, "unknown key model.widht for spiking_cnn_mini (did you mean 'width"),
    ("spiking_cnn_mini", {"T": 10 ** 6}, "needs about"),
    ("spiking_cnn_mini", {"widths": [10 ** 6, 10 ** 6]}, "parameters"),
    ("mlp_spe_mini", {"dim": 10}, "mlp_spe_mini cannot be built with these arguments"),
    ("mlp_spe_mini", {"img_size": 30}, "mlp_spe_mini cannot be built with these arguments"),
    ("nosuch_model", {}, "model.name: unknown model 'nosuch_model'"),
])
def test_bad_arguments_are_named(name, kwargs, message):
    errors = check_model_kwargs(name, kwargs, batch_size=8)
    assert any(message in e for e in errors), errors
    assert all("\n" not in e for e in errors)


def test_every_problem_at_once_and_good_arguments_pass():
    errors = check_model_kwargs("spiking_cnn_mini", {"img_size": "abc", "pool": "median", "dropout": 5})
    assert len(errors) == 3, errors
    assert check_model_kwargs("spiking_cnn_mini", {"T": 2, "widths": [8, 16], "neuron": "plif",
                                                   "neuron_params": {"v_th": 0.5}}, batch_size=64) == []


def test_batch_size_enters_the_estimate():
    one = estimate_training_bytes("spiking_cnn_mini", {"T": 8}, batch_size=1)
    assert estimate_training_bytes("spiking_cnn_mini", {"T": 8}, batch_size=4) - one == 3 * (
        one - estimate_training_bytes("spiking_cnn_mini", {"T": 8}, batch_size=0))
    huge_batch = MAX_TRAINING_BYTES // one * 4
    assert any("data.batch_size" in e for e in check_model_kwargs("spiking_cnn_mini", {"T": 8},
                                                                   batch_size=huge_batch))


def test_config_reports_model_and_schedule_errors_as_usage_errors():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": {"name": "spiking_cnn_mini", "img_size": 0}, "sched": {"milestones": [-1]}})
    assert any("model.img_size" in m for m in e.value.errors) and any("sched.milestones" in m for m in e.value.errors)
    for bad in ({"model": [1, 2]}, {"data": "abc"}, {"model": 5}):
        with pytest.raises(ConfigError, match="must be a mapping"):
            config_from_dict(bad)
