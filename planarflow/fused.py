"""The fast engine: reference.py's loss and gradient, arranged for speed — ``fit(engine="fused")``.

This computes what reference.reverse_kl computes for each of P flows at once — the same
formulas, checked against it to rounding by tests/test_engines.py (read reference.py first). Only
the arrangement differs, and each difference is made for speed:

1. What does not depend on the batch — û_k and sp_k = softplus(w_kᵀu_k) = 1 + w_kᵀû_k — is
   computed for all K layers at once (reference.u_hat_forward on (P, K, d) arrays), and its
   backward likewise (reference.u_hat_backward).

2. Only the chain through z loops over the layers k = 1..K. The batch is stored transposed,
   z as (d, N), so every array operation runs along the N samples (an (N, 2) layout makes
   NumPy loop over rows of length 2). Layer k reads block k − 1 of a buffer and writes block k,

       X_{k−1} = [ z_{k−1} ; 1 ; q_k ]     shape (d + 2, N),     q_k = t_k − 1,  t_k = tanh(a_k)

   so that a_k = w_kᵀz_{k−1} + b_k is one matrix product, 2a_k = [2w_kᵀ  2b_k]·[z_{k−1}; 1],
   and tanh is 1 − 2/(1 + e^{2a}), i.e. q_k = −2/(1 + e^{2a_k}): NumPy's exp is about twice as
   fast as its tanh (e^{2a} overflows harmlessly to inf for a > 354, giving q = 0, t = 1, so
   the loop silences overflow warnings). The update z_k = z_{k−1} + û_k·t_k is

       for d ≤ MATRIX_MAX_D:   z_k = [I  û_k  û_k]·[z_{k−1}; 1; q_k]      one call, d(d + 2)·N work
       for larger d:           z_k = û_k·t_k + z_{k−1}  (rank one)      three calls, 2d·N work

   For small d a NumPy call costs more than its arithmetic, so the single product wins; the
   identity block costs d²·N, so for larger d the rank-one form keeps the cost linear in d,
   as the math's (``python -m planarflow.benchmark`` measures both sides of the crossover).

3. Everything that is elementwise in (k, n) once the t_k are known — h'_k, D_k, the log-dets,
   the log-det's part of ∂L/∂a — is computed after the loop on (K, N) arrays, and the
   parameter gradients Σₙ(…) are reduced after the backward loop, one call each. Here
   h'_k = 1 − t_k²: one pass, where reference.tanh_derivative takes an exp; it is accurate to
   4e-16 absolutely, so its relative accuracy suffers only where h' < 1e-8 (|a| > 10), where
   h' multiplies everything it enters and its error is below 1e-23 in absolute terms.

4. Σ_k log D_k is computed as log Π_k D_k (one log per sample instead of K) whenever the
   product provably stays inside float64's range (``sum_logdet``).

5. The buffers live in a ``Workspace`` that the training loop keeps from step to step, with
   their constant entries written once and each layer's slices made once (``Layout``).
   Allocating and freeing a few megabytes every step makes the C allocator hand the memory
   back to the operating system and fault it in again page by page, which on a virtual
   machine costs as much as the arithmetic. A fresh Workspace per call gives the same numbers.

A population of flows: P independent flows (``fit(..., population=P)``) carry a leading member
axis, (P, K, d), each with its own N samples; every buffer gets a member axis after the layer
axis, X_k becomes (P, d + 2, N), and each product is one np.matmul over the P members. P = 1 is
the layout above, with np.dot (a little cheaper per call than np.matmul).
"""

import numpy as np

from .reference import std_normal_log_density, u_hat_backward, u_hat_forward

MATRIX_MAX_D = 12         # the [I û û] product for d ≤ this, the rank-one update above it (measured)


class Workspace:
    """The engine's buffers, kept from call to call; rebuilt when the shapes change.

    Results never depend on what a previous call left behind: every entry a call reads was
    written by that call, except the constant entries (identity blocks, the row of ones, a zero),
    written once when the layout is built and never overwritten.
    """

    def __init__(self):
        self._layout = None

    def layout(self, P, K, d, N):
        """The Layout for these shapes (built on first use and whenever the shapes change)."""
        if self._layout is None or self._layout.shape != (P, K, d, N):
            self._layout = Layout(P, K, d, N)
        return self._layout


