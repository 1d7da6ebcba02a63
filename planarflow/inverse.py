"""The numerical inverse of a planar flow, and with it the exact density at any point.

The paper notes that f(z) = z + û·tanh(wᵀz + b) has no closed-form inverse. It has a numerical
one that always converges. Given y = f(z), write α = wᵀz (the only unknown that matters) and
take wᵀ of both sides:

    wᵀy = α + s·tanh(α + b),  s = wᵀû        so α solves   g(α) = α + s·tanh(α + b) − wᵀy = 0

    g'(α) = 1 + s·h'(α + b) = t² + h'·sp > 0     (the layer's D: sp = 1 + s > 0, reference.py §3)

g is strictly increasing, so the root is unique, and since |tanh| < 1 it lies in the bracket
[wᵀy − |s|, wᵀy + |s|]. Safeguarded Newton — a Newton step when it stays inside the current
bracket and shrinks the residual fast enough, bisection otherwise (Numerical Recipes' rtsafe) —
converges for every sample: the bracket at least halves every two iterations, and near the root
Newton converges quadratically. Then

    z = y − û·tanh(α + b).

Undoing the K layers in reverse order gives z₀ (after undoing a learnable base x = μ + A·z, if
the flow has one, by solving the triangular system A·z = x − μ), and pushing z₀ forward through
the reference flow gives log q_K(y) = log q₀(z₀) − Σ_k log D_k exactly as ``sample`` computes it.
"""

import numpy as np

from . import base, reference

EPS = np.finfo(np.float64).eps
MAX_ITER = 200          # ≥ 2 × 64 halvings of any float64 bracket, plus Newton's few steps


def solve_alpha(wty, s, sp, b):
    """The root α of g(α) = α + s·tanh(α + b) − wᵀy for every entry of wty (vectorised).

    Parameters
    ----------
    wty : ndarray, shape (N,)   wᵀy
    s, sp, b : floats           s = wᵀû > −1 and sp = 1 + s (passed separately: sp is accurate
                                where s rounds to −1), b the layer's offset

    Returns
    -------
    alpha : ndarray, shape (N,), accurate to a few ulps of the problem's scale.
    """
    lo = wty - abs(s)
    hi = wty + abs(s)
    alpha = np.clip(wty - s * np.tanh(wty + b), lo, hi)   # one fixed-point step: a good start
    dx_old = hi - lo                                      # rtsafe's "step before last"
    dx = dx_old.copy()
    done = np.zeros(wty.shape, dtype=bool)
    for _ in range(MAX_ITER):
        t = np.tanh(alpha + b)
        g = alpha + s * t - wty
        gp = t * t + reference.tanh_derivative(alpha + b) * sp      # g'(α) = t² + h'·sp > 0
        newton_step = g / gp
        # g is known to about ε(|α| + |s| + |wᵀy|), so α to that divided by g': stop there
        tol = 4 * EPS * (np.abs(alpha) + abs(s) + np.abs(wty)) / gp
        done |= (np.abs(newton_step) <= tol) | (hi - lo <= 4 * EPS * (np.abs(lo) + np.abs(hi)))
        if done.all():
            return alpha
        lo = np.where(g < 0, alpha, lo)                   # keep the root bracketed
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
    """The z₀ with flow_forward(params, z₀) = y, for every row of y (N, d); returns (N, d)."""
    z = y
    if "mu" in params:                       # undo the base x = μ + A·z first: z = A⁻¹(x − μ)
        A = base.base_matrix(params["log_sigma"], params["lower"])
        z = np.linalg.solve(A, (y - params["mu"]).T).T
    u_hat, sp, _ = reference.u_hat_forward(params["u"], params["w"])       # (K, d), (K,)
    w, b = params["w"], params["b"]
    for k in reversed(range(w.shape[0])):                         # undo layer k + 1 = K..1
        alpha = solve_alpha(z @ w[k], sp[k] - 1.0, sp[k], b[k])   # wᵀz of the layer's input
        z = z - np.tanh(alpha + b[k])[:, None] * u_hat[k]
    return z


def log_prob(params, y):
    """Exact log q_K(y) at any points y (N, d): log q₀(z₀) − Σ log-dets with z₀ = inverse(y)."""
    z0 = inverse(params, y)
    _, sum_logdet, _ = (base if "mu" in params else reference).flow_forward(params, z0)
    return reference.std_normal_log_density(z0) - sum_logdet
