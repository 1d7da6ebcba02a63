"""Central differences, the check behind every analytic gradient in planarflow.

    ∂f/∂xᵢ ≈ (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h       error O(h²) + O(ε_mach·|f|/h)

and the relative error used to compare two gradients (as in CS231n):

    rel_error(a, b) = max|a − b| / max(1e-8, max(|a| + |b|))

In float64 a correct gradient of a smooth function shows 1e-7 or less at h ≈ 1e-5.
"""

import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """Central-difference gradient of a scalar function ``f`` at the array ``x``.

    ``x`` is perturbed one entry at a time, in place, and restored — also when f raises; f(x) must
    return a number.
    Returns an array with the shape and dtype of ``x``.

    ``x`` may be float64 or np.longdouble. Where a gradient is tiny next to the function's
    value — a saturated tanh, where ∂L/∂b ∝ h'(a) ~ 1e-8 while L ~ 1 — float64 cannot resolve
    f(x + h) − f(x − h) to 1e-7 relative; evaluating f in extended precision (np.longdouble,
    about 19 digits on x86-64) can, provided f's arithmetic follows the dtype of x.
    """
    grad = np.zeros_like(x)
    h = x.dtype.type(h)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        try:
            x[i] = old + h
            f_plus = f(x)
            x[i] = old - h
            f_minus = f(x)
        finally:
            x[i] = old                      # restored even if f raises (or Ctrl-C)
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a, b):
    """max|a − b| / max(1e-8, max(|a| + |b|)): one number for how far two arrays are apart."""
    a, b = np.asarray(a, dtype=np.longdouble), np.asarray(b, dtype=np.longdouble)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))