class Layout:
    """The buffers of fused_forward/fused_backward for P flows of K layers in d dimensions, N
    samples each, their constant entries, and each layer's views into them (slicing an array
    costs about as much as a small NumPy call, so the views are made once). For layer k = 1..K,
    stored at index k − 1:

        X  (K + 1, P, d + 2, N)    block k − 1 = [z_{k−1} ; 1 ; q_k],  block K = [z_K ; …]
        WB (K, P, 1, d + 1)        [2w_kᵀ  2b_k]
        G  (K + 1, P, d + 2, N)    block k = [∂L/∂z_k ; t_k/D_k ; ga_k],  block 0 = [∂L/∂z₀ ; …]
        UH (K, P, 1, d + 1)        [û_kᵀ  κ_k]
        T, t2, hp, D  (K, P, N)    t_k, t_k², h'(a_k), D_k
      matrix form (d ≤ MATRIX_MAX_D):
        M  (K, P, d, d + 2)        [I  û_k  û_k]
        Q  (K, P, d, d + 2)        [I  0  w_k]
      rank-one form:
        Uc, Wc (K, P, d, 1)        û_k and w_k as columns;  row (P, 1, N): a scratch row

    A layer's views drop the member axis when P = 1, and ``product`` is np.dot then (np.matmul
    otherwise): both compute the same matrix products.
    """

    def __init__(self, P, K, d, N):
        self.shape = (P, K, d, N)
        self.matrix = d <= MATRIX_MAX_D
        self.X = np.empty((K + 1, P, d + 2, N))
        self.X[:, :, d] = 1.0
        self.WB = np.empty((K, P, 1, d + 1))
        self.G = np.empty((K + 1, P, d + 2, N))
        self.UH = np.empty((K, P, 1, d + 1))
        self.e = np.empty((P, 1, N))
        self.T, self.t2, self.hp, self.D = (np.empty((K, P, N)) for _ in range(4))
        self.product = np.dot if P == 1 else np.matmul
        one = (lambda a: a[0]) if P == 1 else (lambda a: a)   # drop the member axis when P = 1
        X, G, hp = self.X, self.G, self.hp.reshape(K, P, 1, N)
        if self.matrix:
            eye = np.eye(d)
            self.M = np.empty((K, P, d, d + 2))
            self.M[:, :, :, :d] = eye
            self.Q = np.empty((K, P, d, d + 2))
            self.Q[:, :, :, :d] = eye
            self.Q[:, :, :, d] = 0.0
            fwd = [(self.M[k], X[k]) for k in range(K)]
            bwd = {k: (self.Q[k], G[k + 1]) for k in range(K)}
        else:
            self.Uc, self.Wc = np.empty((K, P, d, 1)), np.empty((K, P, d, 1))
            self.row = np.empty((P, 1, N))
            fwd = [(self.Uc[k], X[k, :, :d], self.row) for k in range(K)]
            bwd = {k: (self.Wc[k], G[k + 1, :, :d]) for k in range(K)}
        self.forward_views = [tuple(one(a) for a in (self.WB[k], X[k, :, :d + 1], self.e, X[k, :, d + 1:])
                                    + fwd[k] + (X[k + 1, :, :d],))
                              for k in range(K)]
        self.backward_views = [tuple(one(a) for a in (self.UH[k], G[k + 1, :, :d + 1], G[k + 1, :, d + 1:], hp[k])
                                     + bwd[k] + (G[k, :, :d],))
                               for k in reversed(range(K))]


