"""Adam against values worked out by hand from its formula."""

import numpy as np
import pytest

from planarflow import Adam


def test_adam_first_two_steps_match_hand_computed_values():
    # θ₀ = 1, g₁ = 0.5, g₂ = −1, lr = 0.1, β₁ = 0.9, β₂ = 0.999, ε = 1e-8
    # step 1: m = 0.05, v = 0.00025, m̂ = 0.05/0.1 = 0.5, v̂ = 0.00025/0.001 = 0.25
    #         θ₁ = 1 − 0.1·0.5/(0.5 + 1e-8) = 0.900000002
    # step 2: m = 0.045 − 0.1 = −0.055, v = 0.00024975 + 0.001 = 0.00124975
    #         m̂ = −0.055/0.19 = −0.28947368421052627, v̂ = 0.00124975/0.001999 = 0.6251875937968984
    #         θ₂ = θ₁ + 0.1·0.28947368421052627/(√0.6251875937968984 + 1e-8) = 0.93661035424...
    params = {"x": np.array([1.0])}
    adam = Adam(lr=0.1)
    adam.step(params, {"x": np.array([0.5])})
    assert params["x"][0] == pytest.approx(1.0 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-15)
    assert params["x"][0] == pytest.approx(0.900000002, abs=1e-15)
    adam.step(params, {"x": np.array([-1.0])})
    assert params["x"][0] == pytest.approx(0.900000002 + 0.1 * 0.28947368421052627 / (0.6251875937968984 ** 0.5 + 1e-8), rel=1e-14)
    assert params["x"][0] == pytest.approx(0.93661035424, abs=1e-11)
    assert adam.tau == 2


def test_adam_first_step_moves_every_coordinate_by_about_lr():
    # with bias correction the first step is lr·g/(|g| + ε): a sign step of size lr
    params = {"u": np.array([[1.0, -2.0]]), "b": np.array([0.0])}
    Adam(lr=0.01).step(params, {"u": np.array([[3.0, -1e-3]]), "b": np.array([-50.0])})
    np.testing.assert_allclose(params["u"], [[0.99, -1.99]], rtol=0, atol=1e-7)
    np.testing.assert_allclose(params["b"], [0.01], rtol=0, atol=1e-9)


def test_adam_rejects_bad_settings_and_mismatched_gradients():
    with pytest.raises(ValueError, match="lr"):
        Adam(lr=0.0)
    with pytest.raises(ValueError, match="beta1"):
        Adam(beta1=1.0)
    with pytest.raises(ValueError, match="grads"):
        Adam().step({"u": np.zeros(2)}, {"w": np.zeros(2)})
