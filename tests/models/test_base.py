"""SpikingClassifier: input checks (NaN/inf, a foreign float dtype, empty inputs) and the one forward pass."""

from unittest import mock

import pytest
import torch

from spikevision.models import create_model, get_model_info

# one small model per family, and both GAC paths (the encoder owns the stem: encode skips the base checks)
MODELS = [("mlp_spe_mini", {}), ("ms_resnet_mini", {}), ("gac_ms_resnet_mini", {}), ("spiking_cnn_mini", {}),
          ("sresnet20", {"width": 4, "T": 2}), ("sresnet20", {"width": 4, "T": 2, "encoding": "gac"})]


def _model_and_input(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, **kwargs).eval()
    return model, torch.rand(get_model_info(name).input_shape(2, model_kwargs=kwargs))


@pytest.mark.parametrize("name,kwargs", MODELS, ids=[f"{n}{'-gac' if k.get('encoding') else ''}" for n, k in MODELS])
def test_bad_inputs_are_refused_with_clear_errors(name, kwargs):
    model, x = _model_and_input(name, kwargs)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()  # the clean input passes
        for bad in (float("nan"), float("inf"), -float("inf")):
            y = x.clone()
            y.view(-1)[3] = bad
            with pytest.raises(ValueError, match=r"input with 1 NaN or infinite values"):
                model(y)
        with pytest.raises(TypeError, match=r"torch.float32 weights but got a torch.float64 input.*x.to"):
            model(x.double())
        with pytest.raises(ValueError, match=r"empty input of shape \[0, "):
            model(x[:0])  # no samples (no time steps for event models)
        with pytest.raises(ValueError, match=r"empty input of shape \[0, 2, "):
            model(x.unsqueeze(0)[:0] if x.dim() == 4 else x.transpose(0, 1)[:0])  # a sequence of no time steps


def test_autocast_accepts_other_float_dtypes():
    model, x = _model_and_input("mlp_spe_mini", {})
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x.bfloat16()).shape == (2, 10)


def test_reset_classifier_updates_the_pretrained_cfg():
    """New outputs: the shipped weights' class names no longer apply; the preprocessing still does."""
    from spikevision.models import create_model

    model = create_model("sresnet20", pretrained="fashion_mnist")
    assert model.pretrained_cfg.num_classes == 10 and len(model.pretrained_cfg.class_names) == 10
    model.reset_classifier(3)
    assert model.num_classes == 3 and model.forward_head is not None
    assert model.pretrained_cfg.num_classes == 3 and model.pretrained_cfg.class_names == ()
    assert model.pretrained_cfg.mean == create_model("sresnet20", pretrained="fashion_mnist").pretrained_cfg.mean


@pytest.mark.parametrize("name,kwargs", MODELS, ids=[f"{n}{'-gac' if k.get('encoding') else ''}" for n, k in MODELS])
def test_forward_gives_per_step_logits_for_tet(name, kwargs):
    """``forward(x, per_step=True)`` is the per-step head on the same features; their mean is the logits."""
    model, x = _model_and_input(name, kwargs)
    with torch.no_grad():
        steps = model(x, per_step=True)
        expected = model.forward_head(model.forward_features(model.encode(x)), per_step=True)
        assert steps.shape == (model.T, 2, model.num_classes)
        torch.testing.assert_close(steps, expected)
        torch.testing.assert_close(steps.mean(0), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["ms_resnet_mini", "spiking_cnn_mini"])
def test_the_stem_once_path_is_chosen_by_the_base_forward(name):
    """No family overrides forward: training on a static image takes forward_features_static, per step too."""
    from spikevision.models.base import SpikingClassifier

    model, x = _model_and_input(name, {})
    assert type(model).forward is SpikingClassifier.forward
    cls = type(model)
    with mock.patch.object(cls, "forward_features_static", autospec=True,
                           side_effect=cls.forward_features_static) as spy:
        fast = model.train()(x, per_step=True)
        assert spy.call_count == 1 and fast.shape == (model.T, 2, 10)
        slow = create_model(name, stem_once=False).train()
        slow.load_state_dict(model.state_dict())
        torch.testing.assert_close(fast, slow(x, per_step=True), rtol=1e-4, atol=1e-5)
        assert spy.call_count == 1 and not model.eval().runs_stem_once(x)