def fused_forward(z0, u_hat, sp, w, b, ws=None):
    """Push z₀ through K planar layers, for P flows at once (reference.flow_forward for each).

    Parameters
    ----------
    z0 : ndarray, shape (P, N, d)
    u_hat : ndarray, shape (P, K, d)   constrained vectors û_k
    sp : ndarray, shape (P, K)         softplus(w_kᵀu_k) = 1 + w_kᵀû_k
    w : ndarray, shape (P, K, d)
    b : ndarray, shape (P, K)
    ws : Workspace or None (a fresh one)

    Returns
    -------
    zK : ndarray, shape (P, N, d)        (a view of the workspace: valid until its next use)
    sum_logdet : ndarray, shape (P, N)   Σ_k log(1 + h'(a_k)·w_kᵀû_k)
    cache : for fused_backward
    """
    ws = Workspace() if ws is None else ws
    P, K, d = w.shape
    N = z0.shape[1]
    lay = ws.layout(P, K, d, N)
    X = lay.X
    X[0, :, :d] = z0.transpose(0, 2, 1)                  # z₀ of each member          (P, d, N)
    uh_k = u_hat.transpose(1, 0, 2)                      # layer axis first          (K, P, d)
    lay.WB[:, :, 0, :d] = 2.0 * w.transpose(1, 0, 2)
    lay.WB[:, :, 0, d] = 2.0 * b.T
    product, exp, add, divide, multiply = lay.product, np.exp, np.add, np.divide, np.multiply
    # (out passed by position: the cheapest call)
    with np.errstate(over="ignore"):
        if lay.matrix:
            lay.M[:, :, :, d] = uh_k
            lay.M[:, :, :, d + 1] = uh_k
            for wb, z1, e, q, m, x, z_next in lay.forward_views:
                product(wb, z1, e)                       # 2a_k = [2w_kᵀ 2b_k]·[z_{k−1}; 1]
                exp(e, e)
                add(e, 1.0, e)
                divide(-2.0, e, q)                       # q_k = tanh(a_k) − 1
                product(m, x, z_next)                    # z_k = z_{k−1} + û_k·(1 + q_k)
        else:
            lay.Uc[..., 0] = uh_k
            for wb, z1, e, q, uc, z, t, z_next in lay.forward_views:
                product(wb, z1, e)
                exp(e, e)
                add(e, 1.0, e)
                divide(-2.0, e, q)
                add(q, 1.0, t)                           # t_k
                multiply(uc, t, z_next)                  # û_k·t_k             (d, N)
                add(z_next, z, z_next)                   # z_k = z_{k−1} + û_k·t_k
    # h'_k = 1 − t_k² (see 3. above) and D_k = t² + h'·sp_k (reference.planar_forward's form)
    T = np.add(X[:K, :, d + 1], 1.0, out=lay.T)                     # t_k             (K, P, N)
    t2 = np.multiply(T, T, out=lay.t2)
    hp = np.subtract(1.0, t2, out=lay.hp)                           # h'(a_k)
    D = np.multiply(hp, sp.T[:, :, None], out=lay.D)
    D += t2                                                         # t² + h'·sp
    zK = X[K, :, :d].transpose(0, 2, 1)
    return zK, sum_logdet(D, sp.T), (lay, uh_k, sp, w)


def sum_logdet(D, sp):
    """Σ_k log D_k over the layers (axis 0) for D of shape (K, …, N) and sp of shape (K, …).

    Computed as log Π_k D_k — one log per sample instead of K, and logs are the costliest
    operation of a training step — whenever the product cannot leave float64's range.
    That is known in advance: D = t² + h'·sp with t² + h' = 1 is a convex combination of 1 and
    sp, so min(1, sp_k) ≤ D_k ≤ max(1, sp_k), and every partial product of the D_k lies between
    Π min(1, sp_k) and Π max(1, sp_k). When Σ_k |log sp_k| < 600 these are within e^{±600},
    safely inside float64's normal range (e^{±708}), and the product's relative error is at
    most K·ε, the same order as summing K rounded logs. Otherwise the logs are summed directly.
    """
    if sp.min() > 0 and np.abs(np.log(sp)).sum(axis=0).max() < 600.0:
        return np.log(D.prod(axis=0))
    return np.log(D).sum(axis=0)


