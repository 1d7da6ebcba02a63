"""The planar layer and the û constraint: forward formulas, log-det, and every gradient."""

import numpy as np
import pytest

from planarflow import numerical_gradient, planar_backward, planar_forward, rel_error, u_hat
from planarflow.reference import planar_forward as _planar_forward, u_hat_backward, u_hat_forward
from planarflow.reference import softplus

LAYER_TOL = 1e-7
LD = np.longdouble     # central differences evaluated in extended precision: see numerical_gradient


def layer_case(kind, d, rng, N=6):
    """(z, u, w, b) for one layer in a named regime."""
    z = rng.standard_normal((N, d))
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    u = rng.standard_normal(d)
    b = 0.3
    if kind == "wtu_very_negative":       # û correction active: wᵀu = −12, s = wᵀû ≈ −1 + 6e-6
        u = -12.0 * w + 0.5 * (rng.standard_normal(d) - (rng.standard_normal(d) @ w) * w)
    elif kind == "saturated":             # a ≈ 6–7: tanh saturated, h' ~ 1e-5, 1 − t² loses 5 digits
        b = 6.5                           # (much further out, f(b ± h) differs from f(b) by less
        z *= 0.3                          #  than even extended precision resolves: see test_edges)
    elif kind == "large_a_negative":
        b = -6.5
        z *= 0.3
    elif kind == "tiny_w":                # ‖w‖ = 1e-3: û ≈ 0.307·w/‖w‖² is large
        w *= 1e-3
    elif kind == "large_u":
        u *= 5.0
    return z, u, w, b


KINDS = ["moderate", "wtu_very_negative", "saturated", "large_a_negative", "tiny_w", "large_u"]


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_planar_backward_matches_central_differences(kind, d, rng):
    z, u, w, b = layer_case(kind, d, rng)
    gy = rng.standard_normal(z.shape)
    gl = rng.standard_normal(z.shape[0])

    def L(z_, u_, w_, b_):     # the layer's own arithmetic, run in the dtype of its inputs
        y, logdet, _ = _planar_forward(z_, u_, w_, b_)
        return np.sum(gy * y) + np.sum(gl * logdet)

    _, _, cache = planar_forward(z, u, w, b)
    dz, du, dw, db = planar_backward(gy, gl, cache)
    zl, ul, wl, bl = z.astype(LD), u.astype(LD), w.astype(LD), LD(b)
    hw = 1e-5 * np.linalg.norm(w)          # step relative to the scale of w
    assert rel_error(dz, numerical_gradient(lambda x: L(x, ul, wl, bl), zl.copy())) <= LAYER_TOL
    assert rel_error(du, numerical_gradient(lambda x: L(zl, x, wl, bl), ul.copy())) <= LAYER_TOL
    assert rel_error(dw, numerical_gradient(lambda x: L(zl, ul, x, bl), wl.copy(), h=hw)) <= LAYER_TOL
    assert rel_error(db, numerical_gradient(lambda x: L(zl, ul, wl, x[0]), np.array([bl]))) <= LAYER_TOL


@pytest.mark.parametrize("kind", KINDS)
def test_u_hat_backward_matches_central_differences(kind, rng):
    K, d = 4, 3
    u = rng.standard_normal((K, d))
    w = rng.standard_normal((K, d))
    if kind == "wtu_very_negative":
        u = -20.0 * w / np.sum(w * w, axis=1, keepdims=True) + 0.1 * u
    elif kind == "tiny_w":
        w *= 1e-3
    elif kind == "large_u":
        u *= 10.0                        # wᵀu ≫ 1 for some rows
    guh = rng.standard_normal((K, d))
    gsp = rng.standard_normal(K)

    def L(u_, w_):
        uh, sp, _ = u_hat_forward(u_, w_)
        return np.sum(guh * uh) + np.sum(gsp * sp)

    du, dw = u_hat_backward(guh, gsp, u_hat_forward(u, w)[2])
    h = 1e-5 * np.min(np.linalg.norm(w, axis=1))
    ul, wl = u.astype(LD), w.astype(LD)
    assert rel_error(du, numerical_gradient(lambda x: L(x, wl), ul.copy())) <= LAYER_TOL
    assert rel_error(dw, numerical_gradient(lambda x: L(ul, x), wl.copy(), h=h)) <= LAYER_TOL


