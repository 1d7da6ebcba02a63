"""Numerics at the edges: saturated tanh up to |a| = 1e3, wᵀu from −700 to 700, ‖w‖ down to
1e-8, |z| up to 1e6 — every output finite, no RuntimeWarning (warnings are errors here), and
gradients that still match central differences where the function is smooth at the step's scale."""

import warnings

import numpy as np
import pytest

import planarflow as pf
from planarflow.gradcheck import numerical_gradient, rel_error
from planarflow.reference import planar_forward as _planar_forward

pytestmark = pytest.mark.filterwarnings("error")


def layer_params(d, wtu, w_norm, rng):
    w = rng.standard_normal(d)
    w *= w_norm / np.linalg.norm(w)
    v = rng.standard_normal(d)
    v -= (v @ w) / (w @ w) * w                          # v ⟂ w
    return wtu * w / (w @ w) + v, w                     # wᵀu = wtu


def all_finite(*arrays):
    return all(np.all(np.isfinite(a)) for a in arrays)


@pytest.mark.parametrize("wtu", [-699.99, -100.0, -37.0, 0.0, 37.0, 700.0])
@pytest.mark.parametrize("w_norm", [1e-8, 1e-3, 1.0, 30.0])
@pytest.mark.parametrize("z_scale", [1e-3, 1.0, 1e6])
def test_layer_outputs_and_gradients_are_finite_without_warnings(wtu, w_norm, z_scale):
    rng = np.random.default_rng(0)
    u, w = layer_params(2, wtu, w_norm, rng)
    z = z_scale * rng.standard_normal((50, 2))
    for b in [0.0, 1e3, -1e3]:                                          # a up to ±1e3 (and beyond)
        y, logdet, cache = pf.planar_forward(z, u, w, b)
        grads = pf.planar_backward(np.ones_like(y), np.ones_like(logdet), cache)
        assert all_finite(y, logdet, *grads)
        assert np.all(np.sum(w * pf.u_hat(u, w)) >= -1.0 - 1e-9)       # wᵀû ≥ −1


@pytest.mark.parametrize("wtu", [-699.99, -30.0, 30.0, 700.0])
@pytest.mark.parametrize("w_norm", [1e-8, 1.0])
def test_flow_sample_log_prob_and_reverse_kl_at_the_edges(wtu, w_norm):
    rng = np.random.default_rng(1)
    K, d = 4, 2
    us, ws = zip(*[layer_params(d, wtu, w_norm, rng) for _ in range(K)])
    params = {"u": np.array(us), "w": np.array(ws), "b": np.array([0.0, 1e3, -1e3, 0.5])}
    z0 = 1e6 * rng.standard_normal((20, d))
    zK, sum_logdet, _ = pf.flow_forward(params, z0)
    loss, grads = pf.reverse_kl(params, z0, pf.get_target("U4"))
    z, log_q = pf.sample(params, 200, rng=2)
    assert all_finite(zK, sum_logdet, loss, *grads.values(), z, log_q, pf.log_prob(params, z))
    if w_norm == 1.0 and wtu > -699:
        # well conditioned enough to invert (at wᵀu = −700 a layer squeezes a direction by e^-700;
        # with ‖w‖ = 1e-8 and wᵀu ≪ 0, û ~ 1e8 and the map is near-singular along w)
        np.testing.assert_allclose(pf.log_prob(params, z), log_q, rtol=1e-6, atol=1e-6 * np.max(np.abs(log_q)))


def test_saturated_layer_gradients_match_central_differences_where_resolvable():
    # a = wᵀz + b ≈ 1e3: tanh is 1 to the last bit, h' = 0; the function is flat in a and b, so
    # both the analytic gradient and the central difference must say 0 for b, and z passes through
    rng = np.random.default_rng(2)
    z, u, w, b = rng.standard_normal((5, 2)), rng.standard_normal(2), np.array([0.6, 0.8]), 1e3
    gy, gl = rng.standard_normal((5, 2)), rng.standard_normal(5)
    _, _, cache = pf.planar_forward(z, u, w, b)
    dz, du, dw, db = pf.planar_backward(gy, gl, cache)
    L = lambda zz, uu, ww, bb: np.sum(gy * _planar_forward(zz, uu, ww, bb)[0]) + np.sum(gl * _planar_forward(zz, uu, ww, bb)[1])
    assert db == 0.0
    assert rel_error(dz, numerical_gradient(lambda x: L(x, u, w, b), z.copy())) <= 1e-7
    assert rel_error(du, numerical_gradient(lambda x: L(z, x, w, b), u.copy())) <= 1e-7


def test_reverse_kl_gradient_with_tiny_w_matches_central_differences():
    rng = np.random.default_rng(3)
    params = pf.init_params(3, 2, rng, u_scale=0.5)
    params["w"][1] *= 1e-4                              # ‖w‖ = 1e-4: û ≈ 3e3 along w
    params["u"][1] = np.log(np.e - 1) * params["w"][1] / np.sum(params["w"][1] ** 2) + 0.1
    z0 = rng.standard_normal((40, 2))
    target = pf.get_target("U2")
    _, grads = pf.reverse_kl(params, z0, target)
    for key in "ub":
        f = lambda x, key=key: pf.reverse_kl(dict(params, **{key: x}), z0, target)[0]
        assert rel_error(grads[key], numerical_gradient(f, params[key].copy())) <= 1e-6


@pytest.mark.parametrize("name", ["U1", "U2", "U3", "U4"])
def test_energies_at_huge_points_are_finite(name):
    z = np.array([[1e6, -1e6], [-1e6, 3.0], [0.0, 1e6], [0.0, 0.0]])
    for box in [None, 4.0]:
        U, g = pf.get_target(name, box=box).energy_and_grad(z)
        assert all_finite(U, g)


def test_inverse_of_extreme_points_is_finite_and_consistent():
    params = pf.init_params(8, 2, rng=4, u_scale=2.0)
    y = np.array([[1e6, -1e6], [1e-300, 0.0], [3.0, -2.0]])
    z0 = pf.inverse(params, y)
    back, _, _ = pf.flow_forward(params, z0)
    assert all_finite(z0, pf.log_prob(params, y))
    np.testing.assert_allclose(back, y, rtol=1e-12, atol=1e-9)


def test_warnings_are_errors_in_this_module():
    with pytest.raises(RuntimeWarning):
        warnings.warn("check", RuntimeWarning)
