"""The learnable base x = μ + A·z (base.py): its log-det, every gradient, both engines, the
inverse, files and checkpoints."""

import numpy as np
import pytest

import planarflow as pf
from conftest import characteristic_params, grad_errors
from planarflow import base, fused
from planarflow.library.validation import CheckedTarget


def base_params(K, d, rng):
    """Characteristic planar layers and a base far from the identity: a location, scales from
    1e-3 to 1e3 and correlations (row i of L in the units of σᵢ, as in a Cholesky factor)."""
    params = characteristic_params(K, d, rng)
    params["mu"] = 100.0 * rng.standard_normal(d)
    params["log_sigma"] = np.linspace(np.log(1e-3), np.log(1e3), d) if d > 1 else np.array([0.7])
    params["lower"] = np.tril(0.5 * rng.standard_normal((d, d)), -1) * np.exp(params["log_sigma"])[:, None]
    return params


@pytest.mark.parametrize("d", [1, 2, 5])
def test_base_backward_matches_central_differences(d, rng):
    """One location–scale layer alone, with upstream gradients on x and on its log-det."""
    z = rng.standard_normal((7, d))
    mu, log_sigma, lower = rng.standard_normal(d), 0.5 * rng.standard_normal(d), np.tril(rng.standard_normal((d, d)), -1)
    gx, gl = rng.standard_normal((7, d)), rng.standard_normal(7)

    def loss(z, mu, log_sigma, lower):
        x, logdet, _ = base.base_forward(z, mu, log_sigma, lower)
        return float(np.sum(gx * x) + np.sum(gl * logdet))

    _, _, cache = base.base_forward(z, mu, log_sigma, lower)
    grads = base.base_backward(gx, gl, cache)
    inputs = [z, mu, log_sigma, lower]
    for i, g in enumerate(grads):
        def f(x, i=i):
            args = list(inputs)
            args[i] = x
            return loss(*args)
        numeric = pf.numerical_gradient(f, inputs[i].copy())
        if i == 3:
            numeric = np.tril(numeric, -1)        # only the strictly lower part is a parameter
        assert pf.rel_error(g, numeric) <= 1e-7, i


def test_the_base_log_det_is_that_of_its_matrix(rng):
    d = 4
    mu, log_sigma, lower = rng.standard_normal(d), rng.standard_normal(d), np.tril(rng.standard_normal((d, d)), -1)
    x, logdet, (_, L, _) = base.base_forward(rng.standard_normal((3, d)), mu, log_sigma, lower)
    assert logdet == pytest.approx(np.linalg.slogdet(L)[1], rel=1e-13)
    assert np.allclose(np.triu(L, 1), 0.0)


@pytest.mark.parametrize("K,d", [(1, 1), (3, 2), (3, 5)])
def test_reverse_kl_with_a_base_matches_central_differences(K, d, rng):
    params = base_params(K, d, rng)
    params["mu"] = 0.3 * rng.standard_normal(d)          # keep U's values moderate: a Gaussian target
    params["log_sigma"] = 0.3 * rng.standard_normal(d)
    target = pf.Gaussian(np.linspace(-1, 1, d), np.linspace(0.5, 1.5, d))
    z0 = rng.standard_normal((40, d))
    loss, grads = pf.reverse_kl(params, z0, target)
    # base.reverse_kl itself, unchecked, so that the differences may perturb every entry of
    # lower: those on and above its diagonal are not parameters, and their gradient must be 0
    errors = grad_errors(lambda p: base.reverse_kl(p, z0, CheckedTarget(target, d))[0], params, grads)
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("K,d,P", [(3, 2, 1), (14, 3, 2), (5, 6, 3)])
def test_fused_engine_with_a_base_equals_the_reference(K, d, P):
    rng = np.random.default_rng(K + d + P)
    members = [base_params(K, d, rng) for _ in range(P)]
    stacked = {k: np.stack([m[k] for m in members]) for k in members[0]}
    z0 = rng.standard_normal((P, 200, d))
    target = CheckedTarget(pf.Gaussian(np.zeros(d), np.full(d, 50.0)), d)
    losses, grads = fused.reverse_kl_members(stacked, z0, target, 0.7)
    for p in range(P):
        loss, g = base.reverse_kl(members[p], z0[p], target, 0.7)
        assert losses[p] == pytest.approx(loss, rel=1e-12)
        for key in g:
            assert pf.rel_error(grads[key][p], g[key]) <= 1e-12, key


def test_inverse_and_log_prob_undo_the_base(rng):
    """Moderate planar layers (characteristic_params' nearly singular ones, s ≈ −1 + 3e-4, would
    magnify the base's own rounding, ~1e-11 in z, by 1/D ~ 10⁴) under the far-from-identity base."""
    params = dict(base_params(4, 3, rng), **pf.init_params(4, 3, rng=2, u_scale=1.0))
    x, log_q = pf.sample(params, 500, rng=1)
    np.testing.assert_allclose(pf.log_prob(params, x), log_q, rtol=0, atol=1e-8)


def test_a_flow_with_a_base_saves_and_loads_exactly(tmp_path, rng):
    params = base_params(3, 2, rng)
    pf.save(tmp_path / "f.npz", params)
    back = pf.load(tmp_path / "f.npz")
    assert set(back) == set(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])


def test_a_base_must_be_whole_and_lower_triangular(rng):
    params = base_params(2, 3, rng)
    with pytest.raises(ValueError, match="lower"):
        pf.sample(dict(params, lower=params["lower"] + np.eye(3)), 5)
    with pytest.raises(ValueError, match="missing"):
        pf.sample({k: v for k, v in params.items() if k != "log_sigma"}, 5)
    with pytest.raises(ValueError, match="log_sigma"):
        pf.sample(dict(params, log_sigma=np.full(3, 1e3)), 5)


def test_init_params_with_a_base_is_the_identity_on_top_of_n01():
    params = base.init_params(3, 2, 0, u_scale=0.0)
    z0 = np.random.default_rng(1).standard_normal((10, 2))
    x, sum_logdet, _ = base.flow_forward(params, z0)
    np.testing.assert_allclose(x, z0, atol=1e-15)
    np.testing.assert_allclose(sum_logdet, 0.0, atol=1e-15)
