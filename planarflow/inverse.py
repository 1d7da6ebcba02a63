"""The numerical inverse of a planar flow, and with it the exact density at any point.

The paper notes that f(z) = z + û·tanh(wᵀz + b) has no closed-form inverse. It has a numerical
one that always converges. Given y = f(z), write α = wᵀz and take wᵀ of both sides:

    wᵀy = α + wᵀû·tanh(α + b)       so α solves   g(α) = α + s·tanh(α + b) − wᵀy = 0,   s = wᵀû

    g'(α) = 1 + s·h'(α + b) = t² + h'·sp > 0        (the layer's D again: s > −1, see layer.py)

g is strictly increasing, so the root is unique, and since |tanh| < 1 it lies in the bracket
[wᵀy − |s|, wᵀy + |s|]. Safeguarded Newton — a Newton step when it stays inside the current
bracket and shrinks the residual fast enough, bisection otherwise (Numerical Recipes' rtsafe) —
converges for every sample: the bracket at least halves every two iterations, and near the root
Newton converges quadratically. Then

    z = y − û·tanh(α + b).

Inverting the K layers in reverse order gives z₀ and hence

    log q_K(y) = log q₀(z₀) − Σ_k log D_k,   D_k = 1 + h'(a_k)·w_kᵀû_k at a_k = α_k + b_k.
"""

import numpy as np

from .layer import u_hat_forward
from .numerics import planar_D, std_normal_log_density, tanh_derivative
from .validation import check_params, check_points

EPS = np.finfo(np.float64).eps
MAX_ITER = 200          # ≥ 2 × 64 halvings of any float64 bracket, plus Newton's few steps


def solve_alpha(c, s, sp, b):
    """The root α of g(α) = α + s·tanh(α + b) − c for every entry of c (vectorised).

    Parameters
    ----------
    c : ndarray, shape (N,)   wᵀy
    s, sp, b : floats          s = wᵀû > −1, sp = 1 + s (passed separately: it is accurate when
                               s rounds to −1), b the layer's offset

    Returns
    -------
    alpha : ndarray, shape (N,), accurate to a few ulps of the problem's scale.
    """
    lo = c - abs(s)
    hi = c + abs(s)
    alpha = np.clip(c - s * np.tanh(c + b), lo, hi)     # one fixed-point step: a good start
    dx_old = hi - lo                                    # rtsafe's "step before last"
    dx = dx_old.copy()
    done = np.zeros(c.shape, dtype=bool)
    for _ in range(MAX_ITER):
        t = np.tanh(alpha + b)
        g = alpha + s * t - c
        gp = planar_D(t, tanh_derivative(alpha + b), sp)   # g'(α) = t² + h'·sp > 0
        newton_step = g / gp
        # g is known to about ε(|α| + |s| + |c|), so α to that divided by g': stop there
        tol = 4 * EPS * (np.abs(alpha) + abs(s) + np.abs(c)) / gp
        done |= (np.abs(newton_step) <= tol) | (hi - lo <= 4 * EPS * (np.abs(lo) + np.abs(hi)))
        if done.all():
            return alpha
        lo = np.where(g < 0, alpha, lo)                 # keep the root bracketed
        hi = np.where(g > 0, alpha, hi)
        newton = alpha - newton_step
        bisect = (newton < lo) | (newton > hi) | (np.abs(2.0 * g) > np.abs(dx_old * gp))
        step = np.where(bisect, alpha - 0.5 * (lo + hi), newton_step)
        dx_old, dx = dx, step
        alpha = np.where(done, alpha, alpha - step)
    raise RuntimeError(
        f"inverse: the safeguarded Newton solve did not converge in {MAX_ITER} iterations for "
        f"{int((~done).sum())} of {done.size} points; this should be impossible — please report it"
    )


def inverse(params, y):
    """Undo the flow: the z₀ with flow_forward(params, z₀) = y, for every row of y.

    Parameters
    ----------
    params : dict u (K, d), w (K, d), b (K,)
    y : ndarray, shape (N, d)

    Returns
    -------
    z0 : ndarray, shape (N, d)
    """
    params, K, d = check_params(params)
    y = check_points(y, "y", d)
    return _inverse(params, y)[0]


def _inverse(params, y):
    """z₀ and Σ_k log D_k for points y, without argument checks."""
    uh, sp, _ = u_hat_forward(params["u"], params["w"])          # (K, d), (K,)
    w, b = params["w"], params["b"]
    z = y
    sum_logdet = np.zeros(y.shape[0])
    for k in reversed(range(w.shape[0])):
        alpha = solve_alpha(z @ w[k], sp[k] - 1.0, sp[k], b[k])   # wᵀz_{k−1}
        a = alpha + b[k]
        t = np.tanh(a)
        z = z - t[:, None] * uh[k]                                 # z_{k−1} = z_k − û_k t
        sum_logdet += np.log(planar_D(t, tanh_derivative(a), sp[k]))
    return z, sum_logdet


def log_prob(params, y):
    """Exact log-density log q_K(y) of the flow at arbitrary points y.

    log q_K(y) = log q₀(z₀) − Σ_k log(1 + h'(a_k)·w_kᵀû_k), with z₀ = inverse(params, y).

    Parameters
    ----------
    params : dict u (K, d), w (K, d), b (K,)
    y : ndarray, shape (N, d)

    Returns
    -------
    ndarray, shape (N,)
    """
    params, K, d = check_params(params)
    y = check_points(y, "y", d)
    z0, sum_logdet = _inverse(params, y)
    return std_normal_log_density(z0) - sum_logdet
