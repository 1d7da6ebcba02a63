"""Stable numerics, each written once and used everywhere.

softplus(x) = log(1 + eˣ)       via np.logaddexp(0, x): no overflow for x ≫ 0, no log(1) = 0 loss for x ≪ 0
sigmoid_pair(x) = (σ(x), σ(−x))  σ(x) = 1/(1 + e⁻ˣ) via r = e^{−|x|} ≤ 1: no overflow for any x
tanh_derivative(a)              h'(a) = sech²(a) without the cancellation of 1 − tanh²
planar_D(t, hp, sp)             the positive form of 1 + h'(a)·wᵀû
"""

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


def softplus(x):
    """softplus(x) = log(1 + eˣ), computed as logaddexp(0, x) so that it never overflows."""
    return np.logaddexp(0.0, x)


def sigmoid_pair(x):
    """(σ(x), σ(−x)) from one exponential, both accurate in relative terms for every x.

    With r = e^{−|x|} ∈ (0, 1] (which never overflows), the larger of the two is 1/(1 + r) and
    the smaller r/(1 + r); which is which depends on the sign of x. (1 − σ(x) would lose every
    digit of σ(−x) for x > 37.)
    """
    r = np.exp(-np.abs(x))
    big = 1.0 / (1.0 + r)
    small = r * big
    pos = x >= 0
    return np.where(pos, big, small), np.where(pos, small, big)


def tanh_derivative(a):
    """h'(a) = 1 − tanh(a)² = sech²(a), accurate in relative terms for every a.

    1 − tanh(a)² cancels: for |a| > 10 it keeps fewer than 8 digits and for |a| > 19 it is 0.
    With e = e^{−2|a|} ∈ (0, 1] (which never overflows),

        sech²(a) = 4/(eᵃ + e⁻ᵃ)² = 4e/(1 + e)².
    """
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def planar_D(t, hp, sp):
    """D = 1 + h'(a)·wᵀû for the planar layer, in a form that stays positive.

    With s = wᵀû = m(wᵀu) = sp − 1, where sp = softplus(wᵀu), and h' = 1 − t² (t = tanh a),

        D = 1 + h'·s = 1 + h'·(sp − 1) = (1 − h') + h'·sp = t² + h'·sp.

    The last form is a sum of two non-negative terms, so D > 0 in floating point even when
    wᵀu ≪ −1 makes s round to exactly −1 (where 1 + h'·s would cancel to 0 at a = 0).
    """
    return t * t + hp * sp


def planar_sum_logdet(D, sp):
    """Σ_k log D_k over the layers (axis 0) for D of shape (K, …, N) and sp of shape (K, …).

    Computed as log Π_k D_k — one log per sample instead of K, and logs are the costliest
    operation of a training step — whenever the product cannot leave float64's range.
    That is known in advance: D = t² + h'·sp with t² + h' = 1 is a convex combination of 1 and
    sp, so min(1, sp_k) ≤ D_k ≤ max(1, sp_k), and every partial product of the D_k lies between
    Π min(1, sp_k) and Π max(1, sp_k). When Σ_k |log sp_k| < 600 these are within e^{±600},
    safely inside float64's normal range (e^{±708}); the product's relative error is then at
    most K·ε, the same order as summing K rounded logs. Otherwise the logs are summed directly.
    """
    if sp.min() > 0 and np.abs(np.log(sp)).sum(axis=0).max() < 600.0:
        return np.log(D.prod(axis=0))
    return np.log(D).sum(axis=0)


def std_normal_log_density(z):
    """log N(z; 0, I) = −½‖z‖² − (d/2)·log 2π for z of shape (..., d); returns shape (...)."""
    d = z.shape[-1]
    return -0.5 * (z * z).sum(axis=-1) - 0.5 * d * LOG_2PI
