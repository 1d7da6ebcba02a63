"""The objective: reverse KL, i.e. the variational free energy (paper, eq. 15).

    F(θ) = E_{z₀~q₀}[ log q_K(z_K) + β·U(z_K) ]
         = E_{z₀~q₀}[ log q₀(z₀) − Σ_k logdet_k(z₀; θ) + β·U(z_K(z₀; θ)) ]

With β = 1, KL(q_K ‖ p) = F(θ) + log Z ≥ 0, so F ≥ −log Z: the loss is bounded below by −log Z,
which is negative whenever Z > 1 — a negative loss is correct, and the gap F + log Z is the KL.

The estimate averages over a batch z₀⁽¹⁾..z₀⁽ᴺ⁾ drawn by the caller. As a function of (θ, z₀) it
is deterministic — the reparameterisation trick — so its gradient is an exact derivative that
central differences can check, and its expectation over z₀ is ∇F (the estimator is unbiased
because the distribution of z₀ does not depend on θ).

Upstream gradients for backprop, from the mean over N samples:
    ∂L/∂z_K⁽ⁿ⁾ = β·∇U(z_K⁽ⁿ⁾)/N,     ∂L/∂logdet_k⁽ⁿ⁾ = −1/N   (the same for every layer k)
"""

import threading

import numpy as np

from .fused import Workspace, fused_backward, fused_forward
from .layer import u_hat_backward, u_hat_forward
from .numerics import std_normal_log_density
from .validation import as_float, check_params, check_points, check_target


def energy_and_grad(target, z):
    """U(z) (N,) and ∇U(z) (N, d) from any target, with one call when the target offers it."""
    fn = getattr(target, "_energy_and_grad", None) or getattr(target, "energy_and_grad", None)
    if fn is not None:
        U, g = fn(z)
    else:
        U, g = target.energy(z), target.grad(z)
    U, g = np.asarray(U, dtype=np.float64), np.asarray(g, dtype=np.float64)
    if U.shape != z.shape[:1] or g.shape != z.shape:
        raise ValueError(
            f"target: expected energy(z) of shape {z.shape[:1]} and grad(z) of shape {z.shape} "
            f"for z of shape {z.shape}, got {U.shape} and {g.shape}"
        )
    return U, g


def reverse_kl(params, z0, target, beta=1.0):
    """Monte-Carlo free energy over the batch z₀ and its exact gradient.

    loss = (1/N) Σₙ [ log q₀(z₀⁽ⁿ⁾) − Σ_k logdet_k⁽ⁿ⁾ + β·U(z_K⁽ⁿ⁾) ]

    A pure function of its arguments: the noise z₀ is an input, nothing random happens inside.

    Parameters
    ----------
    params : dict  u (K, d), w (K, d), b (K,)
    z0 : ndarray, shape (N, d)   samples of q₀ = N(0, I)
    target : object with energy(z) (N,) and grad(z) (N, d)   (see planarflow.targets)
    beta : float in (0, 1]   inverse temperature; 1 is the true objective

    Returns
    -------
    loss : float
    grads : dict with the keys and shapes of params
    """
    params, K, d = check_params(params)
    z0 = check_points(z0, "z0", d)
    check_target(target, dim=d)
    beta = as_float(beta, "beta", low=0.0, high=1.0, low_open=True)
    return _reverse_kl(params, z0, target, beta, _workspace(K, z0.shape[0]))


_local = threading.local()          # one Workspace per thread for calls of reverse_kl


def _workspace(K, N):
    """A Workspace kept between calls of reverse_kl in this thread (so that a loop of calls does
    not allocate and fault in fresh megabytes each time, see fused.py), or a fresh one for
    calls too large to be worth keeping (more than 2²² per-layer-and-sample numbers)."""
    if K * N > 1 << 22:
        return Workspace()
    if not hasattr(_local, "ws"):
        _local.ws = Workspace()
    return _local.ws


def _reverse_kl(params, z0, target, beta, ws=None):
    """reverse_kl without the argument checks: the training loop's hot path (one flow)."""
    members = {k: v[None] for k, v in params.items()}              # a population of one
    losses, grads = _reverse_kl_members(members, z0[None], target, beta, ws)
    return float(losses[0]), {k: g[0] for k, g in grads.items()}


def _reverse_kl_members(params, z0, target, beta, ws=None):
    """The loss and gradient of each of P flows: params u, w (P, K, d), b (P, K); z0 (P, N, d).

    The flows run through fused_forward/fused_backward, which compute what
    flow_forward/flow_backward compute (the tests check it), arranged for speed; û and sp for
    all layers come from one call of u_hat_forward on the (P, K, d) arrays. ``ws`` is the fused
    code's Workspace, kept by the training loop from step to step. Returns losses (P,) and a
    dict of gradients shaped like params; the gradient of member p depends on member p only.
    """
    P, N, d = z0.shape
    uh, sp, uh_cache = u_hat_forward(params["u"], params["w"])       # (P, K, d), (P, K)
    zK, sum_logdet, cache = fused_forward(z0, uh, sp, params["w"], params["b"], ws)
    U, gU = energy_and_grad(target, zK.reshape(P * N, d))            # all members' points
    # the batch mean of each member's terms, as sums / N (np.mean costs several sums here)
    losses = (std_normal_log_density(z0) - sum_logdet + beta * U.reshape(P, N)).sum(axis=1) / N
    dzK = (beta / N) * gU.reshape(P, N, d)         # ∂L/∂z_K        (P, N, d)
    _, du_hat, dsp, dw, db = fused_backward(dzK, -1.0 / N, cache)   # ∂L/∂logdet_k = −1/N
    du, dw_uh = u_hat_backward(du_hat, dsp, uh_cache)
    return losses, {"u": du, "w": dw + dw_uh, "b": db}
