"""Pareto-smoothed importance sampling: k̂ against weights whose tail index is known."""

import numpy as np
import pytest

import planarflow as pf
from planarflow import reference
from planarflow.diagnostics import gpd_fit, psis_tail_size


def pareto_log_weights(xi, S, seed):
    """log w with w = U^{−ξ}, U ~ Uniform(0, 1): P(w > t) = t^{−1/ξ}, a Pareto tail of shape ξ
    (and, by threshold stability, a generalized Pareto tail of shape ξ above any threshold)."""
    return -xi * np.log(np.random.default_rng(seed).uniform(size=S))


@pytest.mark.parametrize("xi", [0.2, 0.5, 1.0, 1.5])
def test_k_hat_recovers_a_known_tail_index(xi):
    """With S = 10⁵ the tail holds M = 949 weights; the estimate's spread is about (1 + ξ)/√M
    ≈ 0.04–0.08, and the prior pulls it towards 0.5 by less than 0.01."""
    ks = [pf.psis(pareto_log_weights(xi, 100_000, seed))[1] for seed in range(4)]
    assert abs(np.mean(ks) - xi) < 0.06
    assert max(abs(k - xi) for k in ks) < 0.15


def test_k_hat_is_well_below_and_well_above_the_threshold_0_7():
    rng = np.random.default_rng(0)
    assert pf.psis(0.2 * rng.standard_normal(50_000))[1] < 0.2      # near-constant weights
    assert pf.psis(np.log(rng.uniform(size=50_000)))[1] < -0.8      # bounded weights: ξ = −1
    assert pf.psis(pareto_log_weights(1.5, 50_000, 1))[1] > 1.2     # infinite variance and mean


def test_gpd_fit_recovers_shape_and_scale_of_exact_generalized_pareto_draws():
    """Inverse-CDF draws x = σ/ξ·((1 − U)^{−ξ} − 1) of a GPD(ξ = 0.4, σ = 2)."""
    u = np.random.default_rng(3).uniform(size=20_000)
    x = np.sort(2.0 / 0.4 * ((1.0 - u) ** -0.4 - 1.0))
    k_hat, sigma = gpd_fit(x)
    assert abs(k_hat - 0.4) < 0.05 and abs(sigma - 2.0) < 0.1


def test_smoothed_weights_are_normalised_ordered_and_only_the_tail_changes():
    lw = pareto_log_weights(0.8, 5000, 2) + 3.0
    smoothed, k_hat = pf.psis(lw)
    M = psis_tail_size(lw.size)
    assert M == 213 and k_hat > 0.5
    assert np.logaddexp.reduce(smoothed) == pytest.approx(0.0, abs=1e-12)
    order = np.argsort(lw)
    body, tail = order[:-M], order[-M:]
    shift = smoothed[body[0]] - lw[body[0]]
    np.testing.assert_allclose(smoothed[body], lw[body] + shift, rtol=0, atol=1e-12)   # untouched
    assert np.all(np.diff(smoothed[tail]) >= 0)                                         # still ordered
    assert smoothed[tail].max() <= lw.max() + shift + 1e-12                              # truncated
    assert np.max(np.abs(smoothed[tail] - (lw[tail] + shift))) > 0.1                     # smoothed


def test_importance_log_z_reports_the_k_hat_of_its_own_weights_kept_in_bounded_memory():
    """k̂ from the streamed top M + 1 weights equals psis on all the weights of the same draws."""
    params = pf.init_params(4, 2, rng=1, u_scale=0.5)
    target = pf.get_target("U1")
    log_z, ess, k_hat = pf.importance_log_z(params, target, 30_000, rng=5, return_k_hat=True)
    assert (log_z, ess) == pf.importance_log_z(params, target, 30_000, rng=5)
    rng = np.random.default_rng(5)
    log_w = np.concatenate([-target.energy(z) - lq for z, lq in
                            (reference.sample(params, m, rng) for m in [8192, 8192, 8192, 30_000 - 3 * 8192])])
    assert k_hat == pytest.approx(pf.psis(log_w)[1], abs=1e-12)


def test_a_good_fit_has_a_small_k_hat_and_a_poor_one_a_large_k_hat():
    target = pf.get_target("U2")
    good, _ = pf.fit(target, 16, 3000, 512, lr=1e-2, lr_final=3e-4, anneal_steps=500, rng=0,
                     progress=False, engine="fused")
    assert pf.importance_log_z(good, target, 20_000, rng=1, return_k_hat=True)[2] < 0.7
    poor = pf.init_params(1, 2, rng=0)                      # N(0, I) against the narrow U2 band
    assert pf.importance_log_z(poor, target, 20_000, rng=1, return_k_hat=True)[2] > 0.7


def test_psis_checks_its_argument():
    with pytest.raises(ValueError, match="log_weights"):
        pf.psis(np.zeros(10))
    with pytest.raises(ValueError, match="log_weights"):
        pf.psis(np.array([np.nan] * 30))
    with pytest.raises(ValueError, match="log_weights"):
        pf.psis(np.zeros((30, 2)))
    with pytest.raises(ValueError, match="n"):
        pf.importance_log_z(pf.init_params(2, rng=0), pf.get_target("U1"), 10, return_k_hat=True)


# --- the edges: k̂ is never NaN, and says what it should (reference.md §12) ----------------------

def psis_quietly(lw):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # a RuntimeWarning fails the test
        smoothed, k_hat = pf.psis(lw)
    assert not np.isnan(k_hat) and np.all(np.isfinite(smoothed) | (smoothed == -np.inf))
    assert np.logaddexp.reduce(smoothed) == pytest.approx(0.0, abs=1e-9)
    return k_hat


def test_one_dominant_weight_reads_as_unreliable_even_when_the_rest_underflow():
    rng = np.random.default_rng(0)
    lw = -1e6 * rng.exponential(size=20_000)
    lw[0] = 0.0                                            # the others are e^{−10⁶} of it: 0 in float64
    assert psis_quietly(lw) > 0.7
    assert psis_quietly(500.0 * rng.standard_normal(20_000)) > 0.7
    assert psis_quietly(np.r_[1000.0, np.zeros(999)]) > 0.7     # one weight above 999 tied ones


def test_a_perfect_proposal_and_bounded_tied_weights_read_as_reliable():
    rng = np.random.default_rng(1)
    assert psis_quietly(np.full(5000, 2.70249)) < 0.7                          # q = p exactly
    assert psis_quietly(2.70249 + 4e-16 * rng.integers(-3, 4, 5000)) < 0.7   # q = p to the last digit
    assert psis_quietly(1e-16 * rng.standard_normal(5000)) < 0.7             # weights 1 ± 1e-16
    assert psis_quietly(rng.integers(0, 3, 5000).astype(float)) < 0.7        # few distinct values
    assert psis_quietly(np.round(2.0 * rng.standard_normal(20_000))) < 0.7   # integer-valued, light tail


def test_k_hat_from_logarithms_equals_the_direct_fit_where_both_can_be_computed():
    """The log-space fit is the same estimator: on weights whose exceedances do not underflow it
    gives what the plain formula gives, to rounding."""
    from planarflow.diagnostics import gpd_fit
    u = np.random.default_rng(3).uniform(size=2000)
    x = np.sort(2.0 / 0.4 * ((1.0 - u) ** -0.4 - 1.0))
    k1, s1 = gpd_fit(x)
    k2, log_s2 = gpd_fit(log_x=np.log(x))
    assert k1 == pytest.approx(k2, rel=1e-12) and s1 == pytest.approx(np.exp(log_s2), rel=1e-12)
