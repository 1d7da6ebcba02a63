"""One planar layer (Rezende & Mohamed 2015, eq. 10–12 and appendix A.1), forward and backward.

    y = f(z) = z + û·h(wᵀz + b),   h = tanh,   a = wᵀz + b
    ψ(z) = h'(a)·w
    log|det ∂f/∂z| = log|1 + ûᵀψ(z)| = log(1 + h'(a)·wᵀû)

The raw parameters are u ∈ Rᵈ, w ∈ Rᵈ and the scalar b. The layer uses the constrained û(u, w)
of appendix A.1, which makes f invertible. Backward functions follow the CS231n convention:
``*_backward(upstream..., cache)`` returns one gradient per input of ``*_forward``, same shapes,
same order.
"""

import numpy as np

from .numerics import planar_D, softplus, tanh_derivative
from .validation import as_array, as_float


# ----------------------------------------------------------------------------------------------
# The invertibility constraint û(u, w)   (appendix A.1)
#
#   f is invertible iff wᵀû ≥ −1. With α = wᵀu and m(x) = −1 + softplus(x),
#
#       û = u + (m(α) − α)·w/‖w‖²
#
#   so that wᵀû = α + (m(α) − α) = m(α) > −1 for every u. Write c = (m(α) − α)/‖w‖², so û = u + c·w.
#   Since softplus(α) − α = softplus(−α) exactly,  m(α) − α = softplus(−α) − 1: no cancellation
#   at α ≫ 1.  The layer needs sp = softplus(α) = 1 + wᵀû rather than wᵀû itself (see
#   numerics.planar_D), so that is what the forward returns.
#
#   Backward, with σ = sigmoid(α) = m'(α) and 1 − σ = sigmoid(−α), gû = ∂L/∂û, gsp = ∂L/∂sp:
#       ∂c/∂u = (σ − 1)·w/‖w‖²
#       ∂c/∂w = (σ − 1)·u/‖w‖² − 2c·w/‖w‖²          (from ∂‖w‖²/∂w = 2w)
#       ∂û/∂u = I + w (∂c/∂u)ᵀ,   ∂û/∂w = c·I + w (∂c/∂w)ᵀ
#       ∂sp/∂u = σ·w,             ∂sp/∂w = σ·u
#   hence
#       ∂L/∂u = gû + (gû·w)(σ − 1)·w/‖w‖² + gsp·σ·w
#       ∂L/∂w = c·gû + (gû·w)((σ − 1)·u − 2c·w)/‖w‖² + gsp·σ·u
# ----------------------------------------------------------------------------------------------

def u_hat_forward(u, w):
    """The constrained vector û and sp = softplus(wᵀu) = 1 + wᵀû, batched over leading axes.

    Parameters
    ----------
    u, w : ndarray, shape (..., d)
        Raw parameters; one row per layer when batched. Rows of w must be non-zero.

    Returns
    -------
    u_hat : ndarray, shape (..., d)
    sp : ndarray, shape (...)   softplus(wᵀu) = 1 + wᵀû > 0
    cache : tuple for u_hat_backward
    """
    alpha = (w * u).sum(axis=-1)                   # wᵀu            (...,)
    sq = (w * w).sum(axis=-1)                      # ‖w‖²           (...,)
    sp_neg = softplus(-alpha)                      # softplus(−α) = m(α) − α + 1
    c = (sp_neg - 1.0) / sq                        # (m(α) − α)/‖w‖²
    u_hat = u + c[..., None] * w                   # (..., d)
    sp = softplus(alpha)                           # 1 + wᵀû
    return u_hat, sp, (u, w, sq, c, sp_neg, sp)


def u_hat_backward(du_hat, dsp, cache):
    """Gradients of L(û, sp) with respect to the raw (u, w), given ∂L/∂û and ∂L/∂sp.

    Returns ``(du, dw)`` with the shapes of ``u`` and ``w``.
    """
    u, w, sq, c, sp_neg, sp = cache
    # σ = m'(α) and 1 − σ = σ(−α) from the forward's softplus values: σ(x) = 1/(1 + e⁻ˣ) =
    # e^{−log(1 + e⁻ˣ)} = e^{−softplus(−x)} (numerics.sigmoid_pair gives the same from α alone)
    sig, sig_neg = np.exp(-sp_neg), np.exp(-sp)
    gw = (du_hat * w).sum(axis=-1)                 # gû·w           (...,)
    ks = (dsp * sig - gw * sig_neg / sq)[..., None]   # (gû·w)(σ − 1)/‖w‖² + gsp·σ
    du = du_hat + ks * w
    dw = c[..., None] * du_hat + ks * u - (2.0 * gw * c / sq)[..., None] * w
    return du, dw