@pytest.mark.parametrize("d", [1, 2, 5])
def test_logdet_equals_slogdet_of_the_jacobian_per_sample(d, rng):
    for kind in ["moderate", "wtu_very_negative", "saturated", "large_u"]:
        z, u, w, b = layer_case(kind, d, rng, N=20)
        _, logdet, _ = planar_forward(z, u, w, b)
        uh = u_hat(u, w)
        for n in range(z.shape[0]):
            psi = (1.0 - np.tanh(z[n] @ w + b) ** 2) * w            # ψ(z) = h'(wᵀz + b)·w
            sign, expected = np.linalg.slogdet(np.eye(d) + np.outer(uh, psi))
            assert sign > 0
            assert abs(logdet[n] - expected) <= 1e-10 * max(1.0, abs(expected))


def test_forward_is_z_plus_u_hat_tanh(rng):
    z, u, w, b = layer_case("moderate", 3, rng)
    y, _, _ = planar_forward(z, u, w, b)
    np.testing.assert_allclose(y, z + np.outer(np.tanh(z @ w + b), u_hat(u, w)), rtol=0, atol=1e-14)


def test_u_hat_satisfies_the_invertibility_constraint_for_every_u():
    rng = np.random.default_rng(0)
    for alpha in [-699.99, -100.0, -37.0, -5.0, 0.0, 0.5413, 5.0, 100.0, 700.0]:
        w = rng.standard_normal((50, 2))
        v = rng.standard_normal((50, 2))
        v -= (np.sum(v * w, 1) / np.sum(w * w, 1))[:, None] * w       # v ⟂ w
        u = alpha * w / np.sum(w * w, 1, keepdims=True) + v           # wᵀu = α exactly-ish
        uh = u_hat(u, w)
        wtu_hat = np.sum(w * uh, axis=1)
        m = softplus(np.sum(w * u, axis=1)) - 1.0                      # m(wᵀu)
        np.testing.assert_allclose(wtu_hat, m, rtol=1e-12, atol=1e-12 * (1 + abs(alpha)))
        # the layer never uses the rounded wᵀû: it uses sp = softplus(wᵀu) = 1 + wᵀû > 0
        _, sp, _ = u_hat_forward(u, w)
        assert np.all(sp > 0)
        assert np.all(wtu_hat >= -1.0 - 1e-12)                         # rounding of Σ wᵢûᵢ only
        if alpha > -30:                                                # m > −1 is representable
            assert np.all(wtu_hat > -1.0)


def test_the_layer_is_the_identity_when_u_is_log_e_minus_1_times_w_over_norm_squared(rng):
    w = rng.standard_normal(3)
    u = np.log(np.e - 1.0) * w / (w @ w)
    z = rng.standard_normal((5, 3))
    y, logdet, _ = planar_forward(z, u, w, 0.4)
    np.testing.assert_allclose(y, z, atol=1e-15)
    np.testing.assert_allclose(logdet, 0.0, atol=1e-15)


def test_logdet_stays_finite_when_wtu_is_far_below_minus_37():
    # m(wᵀu) rounds to −1 here; the positive form t² + h'·softplus(wᵀu) keeps D > 0 at a = 0
    w = np.array([1.0, 0.0])
    u = np.array([-200.0, 0.0])
    z = np.array([[0.0, 0.0], [1e-3, 0.0], [2.0, 1.0]])
    _, logdet, _ = planar_forward(z, u, w, 0.0)
    assert np.all(np.isfinite(logdet))
    assert logdet[0] == pytest.approx(-200.0, abs=1e-9)       # log softplus(−200) = −200
