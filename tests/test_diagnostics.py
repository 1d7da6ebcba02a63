"""log Z by quadrature, the exact KL, and importance sampling."""

import numpy as np
import pytest

from planarflow import fit, get_target, init_params
from planarflow import Gaussian, importance_log_z, kl_divergence, log_partition

IDENTITY_WTU = float(np.log(np.e - 1.0))            # wᵀu of the identity layer: softplus(wᵀu) = 1, û = 0

REFERENCE_LOG_Z = {"U1": 1.87750, "U2": 2.14287, "U3": 2.70249, "U4": 2.76076}   # reference.md §5


@pytest.mark.parametrize("name", sorted(REFERENCE_LOG_Z))
def test_log_partition_of_the_boxed_targets_matches_the_reference(name):
    assert log_partition(get_target(name)) == pytest.approx(REFERENCE_LOG_Z[name], abs=1e-5)


@pytest.mark.parametrize("name", ["U1", "U4"])
def test_log_partition_has_converged_halving_the_spacing_moves_it_by_less_than_1e_7(name):
    target = get_target(name)
    assert abs(log_partition(target) - log_partition(target, spacing=0.01)) < 1e-7


def test_log_partition_of_a_gaussian_matches_the_closed_form():
    target = Gaussian([0.3, -1.0], [0.4, 1.7])
    assert log_partition(target, limit=15.0) == pytest.approx(target.log_z, abs=1e-10)
    with pytest.raises(ValueError, match="edge"):          # at ±8 the density is 1e-5 of its peak
        log_partition(target)


def test_log_partition_refuses_improper_and_non_2d_targets():
    with pytest.raises(ValueError, match="improper|vanished"):
        log_partition(get_target("U2", box=None))
    with pytest.raises(ValueError, match="dimension"):
        log_partition(Gaussian([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]))


def identity_flow(K, d, rng):
    """Layers with û = 0 exactly (u = log(e − 1)·w/‖w‖²): q_K = q₀ = N(0, I).
    (u = 0 would not do: the constraint maps it to û = −0.307·w/‖w‖².)"""
    p = init_params(K, d, rng)
    p["u"] = IDENTITY_WTU * p["w"] / np.sum(p["w"] ** 2, axis=1, keepdims=True)
    return p


def test_kl_is_zero_when_q_equals_p():
    params = identity_flow(4, 2, np.random.default_rng(0))
    kl, stderr = kl_divergence(params, Gaussian([0.0, 0.0], [1.0, 1.0]), 20_000, rng=1)
    assert abs(kl) < 1e-12 and stderr < 1e-12          # log q + U + log Z = 0 for every sample


def test_kl_and_its_stderr_agree_with_quadrature():
    """The KL of a random flow against U1 and its standard error, both by quadrature of q on a
    grid through log_prob: KL = ∫ q·(log q + U + log Z), and the sd of log q + U under q, whose
    1/√n is the stderr's truth. The grid's own error is below 1e-4 (halving the spacing moves
    both by less); tolerance for the KL 4.5 of the true standard errors, for the stderr 2%
    (the relative sd of an sd from 200 000 draws of a long-tailed quantity is about 1%)."""
    from planarflow import log_prob
    target = get_target("U1")
    params = init_params(6, 2, rng=3, u_scale=0.8)
    n = 200_000
    kl, stderr = kl_divergence(params, target, n, rng=4)
    h = 0.02
    x = np.arange(-8, 8 + h / 2, h)
    z1, z2 = np.meshgrid(x, x)
    pts = np.column_stack([z1.ravel(), z2.ravel()])
    lq = log_prob(params, pts)
    q = np.exp(lq)
    v = lq + target.energy(pts) + log_partition(target)
    kl_grid = np.sum(q * v) * h * h
    sd_grid = np.sqrt(np.sum(q * v * v) * h * h - kl_grid ** 2)
    assert abs(kl - kl_grid) < 4.5 * sd_grid / np.sqrt(n) + 1e-4
    assert stderr == pytest.approx(sd_grid / np.sqrt(n), rel=0.02)


def test_importance_estimate_agrees_with_quadrature_for_a_well_fitted_flow():
    target = get_target("U2")
    params, _ = fit(target, K=16, steps=3000, batch_size=512, lr=1e-2, lr_final=3e-4,
                    anneal_steps=500, rng=0, progress=False)
    log_z, ess = importance_log_z(params, target, 100_000, rng=1)
    assert ess > 0.5
    assert log_z == pytest.approx(log_partition(target), abs=0.02)


def test_importance_sampling_is_exact_for_a_perfect_flow_in_5d():
    params = identity_flow(3, 5, np.random.default_rng(0))
    target = Gaussian(np.zeros(5), np.ones(5))
    log_z, ess = importance_log_z(params, target, 1000, rng=0)
    assert log_z == pytest.approx(target.log_z, abs=1e-12) and ess == pytest.approx(1.0)


def test_density_after_k_layers_is_the_truncated_flows_density():
    from planarflow.lab.plotting import flow_density_on_grid
    params = init_params(5, 2, rng=2, u_scale=0.5)
    full = flow_density_on_grid(params, n=30)
    np.testing.assert_allclose(flow_density_on_grid(params, n=30, layers=5), full, rtol=1e-12)
    first2 = {k: v[:2] for k, v in params.items()}
    np.testing.assert_allclose(flow_density_on_grid(params, n=30, layers=2), flow_density_on_grid(first2, n=30), rtol=1e-12)
    x = np.linspace(-4, 4, 31)[:-1] + 4 / 30                            # the grid's cell centres
    gauss = np.exp(-0.5 * (x[None, :] ** 2 + x[:, None] ** 2)) / (2 * np.pi)
    np.testing.assert_allclose(flow_density_on_grid(params, n=30, layers=0), gauss, rtol=1e-12)
