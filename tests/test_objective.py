"""reverse_kl: the loss's value and its exact gradient (the fused engine: test_engines.py)."""

import numpy as np
import pytest

from conftest import characteristic_params, grad_errors
from planarflow import flow_forward, get_target, init_params, reverse_kl
from planarflow import Gaussian


class UserGaussian3D:
    """A target written by a user: only energy and grad, no name, no dim."""

    def __init__(self):
        self.mu = np.array([0.5, -1.0, 2.0])
        self.prec = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])

    def energy(self, z):
        r = z - self.mu
        return 0.5 * np.einsum("ni,ij,nj->n", r, self.prec, r)

    def grad(self, z):
        return (z - self.mu) @ self.prec


def target_for(d, k):
    if d == 2:
        return get_target(["U1", "U2", "U3", "U4"][k % 4])
    return Gaussian(np.linspace(-1.0, 1.0, d), np.linspace(0.5, 1.5, d))


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("K", [1, 3, 8])
def test_reverse_kl_gradient_matches_central_differences(K, d):
    rng = np.random.default_rng(100 * K + d)
    params = characteristic_params(K, d, rng)
    z0 = rng.standard_normal((64, d))
    target = target_for(d, K)
    beta = 0.7
    loss, grads = reverse_kl(params, z0, target, beta)
    errors = grad_errors(lambda p: reverse_kl(p, z0, target, beta)[0], params, grads)
    assert max(errors.values()) <= 1e-6, errors


def test_reverse_kl_gradient_for_a_user_target_in_3d():
    rng = np.random.default_rng(7)
    params = init_params(4, 3, rng, u_scale=1.0)
    z0 = rng.standard_normal((50, 3))
    target = UserGaussian3D()
    loss, grads = reverse_kl(params, z0, target)
    errors = grad_errors(lambda p: reverse_kl(p, z0, target)[0], params, grads)
    assert max(errors.values()) <= 1e-6, errors


def test_reverse_kl_is_a_pure_function(rng):
    params = init_params(6, 2, rng, u_scale=0.5)
    z0 = rng.standard_normal((100, 2))
    copies = {k: v.copy() for k, v in params.items()}, z0.copy()
    target = get_target("U3")
    loss1, g1 = reverse_kl(params, z0, target, 0.5)
    loss2, g2 = reverse_kl(params, z0, target, 0.5)
    assert loss1 == loss2
    for k in "uwb":
        np.testing.assert_array_equal(g1[k], g2[k])
        np.testing.assert_array_equal(params[k], copies[0][k])
    np.testing.assert_array_equal(z0, copies[1])


def test_gradient_along_a_random_direction_for_a_deep_flow(rng):
    """autograd's check: vᵀ∇L against (L(θ + εv) − L(θ − εv))/2ε, at K = 32."""
    params = init_params(32, 2, rng, u_scale=0.5)
    z0 = rng.standard_normal((256, 2))
    target = get_target("U4")
    _, grads = reverse_kl(params, z0, target)
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    eps = 1e-6
    shifted = lambda s: {k: params[k] + s * eps * v[k] for k in params}
    numeric = (reverse_kl(shifted(1), z0, target)[0] - reverse_kl(shifted(-1), z0, target)[0]) / (2 * eps)
    analytic = sum(np.sum(grads[k] * v[k]) for k in params)
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic))


def test_loss_is_the_mean_free_energy_over_the_batch(rng):
    params = init_params(3, 2, rng, u_scale=0.5)
    z0 = rng.standard_normal((10, 2))
    target = get_target("U1")
    zK, sum_logdet, _ = flow_forward(params, z0)
    per_sample = -0.5 * np.sum(z0 ** 2, 1) - np.log(2 * np.pi) - sum_logdet + 0.3 * target.energy(zK)
    assert reverse_kl(params, z0, target, 0.3)[0] == pytest.approx(per_sample.mean(), rel=1e-13)


def test_reverse_kl_rejects_bad_arguments_by_name(rng):
    params = init_params(2, 2, rng)
    target = get_target("U1")
    with pytest.raises(ValueError, match="z0"):
        reverse_kl(params, np.zeros((5, 3)), target)
    with pytest.raises(ValueError, match="beta"):
        reverse_kl(params, np.zeros((5, 2)), target, beta=0.0)
    with pytest.raises(ValueError, match="params"):
        reverse_kl({"u": params["u"], "w": params["w"]}, np.zeros((5, 2)), target)
    with pytest.raises(TypeError, match="target"):
        reverse_kl(params, np.zeros((5, 2)), object())
    with pytest.raises(ValueError, match="dimension"):
        reverse_kl(params, np.zeros((5, 2)), Gaussian([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]))
