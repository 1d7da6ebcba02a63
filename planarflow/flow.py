"""The flow: K planar layers applied to N(0, I) noise, and its exact density (paper, eq. 13).

    z₀ ~ q₀ = N(0, I),   z_k = f_k(z_{k−1}),  k = 1..K
    log q_K(z_K) = log q₀(z₀) − Σ_k log(1 + h'(a_k)·w_kᵀû_k)

Parameters are a dict of raw float64 arrays: ``u`` (K, d), ``w`` (K, d), ``b`` (K,).
``flow_forward``/``flow_backward`` compose the layer functions one by one — the form to read.
"""

import numpy as np

from .fused import Workspace, fused_forward
from .layer import _planar_forward, planar_backward, u_hat_forward
from .numerics import std_normal_log_density
from .validation import as_float, as_int, check_params, check_points, make_rng

# û = 0 (the layer is the identity) when u = λ·w/‖w‖² with m(λ) = 0, i.e. softplus(λ) = 1.
IDENTITY_WTU = float(np.log(np.e - 1.0))   # λ = log(e − 1) ≈ 0.5413
SAMPLE_CHUNK = 8192                        # samples pushed at once by sample(): bounded memory


def init_params(K, dim=2, rng=None, u_scale=0.1, b_scale=1.0):
    """Raw parameters for K planar layers in ``dim`` dimensions, starting near the identity.

    Each layer gets
      w = a random unit vector: ‖w‖ = 1 keeps w well away from zero, where û would blow up like
          0.307/‖w‖ (appendix A.1 divides by ‖w‖²), and gives every hyperplane the same scale;
      b ~ N(0, b_scale²): the hyperplanes wᵀz + b = 0 cut through the bulk of the N(0, I) noise,
          where tanh is not saturated and the layer's gradients are large;
      u = log(e − 1)·w + N(0, u_scale² I): u = log(e − 1)·w/‖w‖² gives wᵀu = log(e − 1), so
          m(wᵀu) = 0 and û = 0 exactly — the identity map. The small noise breaks the symmetry
          between layers, so the flow starts as a gentle perturbation of q₀ = N(0, I) and every
          parameter receives a gradient from the first step.
    (u = 0 is not the identity under the constraint: it gives û = −0.307·w/‖w‖².)

    Parameters
    ----------
    K : int ≥ 1, number of layers
    dim : int ≥ 1, dimension d
    rng : None, int, SeedSequence or Generator (np.random.default_rng(rng))

    Returns
    -------
    dict with float64 arrays ``u`` (K, d), ``w`` (K, d), ``b`` (K,)
    """
    K = as_int(K, "K")
    dim = as_int(dim, "dim")
    u_scale = as_float(u_scale, "u_scale", low=0.0)
    b_scale = as_float(b_scale, "b_scale", low=0.0)
    rng = make_rng(rng)
    w = rng.standard_normal((K, dim))
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    while np.any(norms < 1e-3):                     # a direction needs a non-negligible draw
        redo = norms[:, 0] < 1e-3
        w[redo] = rng.standard_normal((int(redo.sum()), dim))
        norms = np.linalg.norm(w, axis=1, keepdims=True)
    w = w / norms                                   # (K, d), unit rows
    b = b_scale * rng.standard_normal(K)            # (K,)
    u = IDENTITY_WTU * w + u_scale * rng.standard_normal((K, dim))   # (K, d)
    return {"u": u, "w": w, "b": b}


def flow_forward(params, z0):
    """Push z₀ through the K layers in order.

    Parameters
    ----------
    params : dict  u (K, d), w (K, d), b (K,)
    z0 : ndarray, shape (N, d)

    Returns
    -------
    zK : ndarray, shape (N, d)
    sum_logdet : ndarray, shape (N,)   Σ_k log|det ∂f_k/∂z_{k−1}|
    caches : list of the K layer caches, for flow_backward
    """
    params, K, d = check_params(params)
    return _flow_forward(params, check_points(z0, "z0", d))


def _flow_forward(params, z):
    """flow_forward without the argument checks."""
    K = params["u"].shape[0]
    sum_logdet = np.zeros(z.shape[0])
    caches = []
    for k in range(K):
        z, logdet, cache = _planar_forward(z, params["u"][k], params["w"][k], params["b"][k])
        sum_logdet += logdet
        caches.append(cache)
    return z, sum_logdet, caches


def flow_backward(dzK, dsum_logdet, caches):
    """Backprop through flow_forward, calling planar_backward in reverse order.

    Every layer's log-det enters the loss through the same sum, so each receives the same
    upstream gradient ``dsum_logdet``.

    Parameters
    ----------
    dzK : ndarray, shape (N, d)          ∂L/∂z_K
    dsum_logdet : ndarray, shape (N,)    ∂L/∂(Σ_k logdet_k)
    caches : from flow_forward

    Returns
    -------
    dz0 : ndarray, shape (N, d)
    grads : dict with ``u`` (K, d), ``w`` (K, d), ``b`` (K,)
    """
    K = len(caches)
    d = dzK.shape[1]
    grads = {"u": np.empty((K, d)), "w": np.empty((K, d)), "b": np.empty(K)}
    dz = dzK
    for k in reversed(range(K)):
        dz, grads["u"][k], grads["w"][k], grads["b"][k] = planar_backward(dz, dsum_logdet, caches[k])
    return dz, grads


def sample(params, n, rng=None):
    """Draw n samples from q_K and their exact log-density.

    Returns
    -------
    z : ndarray, shape (n, d)
    log_q : ndarray, shape (n,)   log q_K(z) = log q₀(z₀) − Σ_k logdet_k
    """
    params, K, d = check_params(params)
    n = as_int(n, "n")
    rng = make_rng(rng)
    z0 = rng.standard_normal((n, d))
    # the fused forward (flow_forward's arithmetic, arranged for speed), in chunks of samples
    uh, sp, _ = u_hat_forward(params["u"][None], params["w"][None])   # a population of one
    z = np.empty((n, d))
    log_q = std_normal_log_density(z0)
    ws = Workspace()
    for i in range(0, n, SAMPLE_CHUNK):
        zi, sum_logdet, _ = fused_forward(z0[None, i:i + SAMPLE_CHUNK], uh, sp,
                                          params["w"][None], params["b"][None], ws)
        z[i:i + SAMPLE_CHUNK] = zi[0]
        log_q[i:i + SAMPLE_CHUNK] -= sum_logdet[0]
    return z, log_q