def fused_backward(dzK, dlogdet, cache):
    """Backprop through fused_forward (reference.flow_backward for each member).

    ``dlogdet`` = ∂L/∂log D_k⁽ⁿ⁾ is one number here, the same for every layer and sample (−1/N
    for the batch mean), which lets its factor be folded into per-layer constants.

    With gz = ∂L/∂z_k (the layer's output) and s_k = sp_k − 1, going down k = K..1, the lines of
    reference.planar_backward are

        ga_k = h'_k·(gzᵀû_k + κ_k·t_k/D_k),    κ_k = −2·dlogdet·s_k    (the log-det's part)
        ∂L/∂z_{k−1} = gz + w_k·ga_k

    Layer k keeps the block G_k = [gz ; t_k/D_k ; ga_k] of shape (d + 2, N), so that

        gzᵀû_k + κ_k·t_k/D_k = [û_kᵀ  κ_k]·[gz ; t_k/D_k]      one product, then ga_k = h'_k·(…)
        ∂L/∂z_{k−1} = [I  0  w_k]·G_k          (matrix form, d ≤ MATRIX_MAX_D)
                    = w_k·ga_k + gz            (rank-one form)

    and after the loop

        ∂L/∂û_k = Σₙ gz·t_k,   ∂L/∂b_k = Σₙ ga_k,   ∂L/∂w_k = Σₙ ga_k·z_{k−1}  (through a),
        ∂L/∂sp_k = Σₙ dlogdet·h'_k/D_k

    are one reduction each.

    Parameters
    ----------
    dzK : ndarray, shape (P, N, d)   ∂L/∂z_K
    dlogdet : float                  ∂L/∂log D_k for every k and sample
    cache : from fused_forward

    Returns
    -------
    dz0 : (P, N, d), du_hat : (P, K, d), dsp : (P, K), dw : (P, K, d) (through a only), db : (P, K)
    """
    lay, uh_k, sp, w = cache
    P, K, d, N = lay.shape
    X, G, T, hp, D = lay.X, lay.G, lay.T, lay.hp, lay.D
    G[K, :, :d] = dzK.transpose(0, 2, 1)                 # ∂L/∂z_K                   (P, d, N)
    np.divide(T, D, out=G[1:, :, d])                     # t_k/D_k                   (K, P, N)
    R = np.divide(hp, D, out=lay.t2)                     # h'/D (t²'s buffer is free now)
    dsp = dlogdet * R.sum(axis=2).T                      # Σₙ dlogdet·h'/D           (P, K)
    lay.UH[:, :, 0, :d] = uh_k
    lay.UH[:, :, 0, d] = -2.0 * dlogdet * (sp.T - 1.0)   # κ_k
    product, multiply, add = lay.product, np.multiply, np.add
    if lay.matrix:
        lay.Q[:, :, :, d + 1] = w.transpose(1, 0, 2)
        for uh, gz_c, ga, hp_k, q, g, gz_prev in lay.backward_views:
            product(uh, gz_c, ga)                        # gzᵀû_k + κ_k·t_k/D_k
            multiply(ga, hp_k, ga)                       # ga_k
            product(q, g, gz_prev)                       # ∂L/∂z_{k−1} = gz + w_k·ga_k
    else:
        lay.Wc[..., 0] = w.transpose(1, 0, 2)
        for uh, gz_c, ga, hp_k, wc, gz, gz_prev in lay.backward_views:
            product(uh, gz_c, ga)
            multiply(ga, hp_k, ga)
            multiply(wc, ga, gz_prev)                    # w_k·ga_k                  (d, N)
            add(gz_prev, gz, gz_prev)                    # ∂L/∂z_{k−1}
    GA = G[1:, :, d + 1]                                 # ga_k                      (K, P, N)
    du_hat = np.matmul(G[1:, :, :d], T[:, :, :, None])[..., 0]          # Σₙ gz·t_k  (K, P, d)
    dw = np.matmul(X[:K, :, :d], GA[:, :, :, None])[..., 0]             # Σₙ ga_k·z_{k−1}
    dz0 = G[0, :, :d].transpose(0, 2, 1)
    return dz0, du_hat.transpose(1, 0, 2), dsp, dw.transpose(1, 0, 2), GA.sum(axis=2).T


def reverse_kl_members(params, z0, target, beta, ws=None):
    """reference.reverse_kl for each of P flows: params u, w (P, K, d), b (P, K); z0 (P, N, d).

    Returns the losses (P,) and a dict of gradients shaped like params; the gradient of member
    p depends on member p only. The target sees all members' points at once, (P·N, d), through
    ``energy_and_grad`` when it has one (one call instead of two). ``ws`` is the engine's
    Workspace, kept by the training loop from step to step.
    """
    P, N, d = z0.shape
    u_hat, sp, uh_cache = u_hat_forward(params["u"], params["w"])      # (P, K, d), (P, K)
    zK, sum_logdet, cache = fused_forward(z0, u_hat, sp, params["w"], params["b"], ws)
    both = getattr(target, "energy_and_grad", None)
    z = zK.reshape(P * N, d)
    U, gU = both(z) if both is not None else (target.energy(z), target.grad(z))
    # the batch mean of each member's terms, as sums / N (np.mean costs several sums here)
    losses = (std_normal_log_density(z0) - sum_logdet + beta * U.reshape(P, N)).sum(axis=1) / N
    dzK = (beta / N) * gU.reshape(P, N, d)               # ∂L/∂z_K                   (P, N, d)
    _, du_hat, dsp, dw, db = fused_backward(dzK, -1.0 / N, cache)     # ∂L/∂log D_k = −1/N
    du, dw_uh = u_hat_backward(du_hat, dsp, uh_cache)
    return losses, {"u": du, "w": dw + dw_uh, "b": db}
