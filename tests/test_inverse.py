"""The numerical inverse and the exact density it gives at any point."""

import warnings

import numpy as np
import pytest

from conftest import characteristic_params
from planarflow import flow_forward, init_params, sample
from planarflow import inverse, log_prob
from planarflow.inverse import solve_alpha


@pytest.mark.parametrize("d", [1, 2, 5])
def test_inverse_round_trip(d):
    rng = np.random.default_rng(d)
    params = init_params(16, d, rng, u_scale=1.0)
    z0 = rng.standard_normal((2000, d))
    y, _, _ = flow_forward(params, z0)
    np.testing.assert_allclose(inverse(params, y), z0, rtol=0, atol=1e-10)


def test_inverse_at_the_edges_wtu_very_negative_and_saturated_tanh():
    rng = np.random.default_rng(0)
    params = characteristic_params(10, 2, rng)          # includes wᵀu ≈ −8 and |b| = 7 layers
    params["u"][0] = -30.0 * params["w"][0]              # s = wᵀû ≈ −1 + 1e-13: nearly singular
    z0 = 3.0 * rng.standard_normal((3000, 2))
    y, _, _ = flow_forward(params, z0)
    z_back = inverse(params, y)
    y_again, _, _ = flow_forward(params, z_back)
    # backward stable: f(inverse(y)) = y to rounding, even where f is nearly flat
    np.testing.assert_allclose(y_again, y, rtol=0, atol=1e-9)


def test_solve_alpha_reaches_machine_precision_on_hard_cases():
    c = np.linspace(-50, 50, 20001)
    for s, sp, b in [(-1.0, 1e-300, 0.3), (-1.0 + 1e-9, 1e-9, -2.0), (700.0, 701.0, 5.0), (0.0, 1.0, 0.0),
                     (3.0, 4.0, -40.0)]:
        alpha = solve_alpha(c, s, sp, b)
        residual = alpha + s * np.tanh(alpha + b) - c
        assert np.max(np.abs(residual)) <= 8 * np.finfo(float).eps * (np.max(np.abs(c)) + abs(s) + 1)


def test_log_prob_equals_the_log_density_that_sample_returns():
    rng = np.random.default_rng(4)
    for K, d in [(2, 2), (8, 2), (32, 2), (6, 4)]:
        params = init_params(K, d, rng, u_scale=0.5)
        y, log_q = sample(params, 5000, rng)
        np.testing.assert_allclose(log_prob(params, y), log_q, rtol=0, atol=1e-8)


def test_density_integrates_to_one_over_a_wide_grid():
    params = init_params(12, 2, rng=7, u_scale=0.7)
    h = 0.02
    x = np.arange(-9.0, 9.0 + h / 2, h)
    z1, z2 = np.meshgrid(x, x)
    mass = np.sum(np.exp(log_prob(params, np.column_stack([z1.ravel(), z2.ravel()])))) * h * h
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_inverse_rejects_points_of_the_wrong_dimension():
    with pytest.raises(ValueError, match="y"):
        inverse(init_params(2, 2, rng=0), np.zeros((3, 3)))


def test_inverse_raises_no_warnings():
    params = characteristic_params(8, 2, np.random.default_rng(1))
    y = np.random.default_rng(2).standard_normal((500, 2)) * 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_prob(params, y)


@pytest.mark.parametrize("d", [1, 3])
def test_inverse_undoes_a_learnable_base_far_from_the_identity(d):
    """A flow with a base x = μ + A·z_K (a location of 10³, scales from 10⁻² to 10², correlations):
    the inverse of its own draws gives back their noise, and log_prob their log-density — the
    base is undone first (a triangular solve), then the layers."""
    from planarflow import base

    rng = np.random.default_rng(d)
    params = init_params(6, d, rng, u_scale=1.0, base=True)
    params["mu"] = 1e3 * rng.standard_normal(d)
    params["log_sigma"] = np.linspace(np.log(1e-2), np.log(1e2), d) if d > 1 else np.array([1.5])
    params["lower"] = np.tril(0.5 * rng.standard_normal((d, d)), -1) * np.exp(params["log_sigma"])[:, None]
    z0 = rng.standard_normal((500, d))
    x, sum_logdet, _ = base.flow_forward(params, z0)
    np.testing.assert_allclose(inverse(params, x), z0, rtol=0, atol=1e-8)
    log_q = -0.5 * (z0 * z0).sum(axis=1) - 0.5 * d * np.log(2 * np.pi) - sum_logdet
    np.testing.assert_allclose(log_prob(params, x), log_q, rtol=0, atol=1e-8)
    planar_only = {k: params[k] for k in "uwb"}                     # without the base: far off
    assert np.max(np.abs(inverse(planar_only, x) - z0)) > 1.0
