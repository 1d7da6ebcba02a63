"""Central differences, the check behind every analytic gradient in planarflow.

    ∂f/∂xᵢ ≈ (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h       error O(h²) + O(ε_mach·|f|/h)

and the relative error used to compare two gradients (as in CS231n):

    rel_error(a, b) = max|a − b| / max(1e-8, max(|a| + |b|))

In float64 a correct gradient of a smooth function shows 1e-7 or less at h ≈ 1e-5.
"""

import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """Central-difference gradient of a scalar function ``f`` at the array ``x``.

    ``x`` is perturbed one entry at a time, in place, and restored; f(x) must return a number.
    Returns an array with the shape of ``x``.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("x: expected a float64 ndarray (it is perturbed in place)")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        f_plus = float(f(x))
        x[i] = old - h
        f_minus = float(f(x))
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2.0 * h)
    return grad


def rel_error(a, b):
    """max|a − b| / max(1e-8, max(|a| + |b|)): one number for how far two arrays are apart."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))
