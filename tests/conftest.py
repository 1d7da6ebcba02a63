"""Shared helpers for the tests: central-difference checks of a dict of parameters."""

import numpy as np
import pytest

from planarflow import numerical_gradient, rel_error


def grad_errors(loss, params, grads, h=1e-5):
    """rel_error between each analytic gradient and central differences of loss(params)."""
    errors = {}
    for key in params:
        x = params[key]

        def f(_):
            return loss(params)

        errors[key] = rel_error(grads[key], numerical_gradient(f, x, h))
    return errors


def characteristic_params(K, d, rng):
    """K layers at the points where things break, cycling through:
    moderate; wᵀu ≪ −1 (the û correction active, s near −1); a saturated layer (|b| large);
    a layer with a large û; a small ‖w‖ (0.05)."""
    u = rng.standard_normal((K, d))
    w = rng.standard_normal((K, d))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    b = rng.standard_normal(K)
    for k in range(K):
        kind = k % 5
        if kind == 1:
            u[k] = -8.0 * w[k] + 0.3 * rng.standard_normal(d)       # wᵀu ≈ −8
        elif kind == 2:
            b[k] = 7.0 * rng.choice([-1.0, 1.0])                   # tanh saturated for most z
        elif kind == 3:
            u[k] *= 3.0
        elif kind == 4:
            w[k] *= 0.05
    return {"u": u, "w": w, "b": b}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