def u_hat(u, w):
    """û(u, w) = u + (m(wᵀu) − wᵀu)·w/‖w‖² with m(x) = −1 + softplus(x)  (appendix A.1).

    Guarantees wᵀû = m(wᵀu) > −1, which makes the planar layer invertible.

    Parameters
    ----------
    u, w : array_like, shape (d,) for one layer or (K, d) for K layers; rows of w non-zero.

    Returns
    -------
    ndarray with the shape of u.
    """
    u = as_array(u, "u", ndim=(1, 2))
    w = as_array(w, "w", shape=u.shape)
    if np.any(np.sum(w * w, axis=-1) == 0.0):
        raise ValueError("w: expected non-zero rows (û divides by ‖w‖²), got a row with ‖w‖² = 0")
    return u_hat_forward(u, w)[0]


# ----------------------------------------------------------------------------------------------
# The layer
#
#   a = wᵀz + b,  t = tanh(a),  h'(a) = 1 − t² = sech²(a),  s = wᵀû = sp − 1
#   y = z + û·t
#   logdet = log D,  D = 1 + h'(a)·s = t² + h'·sp  (> 0, see numerics.planar_D)
#
#   Backward, with gy = ∂L/∂y (N, d) and gl = ∂L/∂logdet (N,). Using h''(a) = −2·t·h'(a),
#       ∂D/∂a = −2·t·h'·s,   ∂D/∂s = h'
#   so, per sample,
#       ga    = (gy·û)·h' − 2·gl·t·h'·s/D          ∂L/∂a              (N,)
#       ∂L/∂z = gy + ga·wᵀ                                             (N, d)
#       ∂L/∂b = Σₙ ga
#       ∂L/∂w = Σₙ ga·z           (through a; û adds its own part below)
#       ∂L/∂û = Σₙ gy·t           (through y)
#       ∂L/∂s = Σₙ gl·h'/D        (through the log-det; ∂L/∂sp is the same since sp = s + 1)
#   and (∂L/∂û, ∂L/∂sp) go through u_hat_backward to the raw u and w.
#   û is reached twice (through y and through s): micrograd's "+=" is the sum in dw below.
# ----------------------------------------------------------------------------------------------

def planar_forward(z, u, w, b):
    """One planar layer y = z + û·tanh(wᵀz + b) and its log-det log(1 + h'(a)·wᵀû).

    Parameters
    ----------
    z : ndarray, shape (N, d)
    u, w : ndarray, shape (d,)   raw parameters (u is constrained to û inside)
    b : float

    Returns
    -------
    y : ndarray, shape (N, d)
    logdet : ndarray, shape (N,)
    cache : tuple for planar_backward
    """
    return _planar_forward(*_check_layer_args(z, u, w, b))


def _planar_forward(z, u, w, b):
    """planar_forward without the argument checks, for callers that validated already."""
    uh, sp, uh_cache = u_hat_forward(u, w)
    a = z @ w + b                                  # (N,)
    t = np.tanh(a)                                 # (N,)
    y = z + t[:, None] * uh                        # (N, d)
    hp = tanh_derivative(a)                        # h'(a) = sech²(a)     (N,)
    D = planar_D(t, hp, sp)                        # 1 + h'·wᵀû > 0       (N,)
    logdet = np.log(D)
    return y, logdet, (z, w, uh, sp, t, hp, D, uh_cache)


def planar_backward(dy, dlogdet, cache):
    """Backprop through planar_forward.

    Parameters
    ----------
    dy : ndarray, shape (N, d)      ∂L/∂y
    dlogdet : ndarray, shape (N,)   ∂L/∂logdet
    cache : from planar_forward

    Returns
    -------
    dz : (N, d), du : (d,), dw : (d,), db : float — one gradient per input, in input order.
    """
    z, w, uh, sp, t, hp, D, uh_cache = cache
    s = sp - 1.0                                   # wᵀû
    ga = (dy @ uh) * hp - 2.0 * dlogdet * t * hp * s / D   # ∂L/∂a   (N,)
    dz = dy + ga[:, None] * w                      # (N, d)
    db = float(np.sum(ga))
    dw = ga @ z                                    # through a   (d,)
    du_hat = t @ dy                                # through y   (d,)
    dsp = np.sum(dlogdet * hp / D)                 # through the log-det
    du, dw_uh = u_hat_backward(du_hat, dsp, uh_cache)
    return dz, du, dw + dw_uh, db


def _check_layer_args(z, u, w, b):
    z = as_array(z, "z", ndim=2)
    d = z.shape[1]
    u = as_array(u, "u", shape=(d,))
    w = as_array(w, "w", shape=(d,))
    if not np.sum(w * w) > 0.0:
        raise ValueError("w: expected a non-zero vector (û divides by ‖w‖²), got ‖w‖² = 0")
    return z, u, w, as_float(b, "b")
